"""When a task started late: the one rule every figure and test of pacing reads.

Constant pacing schedules each user's next start one interval after its last; a task
starting later than its schedule by more than 5% of the interval (and never for less
than 50 ms: below that, slip is scheduler jitter, not a busy user) started late. The
pacing figures (:func:`capdisc.metrics.figures.pacing_stats`) and the lateness test of
a step (:func:`capdisc.metrics.trend.lateness`) both count by it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["LATE_FLOOR_MS", "LATE_SHARE_OF_INTERVAL", "late_after_ms", "slips_ms"]

LATE_SHARE_OF_INTERVAL = 0.05
LATE_FLOOR_MS = 50.0


def late_after_ms(interval_s: float) -> float:
    """How many ms after its schedule a task starts late at this pacing."""
    return max(LATE_SHARE_OF_INTERVAL * interval_s * 1000.0, LATE_FLOOR_MS)


def slips_ms(tasks_df: pd.DataFrame) -> np.ndarray:
    """Each task's start after its schedule, in ms (a slightly negative slip is clock
    rounding, not a task started early: 0)."""
    slip = (tasks_df["ts_start"] - tasks_df["ts_scheduled"]).to_numpy(dtype="float64") * 1000.0
    return np.clip(slip, 0.0, None)
