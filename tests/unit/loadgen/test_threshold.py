"""The failure threshold: over the run for a discovery, per version and recent for a comparison.

A default comparison sends about 11,600 requests (200 users every 20 s, 8 blocks of
2 min plus their ramp-ups), in A B B A blocks. Counting five failures over the whole
run stopped most comparisons of a healthy server with a rare error rate; counting a
version's failures among its latest 100 requests still stops a broken version within
its first failures.
"""

from __future__ import annotations

import random

from capdisc.loadgen.threshold import FailureThreshold

PER_BLOCK = 1450  # a default block: 10 req/s over a 20 s ramp-up, a 120 s window and the wait
ORDER = "abbaabba"


def comparison_stops(threshold: FailureThreshold, rates: dict[str, float], seed: int) -> int | None:
    """Requests sent before ``threshold`` stopped a simulated comparison (None: never)."""
    rng = random.Random(seed)
    sent = 0
    for side in ORDER:
        for _ in range(PER_BLOCK):
            sent += 1
            if threshold.note(side, rng.random() >= rates[side]) is not None:
                return sent
    return None


def stop_share(make: type[FailureThreshold] | None, rate: float, runs: int = 150) -> float:
    stops = 0
    for seed in range(runs):
        threshold = FailureThreshold.for_comparison(5) if make is None else FailureThreshold(5)
        stops += comparison_stops(threshold, {"a": rate, "b": rate}, seed) is not None
    return stops / runs


def test_counting_over_the_run_cut_most_comparisons_of_a_healthy_server() -> None:
    """Five failures over the run: about 69% of comparisons stop at a 0.05% error rate."""
    assert stop_share(FailureThreshold, 0.0005) > 0.5


def test_a_rare_error_rate_never_stops_a_comparison() -> None:
    """A version's latest 100 requests: 0.2% failures stop almost none (about 0.1%)."""
    assert stop_share(None, 0.002) <= 0.02
    assert stop_share(None, 0.0005) == 0.0


def test_a_broken_version_still_stops_within_seconds() -> None:
    """B failing every request stops at its fifth; B failing 10% within its first ~100."""
    broken = FailureThreshold.for_comparison(5)
    at = comparison_stops(broken, {"a": 0.0, "b": 1.0}, seed=1)
    assert at == PER_BLOCK + 5 and broken.version == "b"
    for seed in range(20):
        tenth = FailureThreshold.for_comparison(5)
        at = comparison_stops(tenth, {"a": 0.0, "b": 0.10}, seed)
        assert at is not None and at <= PER_BLOCK + 150 and tenth.version == "b"


def test_the_detail_names_the_version_and_the_window() -> None:
    threshold = FailureThreshold.for_comparison(2)
    assert threshold.note("a", False) is None
    assert threshold.note("b", False) is None  # each version counts its own
    assert threshold.note("a", False) == (
        "A failed 2 of its latest 2 requests (failure threshold 2 in 40)"
    )
    assert threshold.note("a", False) is None  # said once
    assert threshold.failures == 4


def test_old_failures_leave_the_window() -> None:
    threshold = FailureThreshold(3, window=10)
    for ok in [False, False] + [True] * 9:
        assert threshold.note("b", ok) is None
    assert threshold.note("b", False) is None  # the first two have left: one in ten
    assert threshold.note("b", False) is None
    assert threshold.note("b", False) is not None


def test_zero_never_stops_and_a_discovery_counts_the_run() -> None:
    never = FailureThreshold.for_comparison(0)
    assert all(never.note("b", False) is None for _ in range(1000))
    run = FailureThreshold(5)
    results = [run.note("", ok) for ok in [False] * 4 + [True] * 500 + [False]]
    assert results[-1] == "5 failed requests reached the threshold of 5"
    assert all(r is None for r in results[:-1]) and run.version is None


def test_the_progress_line_shows_the_count_that_stops_a_comparison() -> None:
    threshold = FailureThreshold.for_comparison(5)
    threshold.note("b", False)
    threshold.note("b", True)
    assert threshold.note_for("b") == "1/5 in B's latest 100"
    assert threshold.note_for("a") == "0/5 in A's latest 100"
    assert FailureThreshold(5).note_for("b") == ""
