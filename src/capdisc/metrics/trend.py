"""Is latency still climbing within a step? The early sign of an overloaded server.

With constant pacing, a server past its capacity builds a queue that grows every
interval: latency climbs steadily long before tasks start late or throughput
visibly falls. Comparing the median latency of the second half of a step with the
first half (by start time) shows it within a few intervals, using only what a
client observes.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["latency_growth"]

_MIN_PER_HALF = 4


def latency_growth(tasks_df: pd.DataFrame) -> float | None:
    """Relative growth of the median duration, second half of the step over the first.

    ``0.3`` means the later half is 30% slower. Uses successful tasks ordered by
    start; ``None`` when there are too few of them to say.
    """
    ok = tasks_df[tasks_df["ok"] == 1].sort_values("ts_start")
    half = len(ok) // 2
    if half < _MIN_PER_HALF:
        return None
    first = float(ok["duration_ms"].iloc[:half].median())
    second = float(ok["duration_ms"].iloc[len(ok) - half :].median())
    if first <= 0:
        return None
    return second / first - 1.0
