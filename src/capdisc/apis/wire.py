"""OpenAI-compatible and Ollama-native chat: request bodies and non-streamed answers.

Streamed answers are read by :mod:`capdisc.apis.stream` as they arrive; a
format only says how its stream is framed (``sse``: SSE ``data:`` events, else
NDJSON lines) and hands out the scanner that reads it. A streamed OpenAI-compatible
request asks for the usage (``stream_options.include_usage``), so output tokens are
the server's count. Any other HTTP API (``api = "http"``) is
:class:`capdisc.apis.http_api.HttpFormat`; :func:`capdisc.apis.formats.format_for`
picks the format of a target.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from capdisc.apis.stream import StreamScanner

__all__ = [
    "Answer",
    "OllamaFormat",
    "OpenAIFormat",
    "WireFormat",
    "wire_format",
]

ToolChoice = Literal["required", "none", "auto"] | None

# A single function tool the tool tasks offer; its result is faked by capdisc.
LOOKUP_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look up a fact needed to answer the question.",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string"}},
            "required": ["query"],
        },
    },
}
FAKE_TOOL_RESULT = '{"result": "42"}'


@dataclass(frozen=True, slots=True)
class Answer:
    """What a non-streaming answer said: its text and the tool calls it asked for."""

    content: str
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    # The server's usage, when the answer has one.
    output_tokens: int | None = None
    input_tokens: int | None = None
    # What a reasoning model thought before answering (it may run out of tokens there).
    reasoning: str = ""

    @property
    def has_completion(self) -> bool:
        """True when the answer holds text, reasoning or at least one tool call."""
        return bool(self.content) or bool(self.tool_calls) or bool(self.reasoning)


class WireFormat:
    """One API's conventions; subclasses fill in the details."""

    api: str = ""
    sse: bool = True  # streams are SSE events (else NDJSON lines)
    chat_path: str = ""
    models_path: str = ""

    @property
    def stream_path(self) -> str:
        """Where streamed requests go (the chat path but for ``api = "http"``)."""
        return self.chat_path

    def scanner(self) -> StreamScanner:
        """A new reader of one streamed answer."""
        return StreamScanner(sse=self.sse)

    def payload(self, **request: Any) -> bytes:
        """The encoded body of one chat request: :meth:`body`'s keywords."""
        return self.encode(self.body(**request))

    def body(
        self,
        *,
        model: str,
        messages: list[dict[str, Any]],
        max_tokens: int,
        temperature: float,
        stream: bool,
        seed: int | None = None,
        tools: bool = False,
        tool_choice: ToolChoice = None,
        exact: str = "max_tokens",
    ) -> dict[str, Any]:
        """The JSON body of one chat request.

        ``exact`` asks for exactly ``max_tokens`` where the server can: ``min_tokens``
        (vLLM) or ``ignore_eos`` (llama.cpp, vLLM); ``max_tokens`` only caps.
        """
        raise NotImplementedError

    def parse_answer(self, body: bytes) -> Answer:
        """Read a non-streamed answer; raise ``ValueError`` when it is not one."""
        raise NotImplementedError

    def tool_result_message(self, call: dict[str, Any]) -> dict[str, Any]:
        """The message that hands a (fake) tool result back after ``call``."""
        raise NotImplementedError

    @staticmethod
    def assistant_message(answer: Answer) -> dict[str, Any]:
        """The assistant turn to append to the conversation after ``answer``."""
        message: dict[str, Any] = {"role": "assistant", "content": answer.content}
        if answer.tool_calls:
            message["tool_calls"] = answer.tool_calls
        return message

    @staticmethod
    def encode(body: dict[str, Any]) -> bytes:
        """Compact JSON bytes of a request body."""
        return json.dumps(body, separators=(",", ":")).encode()


def _count(value: Any) -> int | None:
    """A token count from a usage block, None when absent or not a count."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _load_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"answer is not JSON: {exc.__class__.__name__}") from None
    if not isinstance(data, dict):
        raise ValueError("answer is not a JSON object")
    if "error" in data:
        error = data["error"]
        message = error.get("message") if isinstance(error, dict) else error
        raise ValueError(f"answer is an error: {str(message)[:200]}")
    return data


class OpenAIFormat(WireFormat):
    """``POST /v1/chat/completions``; streams are SSE ``data:`` events."""

    api = "openai"
    chat_path = "/v1/chat/completions"
    models_path = "/v1/models"

    def body(
        self,
        *,
        model: str,
        messages: list[dict[str, Any]],
        max_tokens: int,
        temperature: float,
        stream: bool,
        seed: int | None = None,
        tools: bool = False,
        tool_choice: ToolChoice = None,
        exact: str = "max_tokens",
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        if exact == "min_tokens":
            body["min_tokens"] = max_tokens
        elif exact == "ignore_eos":
            body["ignore_eos"] = True
        if seed is not None:
            body["seed"] = seed
        if tools:
            body["tools"] = [LOOKUP_TOOL]
            if tool_choice is not None:
                body["tool_choice"] = tool_choice
        return body

    def parse_answer(self, body: bytes) -> Answer:
        data = _load_object(body)
        try:
            message = data["choices"][0]["message"]
        except (KeyError, IndexError, TypeError):
            raise ValueError("answer has no choices[0].message") from None
        if not isinstance(message, dict):
            raise ValueError("choices[0].message is not an object")
        calls = message.get("tool_calls") or []
        if not isinstance(calls, list):
            raise ValueError("message.tool_calls is not a list")
        usage = data.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        return Answer(
            content=str(message.get("content") or ""),
            tool_calls=calls,
            output_tokens=_count(usage.get("completion_tokens")),
            input_tokens=_count(usage.get("prompt_tokens")),
            reasoning=str(message.get("reasoning_content") or message.get("reasoning") or ""),
        )

    def tool_result_message(self, call: dict[str, Any]) -> dict[str, Any]:
        return {
            "role": "tool",
            "tool_call_id": str(call.get("id", "")),
            "content": FAKE_TOOL_RESULT,
        }


class OllamaFormat(WireFormat):
    """Ollama's native ``POST /api/chat``; streams are NDJSON lines."""

    api = "ollama"
    sse = False
    chat_path = "/api/chat"
    models_path = "/api/tags"

    def body(
        self,
        *,
        model: str,
        messages: list[dict[str, Any]],
        max_tokens: int,
        temperature: float,
        stream: bool,
        seed: int | None = None,
        tools: bool = False,
        tool_choice: ToolChoice = None,
        exact: str = "max_tokens",
    ) -> dict[str, Any]:
        options: dict[str, Any] = {"num_predict": max_tokens, "temperature": temperature}
        if seed is not None:
            options["seed"] = seed
        body: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "stream": stream,
            "options": options,
        }
        # Ollama has no tool_choice: offering tools asks for a call, offering none asks
        # for the answer, which is how a client-orchestrated task fixes the count.
        if tools and tool_choice != "none":
            body["tools"] = [LOOKUP_TOOL]
        return body

    def parse_answer(self, body: bytes) -> Answer:
        data = _load_object(body)
        message = data.get("message")
        if not isinstance(message, dict):
            raise ValueError("answer has no message object")
        calls = message.get("tool_calls") or []
        if not isinstance(calls, list):
            raise ValueError("message.tool_calls is not a list")
        return Answer(
            content=str(message.get("content") or ""),
            tool_calls=calls,
            output_tokens=_count(data.get("eval_count")),
            input_tokens=_count(data.get("prompt_eval_count")),
            reasoning=str(message.get("thinking") or ""),
        )

    def tool_result_message(self, call: dict[str, Any]) -> dict[str, Any]:
        return {"role": "tool", "content": FAKE_TOOL_RESULT}


_FORMATS: dict[str, WireFormat] = {"openai": OpenAIFormat(), "ollama": OllamaFormat()}


def wire_format(api: str) -> WireFormat:
    """The wire format of ``api`` (``openai`` or ``ollama``)."""
    try:
        return _FORMATS[api]
    except KeyError:
        raise ValueError(f"unknown api {api!r} (choose from: {', '.join(_FORMATS)})") from None
