"""Counting the chunks of any stream: the write-up's rule, ``chunk_rule = "any"``.

A gateway of one's own often streams plain text events (``data: Hello``), not
OpenAI JSON, so there is no content field to look for: every event that carries
something is a chunk. :class:`EventScanner` reads a stream as
:class:`~capdisc.apis.stream.StreamScanner` does (each read with its arrival
time, the same timing figures) and counts, by ``stream_format``:

- ``sse``: events as sse-starlette's ``EventSourceResponse`` sends them: lines
  ended by ``\\r\\n`` (or ``\\n``, or ``\\r``), an event ended by a blank line, its
  data the ``data:`` lines joined. An event is a chunk when its data is not empty
  and not ``[DONE]``; comments (``: ping``), ``event:``, ``id:`` and ``retry:``
  lines alone are not events. An event named ``error`` (``event: error``) or whose
  data is a JSON error object fails the request with its text.
- ``ndjson``: every non-empty line but ``[DONE]``; a JSON error object fails.
- ``raw``: every read of the body that brought bytes (no framing to go by).

With ``usage_field`` (a dotted path, e.g. ``usage.output_tokens``), an event whose
data holds that path as a JSON object gives the output tokens and is not a chunk;
without it, tokens are chunks (estimated). Only events that may hold the usage or an
error are decoded; the rest is counted on the bytes.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from capdisc.apis.stream import StreamScanner

__all__ = ["EventScanner", "dotted_value"]

_ERROR = re.compile(rb'\s*\{\s*"error"\s*:').match
_DONE = b"[DONE]"


class EventScanner(StreamScanner):
    """Counts every non-empty event of an SSE, NDJSON or raw stream as a chunk."""

    __slots__ = ("_cr", "_format", "_usage_key", "_usage_path")

    def __init__(
        self, *, stream_format: Literal["sse", "ndjson", "raw"], usage_field: str | None = None
    ) -> None:
        super().__init__(sse=stream_format == "sse")
        self._format = stream_format
        self._cr = False  # the last read ended in \r: its \n may come with the next one
        self._usage_path = usage_field.split(".") if usage_field else None
        # Data without this key cannot hold the usage: one substring search tells.
        self._usage_key = f'"{self._usage_path[-1]}"'.encode() if self._usage_path else None

    def feed(self, data: bytes, now: float) -> None:
        if self._format == "raw":
            if data:
                self._chunks(1, now)
            return
        if b"\r" in data or self._cr:
            data = self._normalise(data)
        if self._carry:
            data = self._carry + data
        separator = b"\n\n" if self._sse else b"\n"
        parts = data.split(separator)
        self._carry = parts.pop()  # an event not yet ended waits for the next read
        self._count(parts, now)

    def close(self, now: float) -> None:
        self._cr = False
        if self._carry:
            carry, self._carry = self._carry, b""
            self._count([carry], now)

    def _normalise(self, data: bytes) -> bytes:
        """Line ends as \\n: sse-starlette sends \\r\\n (or \\r) between lines."""
        if self._cr and data.startswith(b"\n"):
            data = data[1:]  # the \n of a \r\n whose \r ended the last read
        self._cr = data.endswith(b"\r")
        return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")

    def _count(self, events: list[bytes], now: float) -> None:
        chunks = 0
        sse = self._sse
        usage_key = self._usage_key
        for event in events:
            if sse:
                if event.startswith(b"data: ") and b"\n" not in event:
                    data = event[6:]  # the usual event: one data line
                else:
                    found = self._sse_data(event)
                    if found is None:
                        continue
                    data = found
            else:
                data = event.strip()
            if not data or data == _DONE:
                continue
            if data[:1] == b"{":
                if _ERROR(data):
                    self.error = _error_text(data)
                    continue
                if usage_key is not None and usage_key in data and self._usage(data):
                    continue
            chunks += 1
        if chunks:
            self._chunks(chunks, now)

    def _sse_data(self, event: bytes) -> bytes | None:
        """The data of an event of several lines; None when it has no data line."""
        lines = event.split(b"\n")
        data = [
            line[6:] if line[5:6] == b" " else line[5:] for line in lines if line[:5] == b"data:"
        ]
        if not data:
            return None  # comments (pings), or only event:/id:/retry: fields
        text = b"\n".join(data)
        if b"event: error" in lines or b"event:error" in lines:
            self.error = f"error event in the stream: {_short(text)}"
            return None
        return text or (b"\n" if len(data) > 1 else b"")

    def _usage(self, data: bytes) -> bool:
        """True when ``data`` holds the usage path (the output tokens are then known)."""
        try:
            value = dotted_value(json.loads(data), self._usage_path or [])
        except (ValueError, UnicodeDecodeError, LookupError):
            return False
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            self.output_tokens = value
            return True
        return False


def dotted_value(data: Any, path: list[str]) -> Any:
    """``data[a][b]...`` for the path ``a.b...`` (a number indexes a list); ``LookupError``
    when a key is missing."""
    value = data
    for part in path:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise LookupError(part)
    return value


def _short(data: bytes) -> str:
    return " ".join(data.decode("utf-8", "replace").split())[:160]


def _error_text(data: bytes) -> str:
    try:
        error = json.loads(data).get("error")
    except (ValueError, UnicodeDecodeError, AttributeError):
        error = None
    if isinstance(error, dict):
        error = error.get("message") or error.get("type") or error
    return f"error event in the stream: {_short(str(error).encode()) if error else _short(data)}"
