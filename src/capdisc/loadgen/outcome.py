"""What one request (or a whole tool task) came to: the figures of its ``requests.csv`` row.

Filled by the users as a request goes (status, connection, stream timing, tokens)
and turned into a :class:`~capdisc.records.RequestRecord` when it is reported.
"""

from __future__ import annotations

from capdisc.apis.stream import StreamScanner
from capdisc.apis.wire import Answer
from capdisc.records import STOPPED_IN_FLIGHT

__all__ = ["STOPPED_IN_FLIGHT", "Outcome", "blank_or_count", "blank_or_ms"]


class Outcome:
    """What one request (or a whole tool task) came to, for its record.

    Times are milliseconds; the stream figures count from the moment a connection
    was ready (the connecting is ``connect_ms``). None leaves the column empty.
    """

    __slots__ = (
        "chunks",
        "connect_ms",
        "error",
        "event_error",
        "input_tokens",
        "itl_max_ms",
        "itl_mean_ms",
        "length",
        "output_tokens",
        "reconnects",
        "status",
        "tokens_estimated",
        "tool_calls",
        "tpot_ms",
        "ttfb_ms",
        "ttft_ms",
    )

    def __init__(self, *, tool_calls: int | None = None) -> None:
        self.status = 0
        self.error = ""
        self.length = 0
        self.tool_calls = tool_calls
        # Time spent opening connections for this request (0 on a reused one), and
        # how often a reused connection turned out closed and was replaced.
        self.connect_ms: float | None = None
        self.reconnects = 0
        self.ttfb_ms: float | None = None
        self.ttft_ms: float | None = None
        self.tpot_ms: float | None = None
        self.itl_mean_ms: float | None = None
        self.itl_max_ms: float | None = None
        self.output_tokens: int | None = None
        self.input_tokens: int | None = None
        self.tokens_estimated: bool | None = None
        self.chunks: int | None = None
        self.event_error = ""  # an error event inside a 200 stream

    def add_stream(
        self, scanner: StreamScanner, ready: float, first_byte: float, end: float
    ) -> None:
        """The figures of a streamed body read by ``scanner`` (perf_counter times)."""
        self.ttfb_ms = (first_byte - ready) * 1000.0
        self.chunks = scanner.content
        self.event_error = scanner.error
        tokens = self.output_tokens = scanner.tokens
        self.input_tokens = scanner.input_tokens
        self.tokens_estimated = scanner.estimated
        first = scanner.first_t
        if first is None:
            return
        self.ttft_ms = (first - ready) * 1000.0
        if tokens > 1:
            self.tpot_ms = (end - first) * 1000.0 / (tokens - 1)
        if scanner.content > 1:
            self.itl_mean_ms = (scanner.last_t - first) * 1000.0 / (scanner.content - 1)
            self.itl_max_ms = scanner.max_gap * 1000.0

    def add_tokens(self, part: Outcome) -> None:
        """Add the tokens of one round to a whole task's."""
        if part.output_tokens is not None:
            self.output_tokens = (self.output_tokens or 0) + part.output_tokens
            self.tokens_estimated = False
        if part.input_tokens is not None:
            self.input_tokens = (self.input_tokens or 0) + part.input_tokens

    def add_usage(self, answer: Answer) -> None:
        """Tokens of a non-streamed answer, as its ``usage`` says."""
        if answer.output_tokens is not None:
            self.output_tokens = answer.output_tokens
            self.tokens_estimated = False
        self.input_tokens = answer.input_tokens


def blank_or_ms(value: float | None) -> float | str:
    return "" if value is None else round(value, 3)


def blank_or_count(value: int | bool | None) -> int | str:
    return "" if value is None else int(value)
