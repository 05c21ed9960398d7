"""Goodput: which requests met every token SLO, each figure at the SLO's percentile."""

from __future__ import annotations

from capdisc.metrics.frame import records_frame
from capdisc.metrics.goodput import goodput, slo_reasons
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
    # Percentiles over the successful requests only (the failure's figures are not counted).
    assert figures.ttft_ms == 100.0
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
    assert any(r.startswith("TTFT p90 ") and r.endswith("> SLO 500 ms") for r in reasons)
    assert not any("TPOT" in r for r in reasons)
    assert any(r.startswith("goodput 41.0% (41/100) < 80%") for r in reasons)


def test_limits_that_hold_give_no_reason() -> None:
    rows = [record(400, 100, 10) for _ in range(20)]
    slo = Slo(ttft_ms=500, tpot_ms=20, e2e_ms=1000, min_goodput_pct=99)
    assert slo_reasons(goodput(records_frame(rows), slo, 5.0), slo) == []
