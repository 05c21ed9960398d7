"""Goodput: the share of requests that met every token-level limit (``--slo-*``).

A capacity for a chat front end is not "p95 of the whole request": it is the load at
which time to first token and time per output token still meet their limits for
enough of the requests. A request is *good* when it succeeded and met every limit
that is set; a failed request, or a success without the figure a limit needs (a
stream with no first token), is not good. The figures at the SLO's percentile are
over the successful requests, as every latency capdisc reports.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from capdisc.metrics.figures import percentile
from capdisc.metrics.frame import tasks
from capdisc.schema import Goodput, Slo

__all__ = ["goodput", "slo_reasons"]

_LIMITS = (("ttft_ms", "ttft_ms"), ("tpot_ms", "tpot_ms"), ("e2e_ms", "duration_ms"))


def goodput(df: pd.DataFrame, slo: Slo, measured_s: float | None) -> Goodput:
    """Good requests of ``df``'s tasks against ``slo``, and each limited figure at its percentile."""
    task_rows = tasks(df)
    ok = (task_rows["ok"] == 1).to_numpy()
    good = ok.copy()
    at_percentile: dict[str, float | None] = {}
    for limit_name, column in _LIMITS:
        limit = getattr(slo, limit_name)
        values = task_rows[column].astype("float64").to_numpy(dtype="float64", na_value=np.nan)
        at_percentile[limit_name] = percentile(values[ok], slo.percentile)
        if limit is not None:
            # NaN (figure missing) compares False: not good.
            good &= values <= limit
    requests = len(task_rows)
    count = int(good.sum())
    return Goodput(
        requests=requests,
        good=count,
        pct=100.0 * count / requests if requests else None,
        rps=count / measured_s if measured_s else None,
        **at_percentile,
    )


def slo_reasons(figures: Goodput, slo: Slo) -> list[str]:
    """Why ``figures`` break ``slo``, each naming the figure and its limit; empty when they hold."""
    reasons: list[str] = []
    p = f"p{slo.percentile:g}"
    labels = {"ttft_ms": "TTFT", "tpot_ms": "TPOT", "e2e_ms": "end-to-end"}
    for limit_name, _column in _LIMITS:
        limit = getattr(slo, limit_name)
        value = getattr(figures, limit_name)
        if limit is None:
            continue
        if value is None:
            if figures.requests:
                reasons.append(f"{labels[limit_name]} not measured (no successful request has it)")
            continue
        if value > limit:
            reasons.append(f"{labels[limit_name]} {p} {value:.0f} ms > SLO {limit:g} ms")
    if (
        slo.min_goodput_pct is not None
        and figures.pct is not None
        and figures.pct < slo.min_goodput_pct
    ):
        reasons.append(
            f"goodput {figures.pct:.1f}% ({figures.good}/{figures.requests}) "
            f"< {slo.min_goodput_pct:g}%"
        )
    return reasons
