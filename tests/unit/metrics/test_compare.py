"""The comparison statistics: pairs, intervals, failures, verdicts, the load check and the gate.

The synthetic runs look like ``compare stream`` data: blocks of requests in A B B A
order (or A B A B, or all of A then all of B), lognormal durations around 500 ms,
optionally with a linear drift of the server over time, random block-to-block
effects, or failures on one side.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from capdisc.metrics.compare import block_quantile, compare_versions, load_reasons
from capdisc.metrics.decision import Checks, decide, gate
from capdisc.metrics.frame import records_frame
from capdisc.records import RequestRecord
from capdisc.schema import Pacing, VersionDiff
from capdisc.verdicts import MetricDiff

T0 = 1_700_000_000.0


def runs(
    rng: np.random.Generator,
    *,
    pairs: int = 4,
    per_block: int = 200,
    block_s: float = 60.0,
    order: str = "abba",
    factor: float = 1.0,
    sigma: float = 0.1,
    drift_per_min: float = 0.0,
    block_sd: float = 0.0,
    b_fail: float = 0.0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A's and B's task rows; ``step`` is the block number, as the strategy writes it.

    B's successes take ``factor`` times as long; a share ``b_fail`` of B's requests
    time out (30 s, status 0). The server slows by ``drift_per_min`` per minute, and
    each block gets its own random effect (log SD ``block_sd``).
    """
    if order == "abba":
        sequence = [(s, k) for k in range(1, pairs + 1) for s in ("ab" if k % 2 else "ba")]
    elif order == "abab":
        sequence = [(s, k) for k in range(1, pairs + 1) for s in "ab"]
    else:
        sequence = [(s, k) for s in "ab" for k in range(1, pairs + 1)]
    rows: dict[str, list[RequestRecord]] = {"a": [], "b": []}
    for position, (side, block) in enumerate(sequence):
        starts = np.sort(position * block_s + rng.uniform(0, block_s, per_block))
        effect = rng.normal(0, block_sd)
        drift = 1.0 + drift_per_min * starts / 60.0
        ms = 500.0 * np.exp(rng.normal(0, sigma, per_block) + effect) * drift
        failed = np.zeros(per_block, dtype=bool)
        if side == "b":
            ms *= factor
            failed = rng.uniform(size=per_block) < b_fail
        for i, (start, d) in enumerate(zip(starts, ms, strict=True)):
            d = 30_000.0 if failed[i] else d
            rows[side].append(
                RequestRecord(
                    T0 + start,
                    T0 + start,
                    T0 + start + d / 1000,
                    i,
                    block,
                    side,
                    "stream",
                    0 if failed[i] else 200,
                    0 if failed[i] else 1,
                    d,
                    ttft_ms="" if failed[i] else d * 0.2,
                    tpot_ms="" if failed[i] else d * 0.02,
                    chunks=0 if failed[i] else 40,
                    error="timeout" if failed[i] else "",
                )
            )
    return records_frame(rows["a"]), records_frame(rows["b"])


def verdict(diff: VersionDiff) -> str:
    return decide(diff)[0]


def gated(a: pd.DataFrame, b: pd.DataFrame, limit: float) -> VersionDiff:
    """The comparison with every default metric gated at ``limit`` (failures at 0.5 pt)."""
    limits = {m: limit for m in ("ttft_p50", "tpot_p50", "e2e_p50", "e2e_p95")}
    return compare_versions(a, b, gate_limits={**limits, "failures": 0.5})


def test_block_quantile_ranks_failures_slowest() -> None:
    """Failures sit above every success: the median moves up, and past half it is infinite."""
    values = np.array([1.0, 2.0, 3.0, 4.0])
    assert block_quantile(values, 0, 0.5) == pytest.approx(np.median(values))
    assert block_quantile(values, 2, 0.5) == pytest.approx(3.5)  # of 1 2 3 4 inf inf
    assert block_quantile(values, 4, 0.5) == math.inf
    assert block_quantile(values, 1, 0.95) == math.inf
    assert math.isnan(block_quantile(np.array([]), 0, 0.5))


def test_b_slower_by_10_percent_is_found_with_its_interval() -> None:
    """A true +10%: b_slower, the interval around +10%, and the other figures follow."""
    a, b = runs(np.random.default_rng(1), factor=1.1)
    diff = compare_versions(a, b)
    assert verdict(diff) == "b_slower"
    assert diff.p50_ci95_pct is not None and diff.p50_pct is not None
    lo, hi = diff.p50_ci95_pct
    assert 0 < lo <= 10 <= hi and lo <= diff.p50_pct <= hi
    assert diff.design == "paired" and diff.pairs == 4 and diff.blocks_a == diff.blocks_b == 4
    assert diff.mde_pct is not None and 0 < diff.mde_pct < 10
    for ci in (diff.p95_ci95_pct, diff.ttft_p50_ci95_pct, diff.tpot_p50_ci95_pct):
        assert ci is not None and ci[0] > 0
    assert diff.p_value is not None and diff.p_value < 1e-6
    assert diff.failure_rate_pts == 0


def test_b_faster_and_equivalent() -> None:
    """A true -20% is b_faster; a true 0 with a precise interval is equivalent (±2%)."""
    a, b = runs(np.random.default_rng(2), factor=0.8)
    diff = compare_versions(a, b)
    assert verdict(diff) == "b_faster"
    a, b = runs(np.random.default_rng(3), per_block=2000)
    diff = compare_versions(a, b, margin_pct=2.0)
    assert diff.p50_ci95_pct is not None
    assert diff.p50_ci95_pct[0] >= -2 and diff.p50_ci95_pct[1] <= 2
    assert decide(diff) == ("equivalent", "every judged metric lies within its margin", None)


def test_drift_cancels_in_abba_pairs() -> None:
    """A/A on a server slowing +5% a minute, at the default scale.

    4-minute blocks of 1200 requests. In A B A B order B always runs later: analysed
    that way (even by the pairs), it is a false b_slower; the block bootstrap this
    replaced called 20 of 20 such seeds different. A B B A pairs cancel the drift:
    over 30 seeds, no A/A comparison is called different.
    """

    def drifting(seed: int, order: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        rng = np.random.default_rng(seed)
        return runs(rng, per_block=1200, block_s=240.0, sigma=0.3, drift_per_min=0.05, order=order)

    assert verdict(compare_versions(*drifting(4, "abab"))) == "b_slower"
    wrong = 0
    for seed in range(30):
        diff = compare_versions(*drifting(100 + seed, "abba"))
        wrong += verdict(diff) in ("b_faster", "b_slower")
    assert wrong <= 1


def test_block_effects_widen_the_interval_instead_of_fooling_it() -> None:
    """1% random block effects: A/A false verdicts stay at the nominal 5% or below."""
    wrong = 0
    for seed in range(60):
        a, b = runs(np.random.default_rng(200 + seed), block_sd=0.01, per_block=400)
        wrong += verdict(compare_versions(a, b)) in ("b_faster", "b_slower")
    assert wrong <= 6


def test_failures_are_never_faster() -> None:
    """B times out 30% of its requests but is 5% faster on the rest.

    Counting only successes called that b_faster. Failures rank slowest and their
    rate has its own interval: B is the slower one, and the gate fails it.
    """
    a, b = runs(np.random.default_rng(5), factor=0.95, b_fail=0.3)
    diff = compare_versions(a, b)
    assert diff.failure_rate_pts is not None and diff.failure_rate_pts > 20
    assert diff.failure_rate_ci95_pts is not None and diff.failure_rate_ci95_pts[0] > 0
    assert diff.p50_pct is not None and diff.p50_pct > 0  # failures rank slowest
    chosen, reason, decided_by = decide(diff)
    assert chosen == "b_slower" and "fails more" in reason and decided_by == "failures"
    assert gate(gated(a, b, 5.0))[:2] == ("regression", 1)


def test_failing_more_beyond_the_margin_is_slower_however_fast() -> None:
    """B fails 3% of its requests (A none) but is 20% faster: failures decide first
    (beyond the 0.5 pt margin), so B is slower, and the gate fails it."""
    a, b = runs(np.random.default_rng(12), factor=0.8, b_fail=0.03, per_block=1000)
    diff = compare_versions(a, b)
    assert diff.p50_ci95_pct is not None and diff.p50_ci95_pct[1] < 0
    chosen, reason, _ = decide(diff)
    assert chosen == "b_slower" and reason.startswith("B fails more often: failures +")
    assert gate(gated(a, b, 5.0))[:2] == ("regression", 1)


def test_a_few_failures_are_no_verdict_by_themselves() -> None:
    """One failure in 800 requests is noise: the failure interval spans 0."""
    a, b = runs(np.random.default_rng(6), factor=0.8)
    b.loc[b.index[3], ["ok", "status"]] = [0, 0]
    diff = compare_versions(a, b)
    assert diff.failure_rate_ci95_pts is not None
    assert diff.failure_rate_ci95_pts[0] < 0 < diff.failure_rate_ci95_pts[1]
    assert verdict(diff) == "b_faster"


def test_fail_on_regression_uses_the_interval() -> None:
    """A median +5.2%, CI +0.5% .. +9.9%, limit 5%: inconclusive (exit 5).

    The point estimate above the limit used to exit 1.
    """

    def diff(lo: float, hi: float) -> VersionDiff:
        e2e = MetricDiff(
            metric="e2e_p50",
            change=(lo + hi) / 2,
            ci95=(lo, hi),
            margin=2.0,
            verdict="inconclusive",
            judged=True,
            gate_limit=5.0,
        )
        failures = MetricDiff(
            metric="failures",
            unit="pt",
            change=0.0,
            ci95=(-0.1, 0.1),
            margin=0.5,
            verdict="equivalent",
            judged=True,
            gate_limit=0.5,
        )
        return VersionDiff(
            p50_pct=None,
            p50_ci95_pct=None,
            p95_pct=None,
            p_value=None,
            metrics={"e2e_p50": e2e, "failures": failures},
        )

    assert gate(diff(0.5, 9.9))[:2] == ("inconclusive", 5)
    assert gate(diff(5.5, 9.9))[:2] == ("regression", 1)
    assert gate(diff(-3.0, 5.0))[:2] == ("pass", 0)
    late = Checks(unequal_load=["A started 40% of its tasks late (> 10%)"])
    assert gate(diff(-3.0, 1.0), late)[:2] == ("inconclusive", 5)
    no_interval = diff(0, 0)
    no_interval.metrics["e2e_p50"] = no_interval.metrics["e2e_p50"].model_copy(
        update={"ci95": None}
    )
    assert gate(no_interval)[:2] == ("inconclusive", 5)


def test_unequal_load_gives_no_verdict() -> None:
    """a side that did not get the offered load: inconclusive, and why."""
    on_time = Pacing(tasks=100, late=2, late_share=0.02)
    late = Pacing(tasks=100, late=60, late_share=0.6)
    assert load_reasons("A", 8.0, 7.9, on_time) == []
    reasons = load_reasons("A", 8.0, 4.0, late)
    assert reasons == [
        "A achieved 4.0 of 8.0 req/s offered (50% < 90%)",
        "A started 60% of its tasks late (> 10%)",
    ]
    a, b = runs(np.random.default_rng(7), factor=0.8)
    chosen, reason, _ = decide(compare_versions(a, b), Checks(unequal_load=reasons))
    assert chosen == "inconclusive" and reason.startswith("unequal load: A achieved 4.0")


def test_sequential_runs_compare_blocks_as_groups() -> None:
    """Without pairs (all of A, then all of B) Welch's interval over blocks is used."""
    a, b = runs(np.random.default_rng(8), factor=1.2, order="sequential")
    diff = compare_versions(a, b, design="unpaired")
    assert diff.design == "unpaired" and diff.pairs == 0 and diff.blocks_a == 4
    assert verdict(diff) == "b_slower"
    assert diff.p50_ci95_pct is not None and diff.p50_ci95_pct[0] > 0


def test_too_little_is_never_a_verdict() -> None:
    """No rows, one pair only, or blocks too small: no interval, inconclusive."""
    empty = records_frame([])
    diff = compare_versions(empty, empty)
    assert (diff.p50_pct, diff.p50_ci95_pct, diff.p_value, diff.failure_rate_pts) == (None,) * 4
    assert verdict(diff) == "inconclusive"

    a, b = runs(np.random.default_rng(9), pairs=1, factor=3.0)
    diff = compare_versions(a, b)
    assert diff.p50_pct == pytest.approx(200.0, rel=0.1)
    assert diff.p50_ci95_pct is None and diff.mde_pct is None
    assert decide(diff)[0] == "inconclusive"
    assert gate(gated(a, b, 5.0))[:2] == ("inconclusive", 5)

    a, b = runs(np.random.default_rng(10), per_block=4, factor=3.0)
    assert compare_versions(a, b).pairs == 0


def test_a_version_failing_most_requests_has_no_median() -> None:
    """Every block of B more than half failed: no finite median, and B is the slower one."""
    a, b = runs(np.random.default_rng(11), b_fail=0.7)
    diff = compare_versions(a, b)
    assert diff.p50_pct is None
    assert verdict(diff) == "b_slower"
