"""Wire formats: request bodies, answers and chunk counting on raw bytes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from capdisc.clients.wire import (
    OllamaFormat,
    OpenAIFormat,
    count_ndjson_lines,
    count_sse_events,
    wire_format,
)


def _sse(events: list[str], newline: str = "\n") -> bytes:
    return "".join(f"data: {e}{newline}{newline}" for e in events).encode()


def test_sse_counts_every_data_event_with_lf_and_crlf() -> None:
    """An SSE data: event is one chunk, whatever the line ending."""
    events = ['{"x": 1}', '{"x": "data: inside"}', "[DONE]"]
    assert count_sse_events(_sse(events)) == 3
    assert count_sse_events(_sse(events, "\r\n")) == 3


def test_sse_ignores_comments_and_other_fields() -> None:
    """Comments (keep-alives) and event:/id: lines are not chunks."""
    body = b": keep-alive\n\nevent: message\nid: 1\ndata: {}\n\n"
    assert count_sse_events(body) == 1


def test_ndjson_counts_lines_and_a_final_line_without_newline() -> None:
    """Each non-empty NDJSON line is a chunk; blank lines are not."""
    assert count_ndjson_lines(b'{"a":1}\n{"a":2}\n{"done":true}') == 3
    assert count_ndjson_lines(b'{"a":1}\r\n\r\n{"a":2}\r\n') == 2
    assert count_ndjson_lines(b"") == 0


@given(
    st.lists(
        st.text(
            alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
            max_size=30,
        ),
        max_size=40,
    )
)
def test_sse_count_matches_events_for_any_payload(payloads: list[str]) -> None:
    """Property: the count equals the number of events sent, for any payload text."""
    assert count_sse_events(_sse(payloads)) == len(payloads)


@given(st.binary(max_size=2000))
def test_counting_never_raises_on_garbage(body: bytes) -> None:
    """Property: arbitrary bytes are counted, never a crash, never negative."""
    assert count_sse_events(body) >= 0
    assert count_ndjson_lines(body) >= 0


@given(
    st.lists(
        st.dictionaries(st.text(max_size=5), st.integers(), max_size=3), min_size=1, max_size=30
    )
)
def test_ndjson_count_matches_objects(objects: list[dict[str, int]]) -> None:
    """Property: one JSON object per line is one chunk."""
    body = "".join(json.dumps(o) + "\n" for o in objects).encode()
    assert count_ndjson_lines(body) == len(objects)


def test_openai_body_forces_tool_choice() -> None:
    """A forced tool round carries the tool and tool_choice."""
    body = OpenAIFormat().body(
        model="m",
        messages=[],
        max_tokens=5,
        temperature=0,
        stream=False,
        tools=True,
        tool_choice="required",
    )
    assert body["tool_choice"] == "required" and body["tools"][0]["function"]["name"] == "lookup"


def test_ollama_body_offers_tools_only_when_a_call_is_wanted() -> None:
    """Ollama has no tool_choice: the answer round offers no tools."""
    fmt = OllamaFormat()
    call = fmt.body(
        model="m",
        messages=[],
        max_tokens=5,
        temperature=0,
        stream=True,
        tools=True,
        tool_choice="required",
    )
    answer = fmt.body(
        model="m",
        messages=[],
        max_tokens=5,
        temperature=0,
        stream=True,
        tools=True,
        tool_choice="none",
    )
    assert "tools" in call and "tools" not in answer
    assert call["options"]["num_predict"] == 5


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"error": {"message": "overloaded"}}', "overloaded"),
        (b'{"choices": []}', r"choices\[0\]"),
        (b"\xff\xfe", "not JSON"),
    ],
)
def test_openai_parse_rejects_bad_answers(body: bytes, message: str) -> None:
    """HTTP 200 with garbage or an error object is not a completion."""
    with pytest.raises(ValueError, match=message):
        OpenAIFormat().parse_answer(body)


def test_parse_answer_reads_content_and_tool_calls() -> None:
    """Content and tool calls are read from both formats."""
    openai = OpenAIFormat().parse_answer(
        b'{"choices":[{"message":{"content":null,"tool_calls":[{"id":"c1"}]}}]}'
    )
    ollama = OllamaFormat().parse_answer(b'{"message":{"content":"hi"},"done":true}')
    assert openai.tool_calls == [{"id": "c1"}] and openai.has_completion
    assert ollama.content == "hi" and not ollama.tool_calls


def test_unknown_api_names_the_choices() -> None:
    """An unknown api says which ones exist."""
    with pytest.raises(ValueError, match="openai, ollama"):
        wire_format("grpc")
