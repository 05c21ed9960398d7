"""Is latency still climbing within a step? The early sign of an overloaded server.

With constant pacing, a server past its capacity builds a queue that grows every
interval: latency climbs steadily long before tasks start late or throughput
visibly falls. Splitting the step's tasks into thirds by start time shows it:
a growing queue makes each third slower than the one before, and the last one
clearly slower than the first. Requiring the rise to be steady (third by third)
keeps the noise of a short step from looking like a queue.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["latency_growth"]

_MIN_PER_PART = 4


def latency_growth(tasks_df: pd.DataFrame) -> float | None:
    """Relative growth of the median duration from the first to the last third of a step.

    ``0.3`` means the last third is 30% slower than the first, with the middle third
    in between; a rise that is not steady counts as no growth (``0.0``). Uses
    successful tasks ordered by start; ``None`` when there are too few to say.
    """
    ok = tasks_df[tasks_df["ok"] == 1].sort_values("ts_start")["duration_ms"]
    part = len(ok) // 3
    if part < _MIN_PER_PART:
        return None
    first = float(ok.iloc[:part].median())
    middle = float(ok.iloc[part : len(ok) - part].median())
    last = float(ok.iloc[len(ok) - part :].median())
    if first <= 0:
        return None
    if not first <= middle <= last:
        return 0.0
    return last / first - 1.0
