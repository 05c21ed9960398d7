"""The limits of capdisc's own load processes: past them, a step measured capdisc itself.

A leaf of :mod:`capdisc.strategies`: the client-bound judgement
(:mod:`~capdisc.strategies.client`) and the calibration that measures the ceiling
(:mod:`~capdisc.strategies.calibrate`) both read them.
"""

from __future__ import annotations

__all__ = ["MAX_CPU", "MAX_LAG_P95_MS", "MIN_SECONDS", "PLAN_SHARE"]

# A gevent process above 90% of a core has no slack left: ready sockets wait for each
# other, timings stretch and pacing slips, the very signs read as a saturated server.
MAX_CPU = 0.9
# Every timestamp a process takes can be that late; 50 ms is far above a healthy
# client's lag (about 1 ms) and equals the late-start threshold at 1 s pacing.
MAX_LAG_P95_MS = 50.0
# A window this short (in sampled seconds) is not judged.
MIN_SECONDS = 2
# Each process is planned at most at half its ceiling: room for spawning, bursts, the
# master's share of the work, and streams whose chunks come one per read.
PLAN_SHARE = 0.5
