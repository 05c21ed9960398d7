"""Preflight: one small request proves the target is ready before any load is sent.

It is sent the way the run's load will be (a batch request for ``discover batch``
and ``discover tools``, a streamed one for ``discover stream`` and ``compare
stream``), with the target's own path and body (``api = "http"``: the profile's
template), and checks, in this order, that the target is reachable, accepts the
credentials, knows the endpoint and answers in the format the profile describes.
The first problem is raised as :class:`~capdisc.errors.TargetUnreachable`, one line
naming the URL and the cause; an answer in another format shows its first 200 bytes
(secrets masked) and the profile field to change. Uses httpx (the control plane),
never the load generator's client.
"""

from __future__ import annotations

import json
import time

import httpx

from capdisc.apis.formats import format_for
from capdisc.apis.wire import WireFormat
from capdisc.errors import TargetUnreachable
from capdisc.target import Target

__all__ = ["preflight"]


# A server error or a refused connection may be passing (a server still starting,
# one unlucky request): try again a few times before calling the target down.
ATTEMPTS = 3
RETRY_DELAY_S = 1.0
# A preflight stream is read up to this many bytes (a gateway may ignore max_tokens).
MAX_STREAM_BYTES = 1 << 20
SHOWN_BYTES = 200
HTTP_HINT = (
    'describe the gateway with api = "http" (path, stream_path, body, stream_format, '
    'chunk_rule = "any")'
)


def preflight(target: Target, *, stream: bool = False, timeout_s: float | None = None) -> None:
    """Check ``target`` with one short request (streamed with ``stream``); raise
    ``TargetUnreachable`` on a problem.

    Server errors (5xx) and refused connections are retried up to ``ATTEMPTS`` times.
    """
    for attempt in range(1, ATTEMPTS + 1):
        try:
            _check(target, stream, timeout_s)
            return
        except _Transient as exc:
            if attempt == ATTEMPTS:
                raise TargetUnreachable(exc.message, hint=exc.hint) from None
            time.sleep(RETRY_DELAY_S)


class _Transient(TargetUnreachable):
    """A failure worth one more try."""


def _check(target: Target, stream: bool, timeout_s: float | None) -> None:
    fmt = format_for(target.config)
    path = fmt.stream_path if stream else fmt.chat_path
    url = target.base_url + path
    payload = fmt.payload(
        model=target.model,
        messages=[{"role": "user", "content": "ping"}],
        max_tokens=4,
        temperature=0.0,
        stream=stream,
    )
    timeout = timeout_s if timeout_s is not None else min(target.timeout_s, 30.0)
    headers = {"Content-Type": "application/json", **target.auth_headers()}
    try:
        # follow_redirects=False: a redirect must never carry the key to another host.
        with (
            httpx.Client(timeout=timeout, follow_redirects=False) as client,
            client.stream("POST", url, content=payload, headers=headers) as response,
        ):
            body = _read(response, timeout)
    except httpx.TimeoutException:
        raise TargetUnreachable(f"{url}: no answer within {timeout:g}s") from None
    except httpx.HTTPError as exc:
        cause = str(exc) or exc.__class__.__name__
        raise _Transient(
            f"{url}: cannot connect ({cause})", hint="is the server running on that address?"
        ) from None
    _status(target, fmt, url, response.status_code, body, stream)
    if stream:
        _judge_stream(target, fmt, url, body)
    else:
        _judge_batch(target, fmt, url, body)


def _read(response: httpx.Response, timeout: float) -> bytes:
    """The body, up to ``MAX_STREAM_BYTES`` and ``timeout`` seconds in all."""
    deadline = time.monotonic() + timeout
    body = bytearray()
    for piece in response.iter_bytes():
        body += piece
        if len(body) >= MAX_STREAM_BYTES or time.monotonic() > deadline:
            break
    return bytes(body)


def _status(
    target: Target, fmt: WireFormat, url: str, status: int, body: bytes, stream: bool
) -> None:
    http = target.api == "http"
    if status in (401, 403):
        where = f"${target.api_key_env}" if target.api_key_env else "an API key"
        state = "is set" if target.api_key is not None else "is not set"
        if http and target.config.headers:
            where, state = "target.headers", "were sent"
        raise TargetUnreachable(
            f"{url}: HTTP {status}, credentials refused ({where} {state})",
            hint="set the variable named by target.api_key_env in the profile"
            if not http
            else "check the variables that target.headers read ({env:NAME})",
        )
    if status == 404:
        if http:
            field = "stream_path" if stream and target.config.stream_path else "path"
            raise TargetUnreachable(
                f"{url}: HTTP 404: no such endpoint (change target.{field}): {_shown(target, body)}"
            )
        raise TargetUnreachable(
            f"{url}: HTTP 404: unknown endpoint or model {target.model!r} for api {target.api!r}",
            hint="check --api and --model",
        )
    if 300 <= status < 400:
        raise TargetUnreachable(f"{url}: HTTP {status} redirect (not followed, to protect keys)")
    if status >= 500:
        raise _Transient(f"{url}: HTTP {status}: {_snippet(target, body)}")
    if status != 200:
        change = " (change target.body)" if http and status in (400, 405, 415, 422) else ""
        raise TargetUnreachable(f"{url}: HTTP {status}{change}: {_shown(target, body)}")


def _judge_batch(target: Target, fmt: WireFormat, url: str, body: bytes) -> None:
    try:
        answer = fmt.parse_answer(body)
    except ValueError as exc:
        if target.api == "http":
            raise TargetUnreachable(
                f"{url}: the answer does not match the profile: {exc} (change "
                f"target.success_field): {_shown(target, body)}"
            ) from None
        hint = HTTP_HINT if _plain_events(body) else "check --api"
        raise TargetUnreachable(
            f"{url}: unexpected answer for api {target.api!r}: {exc}", hint=hint
        ) from None
    if target.api == "http" and target.config.usage_field and answer.output_tokens is None:
        raise TargetUnreachable(
            f"{url}: the answer has no count at {target.config.usage_field!r} (change "
            f"target.usage_field): {_shown(target, body)}"
        )
    if not answer.has_completion:
        raise TargetUnreachable(f"{url}: answer holds no completion")


def _judge_stream(target: Target, fmt: WireFormat, url: str, body: bytes) -> None:
    scanner = fmt.scanner()
    scanner.feed(body, 0.0)
    scanner.close(0.0)
    if scanner.error:
        raise TargetUnreachable(f"{url}: {target.mask(scanner.error)}")
    config = target.config
    if scanner.content:
        if target.api == "http" and config.stream_format == "ndjson" and _sse_framed(body):
            raise TargetUnreachable(
                f"{url}: the stream does not match the profile: SSE events read as NDJSON "
                f'lines (change target.stream_format to "sse"): {_shown(target, body)}'
            )
        return
    if target.api != "http":
        hint = HTTP_HINT if _plain_events(body) else "check --api"
        raise TargetUnreachable(
            f"{url}: unexpected stream for api {target.api!r}: no content event: "
            f"{_shown(target, body)}",
            hint=hint,
        )
    if body.lstrip().startswith(b"{") and _is_json(body):
        field = "stream_path: one JSON answer came back, not a stream"
    elif config.chunk_rule == "content":
        field = 'chunk_rule = "any" for plain text events'
    elif config.stream_format == "sse":
        field = "stream_format: no SSE data event (ndjson or raw?)"
    else:
        field = "stream_format or target.stream_path"
    raise TargetUnreachable(
        f"{url}: the stream does not match the profile: no chunk (change target.{field}): "
        f"{_shown(target, body)}"
    )


def _plain_events(body: bytes) -> bool:
    """True when ``body`` is SSE whose data is not JSON (a gateway's plain text events)."""
    for line in body[:4096].splitlines():
        if line.startswith(b"data:"):
            data = line[5:].strip()
            if data and data != b"[DONE]" and not _is_json(data):
                return True
    return False


def _sse_framed(body: bytes) -> bool:
    """True when ``body`` opens like an SSE stream (a data, event or comment line)."""
    return body.lstrip().startswith((b"data:", b"event:", b": ", b"id:"))


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return False
    return True


def _shown(target: Target, body: bytes) -> str:
    """What came back: its first bytes as a one-line literal, secrets masked."""
    if not body:
        return "got an empty body"
    text = target.mask(body[: SHOWN_BYTES * 4].decode("utf-8", "replace"))
    more = "..." if len(text) > SHOWN_BYTES or len(body) > SHOWN_BYTES * 4 else ""
    return f"got {text[:SHOWN_BYTES]!r}{more}"


def _snippet(target: Target, body: bytes) -> str:
    text = target.mask(body[:4096].decode("utf-8", "replace")).strip().replace("\n", " ")
    return text[:160] or "(empty body)"
