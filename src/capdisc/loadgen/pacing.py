"""Constant pacing: when a paced user's next task is due (no Locust: importable freely)."""

from __future__ import annotations

__all__ = ["next_start"]


def next_start(scheduled: float, started: float, interval_s: float) -> float:
    """When a user's next task is due: its schedule plus one interval.

    Anchored to the schedule, not to the actual start, so the client's wake-up delay
    (a busy event loop, a short interval) never accumulates into fewer tasks than the
    pacing offers, which the throughput test would blame on the server: a task late by
    less than an interval is caught up by the next one (due at its own grid time, at once
    if that has passed). A user a whole interval behind (its task overran by that much:
    the server is slower than the pacing) starts afresh from its actual start, so a slot
    it missed is not made up by a burst.
    """
    due = scheduled + interval_s
    return due if started - scheduled < interval_s else started + interval_s
