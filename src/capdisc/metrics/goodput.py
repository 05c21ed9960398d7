"""Goodput and token SLOs judged with confidence (``--slo-*``).

A capacity for a chat front end is not "p95 of the whole request": it is the load at
which time to first token and time per output token still meet their limits for
enough of the requests. A request is *good* when it succeeded and met every limit
that is set; a failed request, or a success without the figure a limit needs (a
stream with no first token), is not good.

Each limit is judged at its percentile over **every request that started in the
window**, failures (and requests without the figure, and those still in flight when
judged) ranked slower than every success, as ``compare stream`` ranks them. The
percentile is judged with a distribution-free confidence bound from order statistics:
among n requests, the k-th smallest lies above the q-quantile with probability
P(Binomial(n, q) < k), whatever the distribution. The limit **passes** when the 95%
upper bound is within it, **fails** when the 95% lower bound is over it, and is
otherwise **inconclusive** (the step is extended). A p95 needs at least 59 requests
for an upper bound (0.95^59 < 5%): :func:`min_requests`.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pandas as pd
from scipy.stats import binom

from capdisc.metrics.frame import tasks
from capdisc.schema import Goodput, Slo

__all__ = [
    "CONFIDENCE",
    "goodput",
    "min_requests",
    "order_bounds",
    "percentile_bounds",
    "slo_reasons",
    "slo_undecided",
]

# One-sided confidence of each bound: a level whose true percentile is at the limit
# passes at most 5% of the time.
CONFIDENCE = 0.95

_LIMITS = (("ttft_ms", "ttft_ms"), ("tpot_ms", "tpot_ms"), ("e2e_ms", "duration_ms"))
_LABELS = {"ttft_ms": "TTFT", "tpot_ms": "TPOT", "e2e_ms": "end-to-end"}

Bounds = tuple[float | None, float | None]


def min_requests(percentile: float, confidence: float = CONFIDENCE) -> int:
    """The fewest requests whose largest bounds the ``percentile`` (0..100) from above."""
    q = percentile / 100.0
    return max(1, math.ceil(math.log(1.0 - confidence) / math.log(q)))


def order_bounds(n: int, q: float, confidence: float = CONFIDENCE) -> tuple[int | None, int | None]:
    """1-based ranks (lower, upper) of the order statistics that bound the ``q`` quantile.

    The upper rank u is the smallest with P(X(u) >= quantile) = P(Binomial(n, q) <= u - 1)
    >= ``confidence``; the lower rank l the largest with P(X(l) <= quantile) =
    P(Binomial(n, q) >= l) >= ``confidence``. None where n is too small for a bound.
    """
    if n <= 0:
        return None, None
    alpha = 1.0 - confidence
    upper = int(binom.ppf(confidence, n, q)) + 1
    k = int(binom.ppf(alpha, n, q))
    while k >= 0 and binom.cdf(k, n, q) > alpha:
        k -= 1
    lower = k + 1
    return (lower if lower >= 1 else None), (upper if upper <= n else None)


def percentile_bounds(
    ranked: np.ndarray, percentile: float, confidence: float = CONFIDENCE
) -> Bounds:
    """The confidence bounds of ``percentile`` (0..100) of ``ranked`` (inf = slowest)."""
    values = np.sort(np.asarray(ranked, dtype="float64"))
    lower, upper = order_bounds(len(values), percentile / 100.0, confidence)

    def at(rank: int | None) -> float | None:
        return None if rank is None else float(values[rank - 1])

    high = at(upper)
    # A lower bound among the failures is infinite (over any limit; JSON writes null);
    # an upper bound there is unbounded (None).
    return at(lower), (high if high is not None and math.isfinite(high) else None)


def _point(ranked: np.ndarray, percentile: float) -> float | None:
    if ranked.size == 0:
        return None
    with np.errstate(invalid="ignore"):
        value = float(np.percentile(ranked, percentile))
    return value if math.isfinite(value) else None


def goodput(df: pd.DataFrame, slo: Slo, measured_s: float | None, censored: int = 0) -> Goodput:
    """Good requests of ``df``'s tasks against ``slo``, each limited figure at its percentile
    with its confidence bounds, and the SLO verdict.

    ``censored`` requests started in the window are still in flight past the await bound
    (no row yet): they count in the end-to-end percentile, ranked slowest (their age is
    past the request timeout), and in no other (their first token is unknown).
    """
    task_rows = tasks(df)
    ok = (task_rows["ok"] == 1).to_numpy()
    good = ok.copy()
    figures: dict[str, float | None] = {}
    bounds: dict[str, Bounds | None] = {}
    slowest = np.full(censored, np.inf)
    for limit_name, column in _LIMITS:
        limit = getattr(slo, limit_name)
        values = task_rows[column].astype("float64").to_numpy(dtype="float64", na_value=np.nan)
        # Failures, and successes without the figure, rank slower than every success.
        ranked = np.where(ok & ~np.isnan(values), values, np.inf)
        if limit_name == "e2e_ms":
            ranked = np.concatenate([ranked, slowest])
        figures[limit_name] = _point(ranked, slo.percentile)
        bounds[f"{limit_name[:-3]}_bounds_ms"] = (
            percentile_bounds(ranked, slo.percentile) if limit is not None else None
        )
        if limit is not None:
            # NaN (figure missing) compares False: not good.
            good &= values <= limit
    estimated = task_rows["tokens_estimated"].astype("float64").to_numpy(na_value=0.0) == 1
    requests = len(task_rows)
    count = int(good.sum())
    result = Goodput(
        requests=requests,
        good=count,
        pct=100.0 * count / requests if requests else None,
        rps=count / measured_s if measured_s else None,
        n=requests + (censored if slo.e2e_ms is not None else 0),
        tpot_estimated=slo.tpot_ms is not None and bool((estimated & ok).any()),
        **figures,
        **bounds,
    )
    verdict: Literal["pass", "fail", "inconclusive"] = (
        "fail"
        if slo_reasons(result, slo)
        else "inconclusive"
        if slo_undecided(result, slo)
        else "pass"
    )
    return result.model_copy(update={"verdict": verdict})


def _bounds(figures: Goodput, limit_name: str) -> Bounds | None:
    found: Bounds | None = getattr(figures, f"{limit_name[:-3]}_bounds_ms")
    return found


def _value(value: float | None) -> str:
    return "among the failures" if value is None else f"{value:.0f} ms"


def _bound(value: float) -> str:
    return f"{value:.0f} ms" if math.isfinite(value) else "among the failures"


def _estimate_note(figures: Goodput, limit_name: str) -> str:
    if limit_name == "tpot_ms" and figures.tpot_estimated:
        return "; ~ output tokens counted from events: the server sent no usage"
    return ""


def slo_reasons(figures: Goodput, slo: Slo) -> list[str]:
    """Why ``figures`` break ``slo`` (a lower bound over a limit, goodput short), each naming
    the figure, its sample size and its limit; empty when none is broken."""
    reasons: list[str] = []
    p = f"p{slo.percentile:g}"
    for limit_name, _column in _LIMITS:
        limit = getattr(slo, limit_name)
        if limit is None:
            continue
        label = _LABELS[limit_name]
        if not figures.requests:
            continue
        found = _bounds(figures, limit_name)
        if found is None:
            # A summary from before the bounds: the point estimate decides.
            value = getattr(figures, limit_name)
            if value is not None and value > limit:
                reasons.append(f"{label} {p} {value:.0f} ms > SLO {limit:g} ms")
            continue
        low, _high = found
        if low is not None and low > limit:
            value = getattr(figures, limit_name)
            reasons.append(
                f"{label} {p} {_value(value)} > SLO {limit:g} ms "
                f"(n={figures.n}, 95% lower bound {_bound(low)}{_estimate_note(figures, limit_name)})"
            )
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


def slo_undecided(figures: Goodput, slo: Slo) -> list[str]:
    """The limits ``figures`` neither meet nor break with confidence (their bounds span them)."""
    undecided: list[str] = []
    p = f"p{slo.percentile:g}"
    for limit_name, _column in _LIMITS:
        limit = getattr(slo, limit_name)
        found = _bounds(figures, limit_name)
        if limit is None or found is None or not figures.n:
            continue
        low, high = found
        if low is not None and low > limit:
            continue  # broken: a reason of slo_reasons
        if high is not None and high <= limit:
            continue  # met
        label = _LABELS[limit_name]
        value = getattr(figures, limit_name)
        if high is None and value is not None and figures.n < min_requests(slo.percentile):
            why = f"{figures.n} requests cannot bound a {p} (needs {min_requests(slo.percentile)})"
        else:
            upper = "unbounded" if high is None else f"{high:.0f} ms"
            lower = "-" if low is None else f"{low:.0f} ms"
            why = f"95% bounds {lower} to {upper}"
        undecided.append(
            f"{label} {p} {_value(value)} vs SLO {limit:g} ms undecided "
            f"(n={figures.n}, {why}{_estimate_note(figures, limit_name)})"
        )
    return undecided
