"""The comparison statistics: verdicts, error rates and the block bootstrap's honesty.

The synthetic runs look like ``compare stream`` data: 40 users paced every 20 s for
400 s (800 tasks a side), lognormal durations around 500 ms, multiplied by a slowly
drifting load factor (AR(1) on 5 s segments) so that requests close in time are
correlated, as they are on a real server.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from capdisc.metrics.compare import MIN_SAMPLES, block_bootstrap_medians, compare_versions
from capdisc.metrics.frame import records_frame
from capdisc.schema import RequestRecord

INTERVAL_S = 20.0
BLOCK_S = INTERVAL_S  # what the stream strategy passes: one pacing cycle per block


def synthetic_run(
    rng: np.random.Generator,
    *,
    factor: float = 1.0,
    users: int = 40,
    duration_s: float = 400.0,
    drift_sd: float = 0.05,
    rho: float = 0.5,
    sigma: float = 0.3,
    median_ms: float = 500.0,
    with_ttft: bool = True,
    t0: float = 1_700_000_000.0,
) -> pd.DataFrame:
    """One version's task rows; ``factor`` scales every duration (1.2 = 20% slower)."""
    cycles = int(duration_s / INTERVAL_S)
    offsets = rng.uniform(0, INTERVAL_S, users)
    scheduled = np.sort((offsets[None, :] + INTERVAL_S * np.arange(cycles)[:, None]).ravel())
    start = scheduled + rng.exponential(0.002, scheduled.size)
    segments = int(duration_s / 5.0) + 1
    drift = np.empty(segments)
    drift[0] = rng.normal(0, drift_sd / np.sqrt(1 - rho**2))
    for i in range(1, segments):
        drift[i] = rho * drift[i - 1] + rng.normal(0, drift_sd)
    log_ms = np.log(median_ms) + drift[(start / 5.0).astype(int)] + rng.normal(0, sigma, start.size)
    duration = np.exp(log_ms) * factor
    ttft = duration * 0.2 if with_ttft else [None] * start.size
    user = np.arange(start.size) % users
    rows = [
        RequestRecord(
            t0 + s,
            t0 + st,
            t0 + st + d / 1000,
            u,
            0,
            "v",
            "stream",
            200,
            1,
            d,
            ttft_ms="" if f is None else f,
            chunks=40,
        )
        for s, st, d, f, u in zip(scheduled, start, duration, ttft, user, strict=True)
    ]
    return records_frame(rows)


def test_b_slower_by_20_percent() -> None:
    """B 20% slower: verdict b_slower, the CI above 0 and around the true +20%."""
    rng = np.random.default_rng(1)
    a, b = synthetic_run(rng), synthetic_run(rng, factor=1.2)
    diff, verdict = compare_versions(a, b, block_s=BLOCK_S)
    assert verdict == "b_slower"
    assert diff.p50_ci95_pct is not None and diff.p_value is not None
    lo, hi = diff.p50_ci95_pct
    assert 0 < lo <= 20 <= hi
    assert diff.p50_pct is not None and lo <= diff.p50_pct <= hi
    assert diff.p_value < 1e-6
    assert diff.p95_pct is not None and diff.p95_pct > 0
    assert diff.ttft_p50_pct == pytest.approx(diff.p50_pct, abs=1e-9)


def test_b_faster_by_20_percent() -> None:
    """B 20% faster: verdict b_faster with the CI below 0."""
    rng = np.random.default_rng(2)
    a, b = synthetic_run(rng), synthetic_run(rng, factor=0.8)
    diff, verdict = compare_versions(a, b, block_s=BLOCK_S)
    assert verdict == "b_faster"
    assert diff.p50_ci95_pct is not None
    assert diff.p50_ci95_pct[1] < 0
    assert diff.p50_ci95_pct[0] <= -20 <= diff.p50_ci95_pct[1]


def test_a_a_false_positives_are_rare() -> None:
    """Identical generators (A/A) over 50 seeds: at most 10% wrongly called different."""
    wrong = 0
    for seed in range(50):
        rng = np.random.default_rng(1000 + seed)
        _, verdict = compare_versions(
            synthetic_run(rng), synthetic_run(rng), block_s=BLOCK_S, seed=seed
        )
        wrong += verdict != "no_difference"
    assert wrong / 50 <= 0.10


def test_a_10_percent_slowdown_is_detected_and_covered() -> None:
    """A 10% shift with 800 samples a side: detected in >= 90% of 30 seeds, CI covers it."""
    detected = covered = 0
    for seed in range(30):
        rng = np.random.default_rng(2000 + seed)
        diff, verdict = compare_versions(
            synthetic_run(rng), synthetic_run(rng, factor=1.1), block_s=BLOCK_S, seed=seed
        )
        detected += verdict == "b_slower"
        assert diff.p50_ci95_pct is not None
        covered += diff.p50_ci95_pct[0] <= 10.0 <= diff.p50_ci95_pct[1]
    assert detected / 30 >= 0.90
    # Nominal 95%; a percentile bootstrap over ~20 blocks runs a little short of it.
    assert covered / 30 >= 0.80


def test_blocks_widen_the_interval_when_requests_are_correlated() -> None:
    """With strong drift, resampling single requests (block_s=0) claims false precision."""
    rng = np.random.default_rng(3)
    a = synthetic_run(rng, drift_sd=0.12, rho=0.9)
    b = synthetic_run(rng, drift_sd=0.12, rho=0.9)
    blocked, _ = compare_versions(a, b, block_s=BLOCK_S)
    naive, _ = compare_versions(a, b, block_s=0)
    assert blocked.p50_ci95_pct is not None and naive.p50_ci95_pct is not None
    width_blocked = blocked.p50_ci95_pct[1] - blocked.p50_ci95_pct[0]
    width_naive = naive.p50_ci95_pct[1] - naive.p50_ci95_pct[0]
    assert width_blocked > 1.3 * width_naive


def test_same_seed_same_result() -> None:
    """The bootstrap is deterministic for a seed (and the seed matters)."""
    rng = np.random.default_rng(4)
    a, b = synthetic_run(rng), synthetic_run(rng, factor=1.05)
    first = compare_versions(a, b, block_s=BLOCK_S, seed=7)
    assert compare_versions(a, b, block_s=BLOCK_S, seed=7) == first
    other, _ = compare_versions(a, b, block_s=BLOCK_S, seed=8)
    assert other.p50_ci95_pct != first[0].p50_ci95_pct
    assert other.p50_pct == first[0].p50_pct


def test_bootstrap_medians_match_explicit_resampling() -> None:
    """The vectorised weighted median equals concatenating the drawn blocks."""
    rng = np.random.default_rng(5)
    values = rng.lognormal(6, 0.4, 257)
    blocks = np.sort(rng.integers(0, 9, 257))
    _, blocks = np.unique(blocks, return_inverse=True)
    fast = block_bootstrap_medians(values, blocks, 300, np.random.default_rng(11))
    draws = np.random.default_rng(11).integers(0, blocks.max() + 1, size=(300, blocks.max() + 1))
    slow = [np.median(np.concatenate([values[blocks == j] for j in d])) for d in draws]
    np.testing.assert_allclose(fast, slow)


def test_empty_and_small_inputs_give_no_difference() -> None:
    """Nothing to compare, or too little, is never a verdict."""
    rng = np.random.default_rng(6)
    run = synthetic_run(rng)
    empty = records_frame([])

    diff, verdict = compare_versions(empty, empty, block_s=BLOCK_S)
    assert verdict == "no_difference"
    assert (diff.p50_pct, diff.p50_ci95_pct, diff.p95_pct, diff.p_value) == (None,) * 4

    diff, verdict = compare_versions(run, empty, block_s=BLOCK_S)
    assert verdict == "no_difference" and diff.p50_pct is None

    # A few samples: the point difference is reported, but no CI, p-value or verdict.
    few = run.iloc[: MIN_SAMPLES - 1]
    slow = few.assign(duration_ms=few["duration_ms"] * 3)
    diff, verdict = compare_versions(few, slow, block_s=BLOCK_S)
    assert verdict == "no_difference"
    assert diff.p50_pct == pytest.approx(200.0)
    assert diff.p50_ci95_pct is None and diff.p_value is None

    # All of a run in one time block: no interval, so no verdict either.
    slow_run = run.assign(duration_ms=run["duration_ms"] * 3)
    diff, verdict = compare_versions(run, slow_run, block_s=10_000.0)
    assert verdict == "no_difference"
    assert diff.p50_ci95_pct is None and diff.p_value is not None

    # Failed tasks do not count: a version with no success has nothing to compare.
    failed = run.assign(ok=0)
    diff, verdict = compare_versions(run, failed, block_s=BLOCK_S)
    assert verdict == "no_difference" and diff.p50_pct is None


def test_no_ttft_leaves_its_difference_empty() -> None:
    """Versions without time to first chunk (batch-like) still compare on duration."""
    rng = np.random.default_rng(7)
    a = synthetic_run(rng, with_ttft=False)
    b = synthetic_run(rng, with_ttft=False, factor=1.2)
    diff, verdict = compare_versions(a, b, block_s=BLOCK_S)
    assert verdict == "b_slower"
    assert diff.ttft_p50_pct is None


def test_blocks_restart_at_each_measured_run() -> None:
    """Alternating A/B blocks: each run's time blocks start at its first request, no slivers."""
    import numpy as np

    from capdisc.metrics.compare import _block_ids

    ts = np.array([0.2, 0.9, 1.3, 10.7, 11.1, 11.8])
    runs = np.array([1, 1, 1, 3, 3, 3])
    ids = _block_ids(ts, 1.0, runs)
    # Run 1: [0.2, 0.9] then [1.3]; run 3 starts afresh at 10.7: [10.7, 11.1] then [11.8].
    assert ids.tolist() == [0, 0, 1, 2, 2, 3]
