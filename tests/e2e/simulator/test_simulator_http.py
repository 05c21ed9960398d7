"""The simulator's HTTP handling: bad bodies and paths, limits, keep-alive, stats reset."""

from __future__ import annotations

import json
import socket
from typing import Any

import httpx
import pytest

from capdisc.simulator import EmbeddedSimulator
from tests.e2e.simulator.conftest import TOOLS, StartSimulator, chat_body, raw_exchange, user

BAD_BODIES: list[tuple[str, Any]] = [
    ("/v1/chat/completions", b"{not json"),
    ("/v1/chat/completions", b"[1, 2]"),
    ("/v1/chat/completions", b""),
    ("/v1/chat/completions", {"model": "m"}),
    ("/v1/chat/completions", {"messages": []}),
    ("/v1/chat/completions", {"messages": "hello"}),
    ("/v1/chat/completions", {"messages": [{"content": "no role"}]}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": 5}]}),
    ("/v1/chat/completions", {"messages": user(), "stream": "yes"}),
    ("/v1/chat/completions", {"messages": user(), "max_tokens": 0}),
    ("/v1/chat/completions", {"messages": user(), "max_tokens": "5"}),
    ("/v1/chat/completions", {"messages": user(), "temperature": "hot"}),
    ("/v1/chat/completions", {"messages": user(), "model": 7}),
    ("/v1/chat/completions", {"messages": user(), "tools": {"a": 1}}),
    ("/v1/chat/completions", {"messages": user(), "tools": [{"type": "function"}]}),
    ("/v1/chat/completions", {"messages": user(), "tools": TOOLS, "tool_choice": "always"}),
    ("/api/chat", {"messages": []}),
    ("/api/chat", {"messages": user(), "options": {"num_predict": "x"}}),
    ("/api/chat", {"messages": user(), "options": []}),
    ("/v1/agent/run", {"prompt": "x"}),
    ("/v1/agent/run", {"prompt": "x", "tool_calls": -1}),
    ("/v1/agent/run", {"prompt": "x", "tool_calls": "2"}),
    ("/v1/agent/run", {"prompt": 3, "tool_calls": 1}),
]


def test_bad_bodies_are_400(sim: EmbeddedSimulator, http: httpx.Client) -> None:
    """Invalid JSON, missing or empty messages and wrong types get a 400 JSON error, counted in bad_requests."""
    before = sim.stats()
    for path, body in BAD_BODIES:
        if isinstance(body, bytes):
            response = http.post(f"{sim.base_url}{path}", content=body)
        else:
            response = http.post(f"{sim.base_url}{path}", json=body)
        assert response.status_code == 400, (path, body)
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error"
        assert error["message"]
    after = sim.stats()
    assert after["bad_requests"] - before["bad_requests"] == len(BAD_BODIES)
    assert after["served"] == before["served"]
    assert http.get(f"{sim.base_url}/health").status_code == 200


def test_unknown_path_and_wrong_method(sim: EmbeddedSimulator, http: httpx.Client) -> None:
    """Unknown paths are 404 and wrong methods 405 (with Allow), as JSON errors."""
    missing = http.get(f"{sim.base_url}/v2/nothing")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found_error"
    wrong = http.get(f"{sim.base_url}/v1/chat/completions")
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"
    assert "error" in wrong.json()
    assert http.post(f"{sim.base_url}/health").status_code == 405


def test_oversized_body_is_413(sim: EmbeddedSimulator) -> None:
    """A Content-Length above 8 MiB is refused with 413 before the body is read, and the connection closed."""
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: 9000000\r\n\r\n"
    )
    reply = raw_exchange(sim.base_url, head)
    assert reply.startswith(b"HTTP/1.1 413 ")
    assert b"Connection: close" in reply
    assert b'"error"' in reply


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /health HTTP/9.9\r\n\r\n",
        b"GET /health HTTP/1.1\r\nNo colon here\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: ten\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
    ],
)
def test_malformed_requests_get_4xx_and_close(
    sim: EmbeddedSimulator, http: httpx.Client, raw: bytes
) -> None:
    """A malformed request line, header or framing gets a 4xx JSON error and the connection is closed; the server lives on."""
    reply = raw_exchange(sim.base_url, raw)
    status = int(reply.split(b" ", 2)[1])
    assert 400 <= status < 500
    assert b"Connection: close" in reply
    assert http.get(f"{sim.base_url}/health").status_code == 200


def test_keep_alive_pipelining_and_expect_continue(sim: EmbeddedSimulator) -> None:
    """Two pipelined requests on one connection get two answers in order; Expect: 100-continue is honoured."""
    two = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    reply = raw_exchange(sim.base_url, two)
    assert reply.count(b"HTTP/1.1 ") == 2
    assert reply.index(b"HTTP/1.1 200") < reply.index(b"HTTP/1.1 404")

    body = json.dumps(chat_body()).encode()
    host, port = sim.base_url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        assert sock.recv(4096).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(body)
        answer = b""
        for _ in range(100):
            piece = sock.recv(65536)
            if not piece:
                break
            answer += piece
    assert answer.startswith(b"HTTP/1.1 200 OK")


def test_one_connection_is_reused(start_simulator: StartSimulator) -> None:
    """A keep-alive client makes one connection for many requests."""
    sim = start_simulator(prefill_ms=0, per_token_ms=0)
    with httpx.Client(timeout=5, trust_env=False) as client:
        for _ in range(5):
            client.post(f"{sim.base_url}/v1/chat/completions", json=chat_body())
    stats = sim.stats()
    assert stats["requests"] == 5
    assert stats["connections"] == 2  # the client above, then this stats request


def test_stats_reset(start_simulator: StartSimulator, http: httpx.Client) -> None:
    """POST /stats/reset zeroes the counters."""
    sim = start_simulator(prefill_ms=0, per_token_ms=0)
    http.post(f"{sim.base_url}/v1/chat/completions", json=chat_body(stream=True))
    http.get(f"{sim.base_url}/nope")
    stats = sim.stats()
    assert stats["served"] == 1 and stats["bad_requests"] == 1 and stats["chunks_sent"] > 0
    sim.reset_stats()
    stats = sim.stats()
    for field in (
        "requests",
        "served",
        "bad_requests",
        "chunks_sent",
        "max_in_flight",
        "max_active",
    ):
        assert stats[field] == 0, field
