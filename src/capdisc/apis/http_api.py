"""Any HTTP API (``api = "http"``): requests from the profile's template, answers by its rules.

A team's own gateway has its own paths and JSON body, and often streams plain text
events. The profile's ``[target]`` table describes it: ``path`` and ``stream_path``,
a ``body`` template (:mod:`capdisc.templates`), how a stream is framed
(``stream_format``) and what counts as a chunk (``chunk_rule``: ``any``, read by
:class:`~capdisc.apis.events.EventScanner`, or ``content``, the OpenAI/Ollama rule
of :class:`~capdisc.apis.stream.StreamScanner`), and for batch answers the field
that must hold a non-empty value (``success_field``) and the output token count
(``usage_field``).
"""

from __future__ import annotations

import json
from typing import Any

from capdisc.apis.events import EventScanner, dotted_value
from capdisc.apis.stream import StreamScanner
from capdisc.apis.wire import Answer, WireFormat
from capdisc.settings import TargetConfig
from capdisc.templates import BODY_PLACEHOLDERS, Template, body_values

__all__ = ["HttpFormat", "answer_field"]


class HttpFormat(WireFormat):
    """A gateway described by a profile: its paths, body template and stream rules."""

    api = "http"

    def __init__(self, config: TargetConfig) -> None:
        self.config = config
        self.chat_path = config.path or "/"
        self._stream_path = config.stream_path or self.chat_path
        self.sse = config.stream_format != "ndjson"
        self.template = Template.parse(config.http_body, BODY_PLACEHOLDERS)
        self._names = frozenset(self.template.names)
        self._success = config.success_field.split(".") if config.success_field else None
        self._usage = config.usage_field.split(".") if config.usage_field else None

    @property
    def stream_path(self) -> str:
        return self._stream_path

    def scanner(self) -> StreamScanner:
        config = self.config
        if config.chunk_rule == "content":
            return StreamScanner(sse=self.sse)
        return EventScanner(stream_format=config.stream_format, usage_field=config.usage_field)

    def payload(self, **request: Any) -> bytes:
        # The template says what the gateway takes: seed, tools and exact lengths are
        # the gateway's business (a template may pass {max_tokens} on).
        values = body_values(
            messages=request["messages"],
            model=request["model"],
            max_tokens=request["max_tokens"],
            temperature=request["temperature"],
            stream=request["stream"],
            only=self._names,
        )
        return self.template.fill(values).encode()

    def parse_answer(self, body: bytes) -> Answer:
        """A batch answer: ``success_field`` must hold a value (else any body will do);
        ``usage_field``, when found, gives the output tokens."""
        if not body.strip():
            raise ValueError("answer is empty")
        if self._success is None and self._usage is None:
            return Answer(content=body[:64].decode("utf-8", "replace"))
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise ValueError("answer is not JSON") from None
        content = body[:64].decode("utf-8", "replace")
        if self._success is not None:
            content = answer_field(data, self.config.success_field or "")
            if not content:
                raise ValueError(f"answer's {self.config.success_field!r} is empty")
        tokens = None
        if self._usage is not None:
            try:
                value = dotted_value(data, self._usage)
            except LookupError:
                value = None  # a missing count is no failure: tokens stay unknown
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                tokens = value
        return Answer(content=content, output_tokens=tokens)

    def tool_result_message(self, call: dict[str, Any]) -> dict[str, Any]:
        raise ValueError('client-orchestrated tools need api "openai" or "ollama"')


def answer_field(data: Any, dotted: str) -> str:
    """The text of the value at ``dotted`` in an answer ("" when empty); ``ValueError``
    naming the path when it is missing."""
    try:
        value = dotted_value(data, dotted.split("."))
    except LookupError:
        raise ValueError(f"answer has no {dotted!r}") from None
    if value is None or value == "" or value == [] or value == {}:
        return ""
    return value if isinstance(value, str) else json.dumps(value)
