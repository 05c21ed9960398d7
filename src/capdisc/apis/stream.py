"""Reading a streamed answer as it arrives: content events, first token, gaps, usage.

The streaming hot path. The load engine hands each read of the body to
:meth:`StreamScanner.feed` with its arrival time; the scanner splits the bytes into
lines and tells content events from the rest with one compiled pattern on the raw
bytes (C speed), never decoding JSON on the way. An event is *content* when it
carries text, reasoning or a tool call: an SSE ``data:`` event or an NDJSON line
whose ``content``, ``reasoning_content``, ``reasoning`` or ``thinking`` string is not
empty, or whose ``tool_calls`` list holds a call. ``[DONE]``, comments, keep-alives,
role-only events, the finish event and the usage event are not content. Only the
few events that are not content are looked at further: an error object fails the
request with its message, and the usage (``usage`` of an OpenAI-compatible stream
asked with ``stream_options.include_usage``, ``eval_count`` of Ollama's last line)
gives the output and input tokens; a content event that also carries ``usage``
(hosted APIs, vLLM's continuous usage stats) is read for it too. Without usage, output tokens are the content
events, and the figure says it is estimated.

Times: the first content event is the first token; the gaps between reads that
brought content give the inter-token figures (events arriving in one read share
their arrival time).
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["StreamScanner"]

# A string that is not empty, or a tool call, under one of the keys that carry output.
_CONTENT = re.compile(
    rb'"(?:content|reasoning_content|reasoning|thinking)"\s*:\s*"(?!")'
    rb'|"tool_calls"\s*:\s*\[\s*\{'
).search
_ERROR = re.compile(rb'\s*\{\s*"error"\s*:').match


class StreamScanner:
    """Counts content events and their timing over the reads of one streamed body."""

    __slots__ = (
        "_carry",
        "_sse",
        "content",
        "error",
        "first_t",
        "input_tokens",
        "last_t",
        "max_gap",
        "output_tokens",
    )

    def __init__(self, *, sse: bool) -> None:
        self._sse = sse
        self._carry = b""
        self.content = 0
        self.first_t: float | None = None  # arrival of the first content event
        self.last_t = 0.0  # arrival of the latest content event
        self.max_gap = 0.0  # longest wait between two reads that brought content
        self.error = ""
        self.output_tokens: int | None = None  # from usage, when the server sent it
        self.input_tokens: int | None = None

    def feed(self, data: bytes, now: float) -> None:
        """One read of the body, arrived at ``now`` (any clock, seconds)."""
        if self._carry:
            data = self._carry + data
        lines = data.split(b"\n")
        self._carry = lines.pop()  # a line not yet ended waits for the next read
        self._lines(lines, now)

    def close(self, now: float) -> None:
        """The body ended: a last line without its newline still counts."""
        if self._carry:
            carry, self._carry = self._carry, b""
            self._lines([carry], now)

    def _lines(self, lines: list[bytes], now: float) -> None:
        sse = self._sse
        content = 0
        for line in lines:
            if sse:
                if not line.startswith(b"data:"):
                    continue  # comments, keep-alives, event: and id: fields, blank lines
            elif not line or line == b"\r":
                continue
            # Compact JSON text first (one C substring search), the full pattern after.
            at = line.find(b'"content":"')
            if (at >= 0 and line[at + 11 : at + 12] != b'"') or _CONTENT(line):
                content += 1
                # Hosted APIs and vLLM's continuous usage put the usage on content events.
                if b'"usage"' in line:
                    self._take_usage(line[5:] if sse else line)
            else:
                self._other(line[5:] if sse else line)
        if content:
            self._chunks(content, now)

    def _chunks(self, count: int, now: float) -> None:
        """``count`` chunks arrived at ``now``: the first token, the gaps."""
        if self.first_t is None:
            self.first_t = now
        elif now - self.last_t > self.max_gap:
            self.max_gap = now - self.last_t
        self.last_t = now
        self.content += count

    def _other(self, payload: bytes) -> None:
        """An event without content: an error, the usage, or nothing to keep."""
        if _ERROR(payload):
            self.error = _error_message(payload)
        elif b'"usage"' in payload or b'"eval_count"' in payload:
            self._take_usage(payload)

    def _take_usage(self, payload: bytes) -> None:
        """The server's token counts, wherever they come (the latest wins: continuous
        usage is cumulative)."""
        data = _object(payload)
        if data is None:
            return
        usage = data.get("usage")
        if isinstance(usage, dict):
            self.output_tokens = _count(usage.get("completion_tokens"))
            self.input_tokens = _count(usage.get("prompt_tokens"))
        elif "eval_count" in data:
            self.output_tokens = _count(data.get("eval_count"))
            self.input_tokens = _count(data.get("prompt_eval_count"))

    @property
    def estimated(self) -> bool:
        """True when output tokens are counted events, not the server's own figure."""
        return self.output_tokens is None

    @property
    def tokens(self) -> int:
        """Output tokens: the server's count when it sent one, else the content events."""
        return self.content if self.output_tokens is None else self.output_tokens


def _object(payload: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _error_message(payload: bytes) -> str:
    data = _object(payload)
    error = data.get("error") if data is not None else None
    if isinstance(error, dict):
        error = error.get("message") or error.get("type") or error
    text = " ".join(str(error if error is not None else payload[:200]).split())
    return f"error event in the stream: {text[:160]}"
