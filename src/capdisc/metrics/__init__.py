"""Records to figures: the only place, with ``reports``, that uses pandas.

Pure functions: the per-request rows (``requests.csv`` or in memory) become a typed
DataFrame (:mod:`.frame`), then the figures of ``summary.json`` (:mod:`.figures`) and
the statistics of a comparison (:mod:`.compare`). Nothing here reads Locust's own
statistics, writes a file or prints.
"""

from __future__ import annotations

from capdisc.metrics.compare import MIN_SAMPLES, block_bootstrap_medians, compare_versions
from capdisc.metrics.figures import (
    LATE_FLOOR_MS,
    LATE_SHARE_OF_INTERVAL,
    at_stop,
    measured_tasks,
    pacing_stats,
    percentile,
    round_p50s,
    step_figures,
    version_stats,
)
from capdisc.metrics.frame import read_records, records_frame, rounds, tasks

__all__ = [
    "LATE_FLOOR_MS",
    "LATE_SHARE_OF_INTERVAL",
    "MIN_SAMPLES",
    "at_stop",
    "block_bootstrap_medians",
    "compare_versions",
    "measured_tasks",
    "pacing_stats",
    "percentile",
    "read_records",
    "records_frame",
    "round_p50s",
    "rounds",
    "step_figures",
    "tasks",
    "version_stats",
]
