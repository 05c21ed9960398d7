"""``chunk_rule = "any"``: every non-empty event is a chunk, on the bytes sse-starlette sends."""

from __future__ import annotations

import asyncio

import pytest
from sse_starlette.event import ServerSentEvent

from capdisc.apis.events import EventScanner


def scan(
    body: bytes, fmt: str = "sse", *, cut: int | None = None, usage: str | None = None
) -> EventScanner:
    """Feed ``body`` whole, or in pieces of ``cut`` bytes (each read one time unit later)."""
    scanner = EventScanner(stream_format=fmt, usage_field=usage)  # type: ignore[arg-type]
    pieces = [body] if cut is None else [body[i : i + cut] for i in range(0, len(body), cut)]
    for t, piece in enumerate(pieces):
        scanner.feed(piece, float(t))
    scanner.close(float(len(pieces)))
    return scanner


def starlette_events(*events: ServerSentEvent | str) -> bytes:
    """The bytes sse-starlette writes for ``events`` (its own encoder, \\r\\n line ends)."""
    return b"".join(
        (e if isinstance(e, ServerSentEvent) else ServerSentEvent(data=e)).encode() for e in events
    )


WORDS = ["Hello", " world", ",", " how", " are", " you", "?"]


@pytest.mark.parametrize("cut", [None, 1, 2, 3, 5, 7, 64])
def test_plain_text_events_with_pings_names_and_crlf(cut: int | None) -> None:
    """Plain text events, a ping comment, named events, CRLF: 7 chunks however the reads fall."""
    body = starlette_events(
        ServerSentEvent(comment="ping - 2026-12-03 13:00:00"),
        *WORDS[:3],
        ServerSentEvent(data=WORDS[3], event="token", id="4"),
        ServerSentEvent(comment="ping - 2026-12-03 13:00:15"),
        *WORDS[4:],
        ServerSentEvent(data="", event="end"),
        "[DONE]",
    )
    assert b"\r\n" in body and b"data: Hello\r\n\r\n" in body
    scanner = scan(body, cut=cut)
    assert scanner.content == len(WORDS) and not scanner.error
    assert scanner.tokens == len(WORDS) and scanner.estimated
    assert scanner.first_t is not None


def test_first_chunk_is_the_first_event_with_data_not_the_first_byte() -> None:
    """TTFT counts from the first chunk: a ping before it does not count."""
    scanner = EventScanner(stream_format="sse")
    scanner.feed(b": ping\r\n\r\n", 1.0)
    scanner.feed(b"data: a\r\n", 2.0)
    scanner.feed(b"\r\ndata: b\r\n\r\n", 3.0)
    scanner.feed(b"data: c\r\n\r\n", 5.0)
    scanner.close(6.0)
    assert (scanner.content, scanner.first_t, scanner.last_t, scanner.max_gap) == (3, 3.0, 5.0, 2.0)


@pytest.mark.parametrize("sep", [b"\n", b"\r", b"\r\n"])
def test_every_line_ending_sse_allows(sep: bytes) -> None:
    body = sep.join([b"data: one", b"", b"data: two", b"data: more of two", b"", b""])
    assert scan(body).content == 2
    assert scan(body, cut=1).content == 2


def test_a_gateway_that_adds_its_own_data_prefix_still_counts() -> None:
    """The write-up's bug: yielding 'data: x' to EventSourceResponse sends 'data: data: x'."""
    body = starlette_events(*(f"data: {w}" for w in WORDS))
    assert b"data: data: Hello" in body
    assert scan(body).content == len(WORDS)


def test_empty_done_and_error_events() -> None:
    assert scan(b"data: \r\n\r\ndata:\r\n\r\ndata: [DONE]\r\n\r\n").content == 0
    named = scan(b"data: a\n\ndata: b\n\nevent: error\ndata: model overloaded\n\n")
    assert named.content == 2 and named.error == "error event in the stream: model overloaded"
    json_error = scan(b'data: a\n\ndata: {"error": {"message": "out of memory"}}\n\n')
    assert json_error.content == 1 and "out of memory" in json_error.error


def test_usage_field_gives_the_tokens_and_is_not_a_chunk() -> None:
    body = starlette_events(*WORDS, ServerSentEvent(data='{"usage": {"output_tokens": 42}}'))
    with_usage = scan(body, usage="usage.output_tokens")
    assert with_usage.content == len(WORDS) and with_usage.tokens == 42
    assert not with_usage.estimated
    without = scan(body)
    assert without.content == len(WORDS) + 1 and without.estimated


def test_ndjson_and_raw() -> None:
    lines = b'{"t": "a"}\n\n{"t": "b"}\r\n{"t": "c"}\n[DONE]\n{"n": 3}'
    assert scan(lines, "ndjson").content == 4
    assert scan(lines, "ndjson", usage="n").tokens == 3
    assert scan(lines, "ndjson", cut=3).content == 4
    raw = EventScanner(stream_format="raw")
    for t, piece in enumerate([b"Hel", b"", b"lo", b" world"]):
        raw.feed(piece, float(t))
    raw.close(9.0)
    assert (raw.content, raw.first_t, raw.last_t) == (3, 0.0, 3.0)


def test_the_bytes_of_a_real_event_source_response() -> None:
    """What EventSourceResponse itself writes (ping off), read in the reads it was sent in."""
    from sse_starlette.sse import EventSourceResponse

    async def words():  # type: ignore[no-untyped-def]
        for word in WORDS:
            yield word
        yield {"event": "done", "data": "[DONE]"}

    sent: list[bytes] = []

    async def send(message: dict) -> None:  # type: ignore[type-arg]
        if message["type"] == "http.response.body" and message.get("body"):
            sent.append(message["body"])

    async def receive() -> dict:  # type: ignore[type-arg]
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    response = EventSourceResponse(words(), ping=0)
    scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    asyncio.run(response(scope, receive, send))
    scanner = EventScanner(stream_format="sse")
    for t, piece in enumerate(sent):
        scanner.feed(piece, float(t))
    scanner.close(float(len(sent)))
    assert scanner.content == len(WORDS) and scanner.first_t == 0.0
