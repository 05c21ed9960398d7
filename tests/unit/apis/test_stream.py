"""The stream scanner on what real servers send (llama.cpp's transcripts, byte for byte)
and on the edge cases: role-only, finish and usage events, errors, keep-alives, splits."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from capdisc.apis.stream import StreamScanner

# Copied from the shared transcripts (tests/fixtures/README.md says how they were made).
TRANSCRIPTS = Path(__file__).resolve().parents[2] / "fixtures" / "llama-server"


def transcript(name: str) -> bytes:
    return (TRANSCRIPTS / f"{name}.body").read_bytes()


def content_events_by_json(body: bytes) -> int:
    """An independent count: decode every event and look at its delta."""
    count = 0
    for line in body.split(b"\n"):
        if not line.startswith(b"data:") or line[5:].strip() == b"[DONE]":
            continue
        event = json.loads(line[5:])
        for choice in event.get("choices", []):
            delta = choice.get("delta", {})
            if delta.get("content") or delta.get("reasoning_content") or delta.get("tool_calls"):
                count += 1
    return count


def scan(body: bytes, *, sse: bool = True, pieces: list[int] | None = None) -> StreamScanner:
    scanner = StreamScanner(sse=sse)
    cuts = sorted({0, len(body), *(pieces or [])})
    for i, (start, end) in enumerate(itertools.pairwise(cuts)):
        scanner.feed(body[start:end], float(i))
    scanner.close(float(len(cuts)))
    return scanner


@pytest.mark.parametrize("name", ["openai-stream", "openai-stream-usage", "openai-tool-stream"])
def test_llama_server_streams_count_content_events_only(name: str) -> None:
    """Role-only, finish and usage events and [DONE] are not content; tool-call deltas are."""
    body = transcript(name)
    scanner = scan(body)
    assert scanner.content == content_events_by_json(body) > 2
    assert not scanner.error


def test_llama_server_usage_gives_the_token_counts() -> None:
    """stream_options.include_usage: the last event's usage, not an estimate."""
    scanner = scan(transcript("openai-stream-usage"))
    assert (scanner.output_tokens, scanner.input_tokens) == (8, 28)
    assert scanner.tokens == 8 and not scanner.estimated


def test_without_usage_tokens_are_the_content_events_and_say_so() -> None:
    scanner = scan(transcript("openai-stream"))
    assert scanner.estimated and scanner.tokens == scanner.content


@given(st.lists(st.integers(min_value=1, max_value=3000), max_size=40))
def test_any_split_of_the_reads_gives_the_same_figures(cuts: list[int]) -> None:
    """Events cut across reads (even inside 'data:') are counted once."""
    body = transcript("openai-stream-usage")
    whole = scan(body)
    split = scan(body, pieces=cuts)
    assert (split.content, split.output_tokens, split.input_tokens) == (
        whole.content,
        whole.output_tokens,
        whole.input_tokens,
    )


def test_a_zero_token_stream_has_no_content() -> None:
    """Role event, finish event and [DONE]: three events, zero content (a failure)."""
    body = (
        b'data: {"choices":[{"delta":{"role":"assistant","content":null}}]}\n\n'
        b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\n'
        b"data: [DONE]\n\n"
    )
    assert scan(body).content == 0


def test_an_error_event_inside_a_200_stream_is_kept_with_its_message() -> None:
    body = (
        b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n'
        b'data: {"error": {"message": "model overloaded", "code": 503}}\n\n'
    )
    scanner = scan(body)
    assert scanner.content == 1
    assert "model overloaded" in scanner.error


def test_comments_keep_alives_and_crlf_are_not_content() -> None:
    body = (
        b": ping\r\n\r\n"
        b"event: message\r\n"
        b'data: {"choices":[{"delta":{"content":"x"}}]}\r\n\r\n'
        b": keep-alive\r\n\r\n"
        b'data: {"choices":[{"delta":{"content": "y"}}]}\r\n\r\n'
        b'data: {"choices":[{"delta":{"content":""}}]}\r\n\r\n'
        b"data: [DONE]\r\n\r\n"
    )
    assert scan(body).content == 2


def test_reasoning_counts_as_a_token() -> None:
    body = (
        b'data: {"choices":[{"delta":{"reasoning_content":"think"}}]}\n\n'
        b'data: {"choices":[{"delta":{"content":"answer"}}]}\n\n'
    )
    assert scan(body).content == 2


def test_ndjson_lines_blank_runs_and_the_final_counts() -> None:
    """Ollama: content lines count, blank lines (any run of them) do not, eval_count is usage."""
    body = (
        b'{"message":{"role":"assistant","content":"a"},"done":false}\n\n\n\n'
        b'{"message":{"role":"assistant","content":"b"},"done":false}\r\n\r\n'
        b'{"message":{"role":"assistant","content":"","thinking":"hm"},"done":false}\n'
        b'{"message":{"role":"assistant","content":""},"done":true,'
        b'"eval_count":3,"prompt_eval_count":11}'
    )
    scanner = scan(body, sse=False)
    assert scanner.content == 3
    assert (scanner.output_tokens, scanner.input_tokens) == (3, 11)


def test_times_first_token_and_longest_gap() -> None:
    """The first content read is the first token; role-only reads before it are not."""
    scanner = StreamScanner(sse=True)
    scanner.feed(b'data: {"choices":[{"delta":{"role":"assistant","content":null}}]}\n\n', 0.0)
    scanner.feed(b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n', 0.2)
    scanner.feed(b'data: {"choices":[{"delta":{"content":"b"}}]}\n\n', 0.25)
    scanner.feed(b'data: {"choices":[{"delta":{"content":"c"}}]}\n\n', 0.45)
    scanner.close(0.5)
    assert scanner.first_t == 0.2 and scanner.last_t == 0.45
    assert scanner.max_gap == pytest.approx(0.2)
    assert scanner.content == 3


_TEXT = st.text(
    alphabet=st.characters(blacklist_characters='\r\n"\\', blacklist_categories=("Cs",)),
    min_size=1,
    max_size=20,
)


@given(st.lists(_TEXT, max_size=40), st.sampled_from(["\n", "\r\n"]))
def test_sse_content_count_matches_the_tokens_sent(texts: list[str], newline: str) -> None:
    """Property: one content event per token, whatever the text and the line ending."""
    events = [json.dumps({"choices": [{"delta": {"content": t}}]}) for t in texts]
    body = "".join(f"data: {e}{newline}{newline}" for e in [*events, "[DONE]"]).encode()
    assert scan(body).content == len(texts)


@given(st.lists(_TEXT, min_size=1, max_size=30))
def test_ndjson_content_count_matches_the_lines_sent(texts: list[str]) -> None:
    lines = [json.dumps({"message": {"content": t}, "done": False}) for t in texts]
    lines.append(json.dumps({"message": {"content": ""}, "done": True, "eval_count": 9}))
    body = "".join(line + "\n" for line in lines).encode()
    scanner = scan(body, sse=False)
    assert scanner.content == len(texts) and scanner.output_tokens == 9


@given(st.binary(max_size=2000), st.booleans())
def test_garbage_never_raises(body: bytes, sse: bool) -> None:
    """Property: arbitrary bytes are scanned, never a crash, never a negative count."""
    assert scan(body, sse=sse).content >= 0


def test_usage_on_a_content_event_is_read() -> None:
    """Hosted APIs and vLLM's continuous usage stats send ``usage`` on content events.

    With 20 tokens per event, counting events made 5 tokens of 100 (TPOT 20x too high);
    the server's cumulative count wins, the latest one.
    """
    events = [
        {"choices": [{"delta": {"content": "word " * 20}}], "usage": {
            "prompt_tokens": 12, "completion_tokens": 20 * (n + 1)}}
        for n in range(5)
    ]  # fmt: skip
    body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    scanner = scan(body + b"data: [DONE]\n\n")
    assert scanner.content == 5
    assert (scanner.output_tokens, scanner.input_tokens) == (100, 12)
    assert scanner.tokens == 100 and not scanner.estimated
