"""One row of capdisc's raw files: :class:`RequestRecord` (``requests.csv``, its header
derived from it) and :class:`ClientSample` (``client.csv``).

Written by the load engine, read by ``metrics``; it imports nothing of capdisc's. Field
names are public API (see the README). Times are Unix epoch seconds; durations are
milliseconds measured by capdisc itself, never Locust's buckets.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "CLIENT_COLUMNS",
    "LATER_COLUMNS",
    "RECORD_COLUMNS",
    "ROUND_PREFIX",
    "STOPPED_IN_FLIGHT",
    "ClientSample",
    "RequestRecord",
    "is_round",
]


class RequestRecord(NamedTuple):
    """One row of ``requests.csv``: one request, one tool round or one whole tool task.

    Optional figures are ``""`` when they do not apply (a batch request has no first
    token), so the CSV shows an empty field. Columns added after the first release
    (:data:`LATER_COLUMNS`) may be missing from an older ``requests.csv``.
    """

    ts_scheduled: float  # when constant pacing wanted the task to start
    ts_start: float  # when it started (slip = ts_start - ts_scheduled)
    ts_end: float
    user: int  # user number within the run
    step: int  # step (discovery) or block (comparison) number
    version: str  # which target: the profile label, "a"/"b" of a comparison
    name: str  # "batch", "stream", "tools" (a whole task) or "round K" (one tool round)
    status: int  # HTTP status, 0 when no answer arrived
    ok: int  # 1 success, 0 failure (per the strategy's definition of success)
    duration_ms: float  # end to end, the whole body read
    connect_ms: float | str = ""  # time to open a new connection; 0 on a reused one
    # Streams; times count from the moment a connection was ready.
    ttfb_ms: float | str = ""  # the first byte of the body
    ttft_ms: float | str = ""  # the first token: an event with content, reasoning or a tool call
    tpot_ms: float | str = ""  # (end - first token) / (output tokens - 1)
    itl_mean_ms: float | str = ""  # mean gap between content events
    itl_max_ms: float | str = ""  # longest gap between content events
    output_tokens: int | str = ""  # the server's usage, else (streams) content events
    input_tokens: int | str = ""  # the server's usage, when it says
    tokens_estimated: int | str = ""  # 1: output_tokens counts events (no usage sent)
    chunks: int | str = ""  # content events counted (streams), "" otherwise
    tool_calls: int | str = ""  # tool calls returned (tool rounds and tasks), "" otherwise
    reconnects: int | str = ""  # reused connections found closed and replaced (retries)
    # Last, so that a row cut inside its (free) text by a crash keeps every figure.
    error: str = ""  # short cause of a failure, empty on success


RECORD_COLUMNS: tuple[str, ...] = RequestRecord._fields
# Columns an older requests.csv may lack; they read as missing.
LATER_COLUMNS: tuple[str, ...] = (
    "connect_ms",
    "ttfb_ms",
    "tpot_ms",
    "itl_mean_ms",
    "itl_max_ms",
    "output_tokens",
    "input_tokens",
    "tokens_estimated",
    "reconnects",
)

# Task rows are named after the strategy ("batch", "stream", "tools"); the rounds of a
# tool task are named "round 1" .. "round N+1". Pacing, steps and capacity count tasks.
ROUND_PREFIX = "round "


def is_round(name: str) -> bool:
    """True for the row of one tool round, False for a whole task."""
    return name.startswith(ROUND_PREFIX)


class ClientSample(NamedTuple):
    """One second of one load process (a row of ``client.csv``): its CPU and loop lag."""

    ts: float  # end of the second it covers (Unix seconds)
    process: str  # "capdisc" (no workers), "master", "worker N"
    cpu: float  # CPU time / wall time over that second: 1.0 is one whole core
    lags_ms: tuple[float, ...]  # how late each 100 ms event-loop timer fired in it


# The error of a request cut in flight by capdisc itself (a stop past its stop timeout,
# a drain past its bound): not an answer of the target, so never one of its failures.
# Its row has status 0, ok 0 and its age at the cut as duration (a lower bound).
# The columns of ``client.csv``: one :class:`ClientSample` with its lags summed up.
CLIENT_COLUMNS: tuple[str, ...] = ("ts", "process", "cpu", "lag_p95_ms", "lag_max_ms", "lags_ms")

STOPPED_IN_FLIGHT = "stopped in flight"
