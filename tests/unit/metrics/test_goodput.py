"""Goodput: which requests met every token SLO, each figure at the SLO's percentile."""

from __future__ import annotations

import numpy as np

from capdisc.metrics.frame import records_frame
from capdisc.metrics.goodput import (
    goodput,
    min_requests,
    order_bounds,
    percentile_bounds,
    slo_reasons,
    slo_undecided,
)
from capdisc.records import RequestRecord
from capdisc.schema import Slo


def record(
    duration_ms: float, ttft_ms: float | None, tpot_ms: float | None, *, ok: int = 1
) -> RequestRecord:
    return RequestRecord(
        ts_scheduled=0.0,
        ts_start=0.0,
        ts_end=duration_ms / 1000,
        user=1,
        step=1,
        version="demo",
        name="stream",
        status=200 if ok else 500,
        ok=ok,
        duration_ms=duration_ms,
        ttft_ms="" if ttft_ms is None else ttft_ms,
        tpot_ms="" if tpot_ms is None else tpot_ms,
        error="" if ok else "HTTP 500",
    )


def test_a_request_is_good_only_when_it_succeeded_and_met_every_limit() -> None:
    rows = [
        record(400, 100, 10),  # good
        record(400, 300, 10),  # TTFT over
        record(400, 100, 30),  # TPOT over
        record(900, 100, 10),  # end to end over
        record(400, 100, 10, ok=0),  # failed
        record(400, None, 10),  # no first token: cannot meet a TTFT limit
    ]
    slo = Slo(ttft_ms=200, tpot_ms=20, e2e_ms=800, percentile=50)
    figures = goodput(records_frame(rows), slo, measured_s=2.0)
    assert (figures.requests, figures.good) == (6, 1)
    assert figures.pct is not None and abs(figures.pct - 100 / 6) < 1e-9
    assert figures.rps == 0.5
    # Percentiles over every request, the failure (and the success without a first token)
    # ranked slower than every success: 6 requests, the median between the 3rd and 4th.
    assert figures.n == 6
    assert figures.ttft_ms == 200.0
    assert figures.e2e_ms == 400.0


def test_unset_limits_do_not_judge() -> None:
    rows = [record(400, 100, 10), record(400, 900, 90)]
    figures = goodput(records_frame(rows), Slo(ttft_ms=200), measured_s=None)
    assert figures.good == 1 and figures.rps is None


def test_reasons_name_the_figure_its_percentile_and_the_limit() -> None:
    rows = [record(400, float(ttft), 10) for ttft in range(100, 1100, 10)]
    slo = Slo(ttft_ms=500, tpot_ms=20, percentile=90, min_goodput_pct=80)
    figures = goodput(records_frame(rows), slo, measured_s=10.0)
    reasons = slo_reasons(figures, slo)
    assert any(
        r.startswith("TTFT p90 ") and "> SLO 500 ms (n=100, 95% lower bound " in r for r in reasons
    )
    assert not any("TPOT" in r for r in reasons)
    assert any(r.startswith("goodput 41.0% (41/100) < 80%") for r in reasons)


def test_limits_that_hold_give_no_reason() -> None:
    rows = [record(400, 100, 10) for _ in range(20)]
    slo = Slo(ttft_ms=500, tpot_ms=20, e2e_ms=1000, min_goodput_pct=99)
    assert slo_reasons(goodput(records_frame(rows), slo, 5.0), slo) == []


def test_the_order_statistic_bounds_hold_the_percentile_with_95_percent_confidence() -> None:
    """Distribution-free: over many samples of a known distribution, the upper bound lies
    below the true p95 at most 5% of the time (and the lower bound above it likewise)."""
    rng = np.random.default_rng(5)
    true_p95 = float(-np.log(0.05))  # exponential(1)
    misses_high = misses_low = 0
    for _ in range(2000):
        low, high = percentile_bounds(rng.exponential(1.0, 120), 95)
        misses_high += high is not None and high < true_p95
        misses_low += low is not None and low > true_p95
    assert misses_high / 2000 <= 0.06 and misses_low / 2000 <= 0.06
    assert misses_high > 0  # the bound is not trivially loose


def test_a_p95_needs_59_requests_for_an_upper_bound() -> None:
    assert min_requests(95) == 59 and min_requests(99) == 299
    assert order_bounds(58, 0.95)[1] is None
    assert order_bounds(59, 0.95)[1] == 59


def rows_at(ttfts: list[float], failed: int = 0) -> list[RequestRecord]:
    return [record(400, t, 10) for t in ttfts] + [record(400, 50, 10, ok=0)] * failed


def test_a_point_estimate_within_the_limit_is_not_a_pass_without_confidence() -> None:
    """Case 1: 16 requests whose p95 is within the limit: not enough to pass (inconclusive),
    where the old rule (p95 over the successes) passed it."""
    slo = Slo(ttft_ms=500)
    figures = goodput(records_frame(rows_at([100.0 + 20 * i for i in range(16)])), slo, 8.0)
    assert figures.ttft_ms is not None and figures.ttft_ms <= 500  # the old rule: a pass
    assert figures.verdict == "inconclusive" and slo_reasons(figures, slo) == []
    assert slo_undecided(figures, slo) == [
        "TTFT p95 385 ms vs SLO 500 ms undecided (n=16, 16 requests cannot bound a p95 (needs 59))"
    ]


def test_one_outlier_does_not_fail_a_level_whose_p95_is_under_the_limit() -> None:
    """Case 1: 100 requests at 300 ms and one at 900 ms: p95 is under 500 ms; it passes."""
    slo = Slo(ttft_ms=500)
    figures = goodput(records_frame(rows_at([300.0] * 99 + [900.0])), slo, 10.0)
    assert figures.verdict == "pass"


def test_failures_rank_slower_than_every_success() -> None:
    """Case 2: 2% of requests failed (timeouts), every success is fast: a p99.5 over the
    successes passes; ranked slowest, the failures fail it."""
    slo = Slo(ttft_ms=500, percentile=99.5)
    figures = goodput(records_frame(rows_at([300.0] * 980, failed=20)), slo, 10.0)
    assert figures.ttft_ms is None  # the percentile falls among the failures
    assert figures.verdict == "fail"
    assert slo_reasons(figures, slo)[0].startswith(
        "TTFT p99.5 among the failures > SLO 500 ms (n=1000, 95% lower bound among the failures"
    )


def test_requests_still_in_flight_count_as_slowest_end_to_end_only() -> None:
    """Past the await bound their end-to-end time is over any limit; their first token
    is unknown, so they are in no TTFT figure."""
    slo = Slo(e2e_ms=1000, ttft_ms=500, percentile=50)
    figures = goodput(records_frame(rows_at([100.0] * 10)), slo, 10.0, censored=12)
    assert figures.n == 22 and figures.e2e_ms is None and figures.verdict != "pass"
    assert figures.ttft_ms == 100.0


def test_a_tpot_limit_on_estimated_tokens_says_so() -> None:
    """Item 5: without usage, output tokens are counted events: the TPOT verdict says so."""
    rows = [record(400, 100, 60)._replace(tokens_estimated=1, output_tokens=20) for _ in range(80)]
    slo = Slo(tpot_ms=25)
    figures = goodput(records_frame(rows), slo, 10.0)
    assert figures.tpot_estimated
    assert "counted from events: the server sent no usage" in slo_reasons(figures, slo)[0]
