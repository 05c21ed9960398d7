"""The per-request record: one row of ``requests.csv`` for every request, tool round and task.

This module is the single definition of the columns, shared by the writer (in
``loadgen``) and the readers (in ``metrics``). Times are Unix epoch seconds;
durations are milliseconds measured by capdisc itself, never Locust's buckets.
"""

from __future__ import annotations

__all__ = ["RECORD_COLUMNS", "ROUND_PREFIX", "is_round"]

RECORD_COLUMNS: tuple[str, ...] = (
    "ts_scheduled",  # when constant pacing wanted the task to start
    "ts_start",  # when it started (slip = ts_start - ts_scheduled)
    "ts_end",
    "user",  # user number within the run
    "step",  # step (discovery) or block (comparison) number
    "version",  # which target: the profile label, "a"/"b" of a comparison
    "name",  # request name, e.g. "batch", "stream", "tools round 1", "tools task"
    "status",  # HTTP status, 0 when no answer arrived
    "ok",  # 1 success, 0 failure (per the strategy's definition of success)
    "duration_ms",  # end to end, the whole body read
    "ttft_ms",  # time to the first chunk (streams), empty otherwise
    "chunks",  # chunks counted (streams), empty otherwise
    "tool_calls",  # tool calls returned (tool rounds and tasks), empty otherwise
    "error",  # short cause of a failure, empty on success
)

# Task rows are named after the strategy ("batch", "stream", "tools"); the rounds of a
# tool task are named "round 1" .. "round N+1". Pacing, steps and capacity count tasks.
ROUND_PREFIX = "round "


def is_round(name: str) -> bool:
    """True for the row of one tool round, False for a whole task."""
    return name.startswith(ROUND_PREFIX)
