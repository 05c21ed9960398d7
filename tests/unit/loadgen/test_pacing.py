"""Pacing anchored to the schedule: a busy client's wake-up delay never becomes a deficit.

Case 7 of issue 24: at 0.2 s pacing and 60 users, a 6 ms mean wake-up delay restarted
each user's pacing from its late start, so the users offered 3% fewer tasks than the
pacing promises and the throughput test failed the step, blaming the server.
"""

from __future__ import annotations

import random

from capdisc.loadgen.pacing import next_start
from capdisc.metrics.trend import throughput_deficit

INTERVAL = 0.2
USERS = 60
WINDOW = 20.0


def started_in_window(rule, wake_ms: float, task_s: float = 0.05) -> int:  # type: ignore[no-untyped-def]
    """Tasks 60 users start in a 20 s window when each wake-up is late by an exponential
    delay of mean ``wake_ms`` (the client's event loop), the server answering in ``task_s``."""
    rng = random.Random(3)
    count = 0
    for user in range(USERS):
        due = user / USERS * INTERVAL - 2.0  # users in their cycle before the window
        while True:
            started = due + rng.expovariate(1000.0 / wake_ms)
            if started >= WINDOW:
                break
            count += started >= 0.0
            due = max(rule(due, started, INTERVAL), started + task_s)
    return count


def old_rule(scheduled: float, started: float, interval: float) -> float:
    return started + interval


def test_wake_up_delay_does_not_accumulate_into_a_throughput_deficit() -> None:
    offered = dict(users=USERS, window_s=WINDOW, interval_s=INTERVAL)
    anchored = throughput_deficit(started_in_window(next_start, 6.0), **offered)
    assert anchored.verdict == "pass", anchored.reason
    before = throughput_deficit(started_in_window(old_rule, 6.0), **offered)
    assert before.verdict == "fail", before.reason  # what the old pacing did


def test_a_task_late_by_less_than_an_interval_is_caught_up_and_a_missed_slot_is_not() -> None:
    assert next_start(10.0, 10.05, 2.0) == 12.0  # on its grid
    assert next_start(10.0, 11.5, 2.0) == 12.0  # an overrun is caught up at the grid time
    assert next_start(10.0, 12.5, 2.0) == 14.5  # a whole interval behind: afresh, no burst
