"""Wire formats: request bodies and answers (streams: see test_stream.py)."""

from __future__ import annotations

import pytest

from capdisc.apis.wire import OllamaFormat, OpenAIFormat, wire_format


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
