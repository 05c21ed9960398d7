"""Preflight speaks the target's template: a mismatch is one line with what came back and
the field to change, secrets masked; an OpenAI stream of plain events points to api = "http".

A stub server on loopback answers each path with fixed bytes and records what it got.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from capdisc.apis.preflight import preflight
from capdisc.errors import TargetUnreachable
from capdisc.settings import TargetConfig
from capdisc.target import Target, read_headers

SECRET = "gw-secret-7c1f"
PLAIN_EVENTS = b"".join(b"data: %s\r\n\r\n" % w for w in (b"Hello", b" world", b"!")) + (
    b"data: [DONE]\r\n\r\n"
)


class _Stub(BaseHTTPRequestHandler):
    answers: ClassVar[dict[str, tuple[int, bytes]]] = {}
    seen: ClassVar[list[tuple[str, dict[str, str], Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        _Stub.seen.append((self.path, dict(self.headers), json.loads(body)))
        status, answer = _Stub.answers.get(self.path, (404, b'{"detail": "Not Found"}'))
        self.send_response(status)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    _Stub.answers, _Stub.seen = {}, []
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def http_target(url: str, monkeypatch: pytest.MonkeyPatch, **fields: Any) -> Target:
    monkeypatch.setenv("GW_KEY", SECRET)
    config = TargetConfig.model_validate(
        {
            "api": "http",
            "path": "/chat",
            "stream_path": "/chat/stream",
            "body": '{"question": "{prompt}", "max_tokens": {max_tokens}, "stream": {stream}}',
            "success_field": "answer",
            "headers": {"X-Api-Key": "{env:GW_KEY}"},
            **fields,
        }
    )
    return Target(base_url=url, config=config, label="gw", headers=read_headers(config))


def failure(target: Target, *, stream: bool) -> str:
    with pytest.raises(TargetUnreachable) as info:
        preflight(target, stream=stream, timeout_s=5)
    assert "\n" not in info.value.message
    return info.value.message


def test_one_request_each_way_with_the_template_and_headers(
    stub: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _Stub.answers = {"/chat": (200, b'{"answer": "hi"}'), "/chat/stream": (200, PLAIN_EVENTS)}
    target = http_target(stub, monkeypatch)
    preflight(target, timeout_s=5)
    preflight(target, stream=True, timeout_s=5)
    assert [(path, body) for path, _, body in _Stub.seen] == [
        ("/chat", {"question": "ping", "max_tokens": 4, "stream": False}),
        ("/chat/stream", {"question": "ping", "max_tokens": 4, "stream": True}),
    ]
    assert all(headers["X-Api-Key"] == SECRET for _, headers, _ in _Stub.seen)


@pytest.mark.parametrize(
    ("answers", "stream", "fields", "expected"),
    [
        ({"/chat": (200, b'{"reply": "%s"}')}, False, {}, "(change target.success_field)"),
        ({"/chat": (200, b'{"answer": "ok"}')}, False, {"usage_field": "n"}, "target.usage_field"),
        ({"/chat/stream": (200, b'{"answer": "%s"}')}, True, {}, "target.stream_path"),
        ({"/chat/stream": (200, b"just text %s")}, True, {}, "target.stream_format"),
        ({"/chat/stream": (200, PLAIN_EVENTS)}, True, {"chunk_rule": "content"}, "chunk_rule"),
        ({"/chat/stream": (200, PLAIN_EVENTS)}, True, {"stream_format": "ndjson"}, 'to "sse"'),
        ({"/chat": (422, b'{"detail": "field %s"}')}, False, {}, "(change target.body)"),
        ({}, False, {}, "(change target.path)"),
        ({}, True, {}, "(change target.stream_path)"),
    ],
)
def test_a_mismatch_shows_what_came_back_and_the_field_to_change(
    stub: str,
    monkeypatch: pytest.MonkeyPatch,
    answers: dict[str, tuple[int, bytes]],
    stream: bool,
    fields: dict[str, Any],
    expected: str,
) -> None:
    # The answers echo the key, as a careless gateway might: it must never be shown.
    _Stub.answers = {
        path: (status, body.replace(b"%s", SECRET.encode()) if b"%s" in body else body)
        for path, (status, body) in answers.items()
    }
    message = failure(http_target(stub, monkeypatch, **fields), stream=stream)
    assert expected in message and " got " in message, message
    assert SECRET not in message
    if any(b"%s" in body for _, body in answers.values()):
        assert "***" in message


def test_the_first_200_bytes_are_shown(stub: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _Stub.answers = {"/chat": (200, b'{"reply": "' + b"x" * 1000 + b'"}')}
    message = failure(http_target(stub, monkeypatch), stream=False)
    shown = message.split(" got ", 1)[1]
    assert shown.startswith('\'{"reply": "xxx') and shown.endswith("...")
    assert shown.count("x") == 200 - len('{"reply": "')


def test_openai_stream_of_plain_events_points_to_api_http(stub: str) -> None:
    _Stub.answers = {"/v1/chat/completions": (200, PLAIN_EVENTS)}
    target = Target(base_url=stub, config=TargetConfig(), label="gw")
    for stream in (True, False):
        with pytest.raises(TargetUnreachable) as info:
            preflight(target, stream=stream, timeout_s=5)
        assert info.value.hint is not None and 'api = "http"' in info.value.hint
    assert _Stub.seen[0][2]["stream"] is True and _Stub.seen[1][2]["stream"] is False
