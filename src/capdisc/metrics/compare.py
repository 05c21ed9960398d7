"""Is B faster than A? Block pairs, a t-interval of their log ratios per metric, failures counted.

A comparison runs each version in blocks; live versions alternate in pairs, A B then
B A, and so on (``compare stream``). Every block gives one figure per version and
metric (:data:`capdisc.verdicts.METRICS`: TTFT p50 and p95, TPOT p50, end-to-end p50
and p95, the mean answer length), with **failed requests ranked slower than every
success** (a timeout is not a fast answer left out). Per pair the log ratio B/A of
that figure is one observation; the 95% interval is the t-interval of their mean
(n - 1 degrees of freedom), reported as a change in percent, and the metric's verdict
compares the interval with its margin (:func:`metric_verdict`). When the answers
differ in length by more than :data:`LENGTH_MARGIN_PCT`, end-to-end times are compared
per output token, at A's answer length. Only whole pairs enter these intervals (a block cut by a stop is
left out with its pair).

- Requests close in time share the server's state, so the unit is the block, never
  the request: a block effect widens the interval, as it should, instead of being
  counted as dozens of independent samples.
- In A B | B A order B runs later in one pair and earlier in the next, so a linear
  drift of the machine adds +d and -d: it cancels in the mean (an even number of
  pairs) and only widens the interval.
- Without pairs (``--sequential``, or a saved run as one side) the blocks of A and B
  are compared as two groups (Welch's t-interval): drift between them is not
  cancelled, which the strategy says in a warning.

The failure rate difference (B - A, in points) has its own interval, spanning both the
pairs' t-interval and Newcombe's interval of two proportions over all measured
requests (cut blocks included), judged against ``--failure-margin``. The overall
verdict and the gate follow from the metrics in :mod:`capdisc.metrics.decision`. The
request-level Mann-Whitney p-value is kept as information only: requests are not
independent, so it cannot carry a verdict.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from capdisc.metrics.frame import tasks
from capdisc.schema import Pacing, VersionDiff
from capdisc.verdicts import DEFAULT_GATE, METRICS, MetricDiff, MetricVerdict

__all__ = [
    "LATE_SHARE_LIMIT",
    "LENGTH_MARGIN_PCT",
    "LOAD_SHARE_LIMIT",
    "MIN_BLOCK_TASKS",
    "POWER",
    "FailureCounts",
    "Interval",
    "block_quantile",
    "compare_versions",
    "failure_difference",
    "load_reasons",
    "metric_verdict",
]

Design = Literal["paired", "unpaired"]

# A block with fewer measured tasks than this says nothing: its pair is left out.
MIN_BLOCK_TASKS = 5
# The minimum detectable effect is the change found with this probability.
POWER = 0.80
# The load check: each version must achieve this share of the offered rate, with at
# most LATE_SHARE_LIMIT of its tasks started late (the limits of a passing step).
LOAD_SHARE_LIMIT = 0.90
LATE_SHARE_LIMIT = 0.10
# Answers whose mean length differs by more than this (in percent) are of different
# lengths: end-to-end times are then compared per output token, at A's length.
LENGTH_MARGIN_PCT = 5.0
# The metrics taken as a quantile of one column per block: (column, quantile).
_QUANTILES = {
    "ttft_p50": ("ttft_ms", 0.5),
    "ttft_p95": ("ttft_ms", 0.95),
    "tpot_p50": ("tpot_ms", 0.5),
    "e2e_p50": ("duration_ms", 0.5),
    "e2e_p95": ("duration_ms", 0.95),
}
_AT_LENGTH = "ms_at_reference_length"
_METHOD = {
    "paired": "per metric, t-interval of per-pair log ratios (A B B A block pairs); "
    "failures ranked slowest; Mann-Whitney U for information",
    "unpaired": "per metric, Welch t-interval of per-block log figures (no pairs); "
    "failures ranked slowest; Mann-Whitney U for information",
}


@dataclass(frozen=True)
class Interval:
    """A mean difference on the log scale, its standard error and degrees of freedom."""

    estimate: float
    se: float
    df: float

    def bounds(self, alpha: float = 0.05) -> tuple[float, float]:
        half = _t(1.0 - alpha / 2.0, self.df) * self.se
        return self.estimate - half, self.estimate + half

    def pct(self, alpha: float = 0.05) -> tuple[float, float]:
        lo, hi = self.bounds(alpha)
        return _pct(lo), _pct(hi)

    def mde_pct(self, alpha: float = 0.05, power: float = POWER) -> float:
        """The smallest true change this design detects with ``power``, in percent."""
        return _pct((_t(1.0 - alpha / 2.0, self.df) + _t(power, self.df)) * self.se)


def _t(q: float, df: float) -> float:
    from scipy.stats import t  # lazy: scipy costs CLI start-up time

    return float(t.ppf(q, df))


def _pct(log_ratio: float) -> float:
    return math.expm1(log_ratio) * 100.0


def block_quantile(values: np.ndarray, failures: int, q: float) -> float:
    """The ``q`` quantile (0..1) of successes plus ``failures`` ranked slower than all.

    Linear interpolation as numpy's default; a quantile that reaches into the failures
    is infinite (a block with more than half its requests failed has no finite median).
    """
    ordered = np.sort(values[np.isfinite(values)])
    n = ordered.size + failures
    if n == 0:
        return math.nan
    pos = q * (n - 1)
    lo = math.floor(pos)
    frac = pos - lo
    hi = min(lo + 1, n - 1)
    if lo >= ordered.size or (frac > 0 and hi >= ordered.size):
        return math.inf
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * frac)


def _blocks(rows: pd.DataFrame) -> dict[int, pd.DataFrame]:
    """Each measured block's task rows, by block number; blocks too small are left out."""
    steps = rows["step"].to_numpy(dtype="int64")
    return {
        int(step): rows[steps == step]
        for step in np.unique(steps)
        if int((steps == step).sum()) >= MIN_BLOCK_TASKS
    }


def _figure(block: pd.DataFrame, column: str, q: float) -> float:
    """One block's quantile of ``column``, failures ranked slowest; NaN when not measured."""
    ok = block["ok"].to_numpy() == 1
    values = block[column].to_numpy(dtype="float64", na_value=np.nan)[ok]
    if not np.isfinite(values).any():
        return math.nan
    return block_quantile(values, int((~ok).sum()), q)


def _mean_length(block: pd.DataFrame) -> float:
    """The mean output tokens of a block's successful requests; NaN when not measured."""
    ok = block["ok"].to_numpy() == 1
    values = block["output_tokens"].to_numpy(dtype="float64", na_value=np.nan)[ok]
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size and values.mean() > 0 else math.nan


def _at_length(rows: pd.DataFrame, length: float | None) -> pd.DataFrame:
    """Each request's end-to-end time scaled to an answer of ``length`` tokens, per output
    token: TTFT + (end-to-end - TTFT) x (length - 1) / (tokens - 1).

    Dividing the whole time by the tokens would charge a shorter answer its first
    token's time over fewer tokens (shorter answers at the same speed would read
    slower); scaling the generation after the first token compares like with like.
    """
    if length is None:
        return rows.assign(**{_AT_LENGTH: np.nan})
    tokens = rows["output_tokens"].to_numpy(dtype="float64", na_value=np.nan)
    durations = rows["duration_ms"].to_numpy(dtype="float64")
    first = rows["ttft_ms"].to_numpy(dtype="float64", na_value=np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = first + (durations - first) * (length - 1.0) / (tokens - 1.0)
    return rows.assign(**{_AT_LENGTH: np.where(tokens > 1, scaled, np.nan)})


def metric_verdict(
    ci: tuple[float, float] | None,
    margin: float,
    lower: MetricVerdict = "faster",
    higher: MetricVerdict = "slower",
) -> MetricVerdict:
    """A metric's verdict from its interval (B - A) and its margin.

    ``equivalent`` when the interval lies within +/- ``margin``; ``higher`` (slower)
    when it lies above ``margin``, ``lower`` (faster) below ``-margin``: a change inside
    the margin never decides, however significant. Otherwise ``inconclusive``.
    """
    if ci is None:
        return "inconclusive"
    lo, hi = ci
    if -margin <= lo and hi <= margin:
        return "equivalent"
    if lo > margin:
        return higher
    if hi < -margin:
        return lower
    return "inconclusive"


def _paired(a: list[float], b: list[float]) -> Interval | None:
    logs = [math.log(y / x) for x, y in zip(a, b, strict=True)]
    if not logs or not all(math.isfinite(v) for v in logs):
        return None
    n = len(logs)
    mean = float(np.mean(logs))
    se = float(np.std(logs, ddof=1)) / math.sqrt(n) if n > 1 else math.nan
    return Interval(mean, se, n - 1.0)


def _welch(a: list[float], b: list[float]) -> Interval | None:
    la, lb = np.log(np.asarray(a)), np.log(np.asarray(b))
    if not (la.size and lb.size and np.isfinite(la).all() and np.isfinite(lb).all()):
        return None
    mean = float(lb.mean() - la.mean())
    if la.size < 2 or lb.size < 2:
        return Interval(mean, math.nan, math.nan)
    va, vb = la.var(ddof=1) / la.size, lb.var(ddof=1) / lb.size
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (la.size - 1) + vb**2 / (lb.size - 1)) if se > 0 else 1.0
    return Interval(mean, se, float(df))


def _wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _failure_interval(
    a: pd.DataFrame, b: pd.DataFrame, pair_diffs: list[float]
) -> tuple[float, tuple[float, float]] | None:
    """B's failure rate minus A's in points, and a 95% interval spanning both the
    binomial noise (Newcombe, all requests) and the blocks' (t over the pairs)."""
    na, nb = len(a), len(b)
    if not na or not nb:
        return None
    ka, kb = int((a["ok"] != 1).sum()), int((b["ok"] != 1).sum())
    pa, pb = ka / na, kb / nb
    (la, ua), (lb, ub) = _wilson(ka, na), _wilson(kb, nb)
    diff = pb - pa
    lo = diff - math.sqrt((pb - lb) ** 2 + (ua - pa) ** 2)
    hi = diff + math.sqrt((ub - pb) ** 2 + (pa - la) ** 2)
    if len(pair_diffs) > 1:
        mean = float(np.mean(pair_diffs))
        half = _t(0.975, len(pair_diffs) - 1) * float(np.std(pair_diffs, ddof=1))
        half /= math.sqrt(len(pair_diffs))
        lo, hi = min(lo, mean - half), max(hi, mean + half)
    return diff * 100.0, (lo * 100.0, hi * 100.0)


@dataclass(frozen=True)
class FailureCounts:
    """Each side's failed and answered tasks, and B's rate minus A's with its 95% interval."""

    failed_a: int
    answered_a: int
    failed_b: int
    answered_b: int
    diff_pts: float | None
    ci95_pts: tuple[float, float] | None


def failure_difference(a: pd.DataFrame, b: pd.DataFrame) -> FailureCounts:
    """B's failure rate minus A's over all their task rows, in points, with Newcombe's
    95% interval (None when a side has no row)."""
    a, b = tasks(a), tasks(b)
    found = _failure_interval(a, b, [])
    return FailureCounts(
        failed_a=int((a["ok"] != 1).sum()),
        answered_a=len(a),
        failed_b=int((b["ok"] != 1).sum()),
        answered_b=len(b),
        diff_pts=None if found is None else found[0],
        ci95_pts=None if found is None else found[1],
    )


def _mann_whitney(a: pd.DataFrame, b: pd.DataFrame) -> float | None:
    def ranked(rows: pd.DataFrame) -> np.ndarray:
        values = rows["duration_ms"].to_numpy(dtype="float64")
        return np.where(rows["ok"].to_numpy() == 1, values, np.inf)

    if len(a) < 10 or len(b) < 10 or not ((a["ok"] == 1).any() and (b["ok"] == 1).any()):
        return None
    from scipy.stats import mannwhitneyu

    p = float(mannwhitneyu(ranked(a), ranked(b), alternative="two-sided").pvalue)
    return p if math.isfinite(p) else None


def compare_versions(
    a_df: pd.DataFrame,
    b_df: pd.DataFrame,
    *,
    design: Design = "paired",
    margin_pct: float = 2.0,
    failure_margin_pts: float = 0.5,
    judged: Collection[str] = DEFAULT_GATE,
    gate_limits: Mapping[str, float] | None = None,
    partial_a: Collection[int] = (),
    partial_b: Collection[int] = (),
    not_compared: Mapping[str, str] | None = None,
    alpha: float = 0.05,
) -> VersionDiff:
    """B against A from their measured task rows (``step`` = block number), per metric.

    ``paired``: block k of A with block k of B (both must have at least
    ``MIN_BLOCK_TASKS`` tasks). ``unpaired``: all blocks of each as two groups. Blocks
    in ``partial_a`` and ``partial_b`` (cut by a stop) are left out of the latency and
    length intervals, with their pairs, and counted in the failure rates. ``judged`` names the metrics that decide the verdict,
    ``gate_limits`` their regression limits (None: no gate); ``not_compared`` maps a
    metric to why it cannot be compared (left out, never judged). Figures that cannot
    be had (no pair, an infinite quantile) are None.
    """
    a, b = tasks(a_df), tasks(b_df)
    whole_a = a[~a["step"].isin(list(partial_a))]
    whole_b = b[~b["step"].isin(list(partial_b))]
    # A's mean answer is the reference length, should B's differ (see _at_length).
    reference = _pooled_length(whole_a)
    blocks_a = _blocks(_at_length(whole_a, reference))
    blocks_b = _blocks(_at_length(whole_b, reference))
    if design == "paired":
        keys = sorted(set(blocks_a) & set(blocks_b))
        ga, gb = [blocks_a[k] for k in keys], [blocks_b[k] for k in keys]
    else:
        ga, gb = list(blocks_a.values()), list(blocks_b.values())

    def interval_of(fa: list[float], fb: list[float]) -> Interval | None:
        if any(math.isnan(v) for v in fa + fb) or not (fa and fb):
            return None
        return _paired(fa, fb) if design == "paired" else _welch(fa, fb)

    def interval(column: str, q: float) -> Interval | None:
        return interval_of([_figure(g, column, q) for g in ga], [_figure(g, column, q) for g in gb])

    def both(found: Interval | None) -> tuple[float | None, tuple[float, float] | None]:
        if found is None:
            return None, None
        if not (math.isfinite(found.se) and found.df >= 1):
            return _pct(found.estimate), None
        return _pct(found.estimate), found.pct(alpha)

    intervals = {name: interval(column, q) for name, (column, q) in _QUANTILES.items()}
    length = interval_of([_mean_length(g) for g in ga], [_mean_length(g) for g in gb])
    length_pct, length_ci = both(length)
    per_token = length_pct is not None and abs(length_pct) > LENGTH_MARGIN_PCT
    if per_token:
        for name in ("e2e_p50", "e2e_p95"):
            intervals[name] = interval(_AT_LENGTH, _QUANTILES[name][1])
    pair_diffs = (
        [float((y["ok"] != 1).mean() - (x["ok"] != 1).mean()) for x, y in zip(ga, gb, strict=True)]
        if design == "paired"
        else []
    )
    failures = _failure_interval(a, b, pair_diffs)
    skipped = dict(not_compared or {})
    estimated = {side: _tokens_estimated(rows) for side, rows in (("A", a), ("B", b))}
    if estimated["A"] != estimated["B"] and "tpot_p50" not in skipped:
        # Tokens counted as events on one side only: per-token times are not comparable.
        side = "A" if estimated["A"] else "B"
        skipped["tpot_p50"] = (
            f"not compared: {side}'s output tokens are counted events (its server sent no "
            "usage), the other's are the server's"
        )
    metrics: dict[str, MetricDiff] = {}
    for name in METRICS:
        limit = None if gate_limits is None else gate_limits.get(name)
        if name == "failures":
            ci = None if failures is None else failures[1]
            metric = MetricDiff(
                metric=name,
                unit="pt",
                a=_rate_pct(a),
                b=_rate_pct(b),
                change=None if failures is None else failures[0],
                ci95=ci,
                margin=failure_margin_pts,
                verdict=metric_verdict(ci, failure_margin_pts),
            )
        elif name == "output_tokens":
            metric = MetricDiff(
                metric=name,
                a=_pooled_length(a),
                b=_pooled_length(b),
                change=length_pct,
                ci95=length_ci,
                margin=LENGTH_MARGIN_PCT,
                verdict=metric_verdict(length_ci, LENGTH_MARGIN_PCT, "shorter", "longer"),
            )
        else:
            change, ci = both(intervals[name])
            column, q = _QUANTILES[name]
            metric = MetricDiff(
                metric=name,
                a=_pooled(a, column, q),
                b=_pooled(b, column, q),
                change=change,
                ci95=ci,
                margin=margin_pct,
                verdict=metric_verdict(ci, margin_pct),
                per_token=per_token and name.startswith("e2e"),
            )
        if name in skipped:
            metric = metric.model_copy(
                update={"change": None, "ci95": None, "verdict": "inconclusive"}
            )
        metrics[name] = metric.model_copy(
            update={
                "judged": name in judged and name not in skipped,
                "gate_limit": limit if name not in skipped else None,
                "note": skipped.get(name, "")
                or ("" if metric.ci95 is not None else _no_interval(metric.change))
                or (
                    "~ output tokens counted from events on both sides (no usage sent)"
                    if name == "tpot_p50" and estimated["A"]
                    else ""
                ),
            }
        )
    p50 = intervals["e2e_p50"] if not per_token else interval("duration_ms", 0.5)
    p50_pct, p50_ci = both(p50)
    p95_pct, p95_ci = both(interval("duration_ms", 0.95))
    ttft_pct, ttft_ci = both(intervals["ttft_p50"])
    tpot_pct, tpot_ci = both(intervals["tpot_p50"]) if "tpot_p50" not in skipped else (None, None)
    mde = p50.mde_pct(alpha) if p50 is not None and p50_ci is not None else None
    return VersionDiff(
        p50_pct=p50_pct,
        p50_ci95_pct=p50_ci,
        p95_pct=p95_pct,
        p95_ci95_pct=p95_ci,
        p_value=_mann_whitney(a, b),
        ttft_p50_pct=None if "ttft_p50" in skipped else ttft_pct,
        ttft_p50_ci95_pct=None if "ttft_p50" in skipped else ttft_ci,
        tpot_p50_pct=tpot_pct,
        tpot_p50_ci95_pct=tpot_ci,
        failure_rate_pts=None if failures is None else failures[0],
        failure_rate_ci95_pts=None if failures is None else failures[1],
        design=design,
        pairs=len(ga) if design == "paired" else 0,
        blocks_a=len(ga),
        blocks_b=len(gb),
        mde_pct=mde,
        margin_pct=margin_pct,
        method=_METHOD[design],
        metrics=metrics,
        failure_margin_pts=failure_margin_pts,
        length_differs=per_token,
    )


def _tokens_estimated(rows: pd.DataFrame) -> bool:
    """Some successful answer's output tokens are counted events (the server sent no usage)."""
    ok = rows[rows["ok"] == 1]
    return bool((ok["tokens_estimated"].astype("float64").fillna(0.0) == 1).any())


def _no_interval(change: float | None) -> str:
    if change is None:
        return "not measured on both sides, or most requests failed"
    return "too few block pairs for an interval (2 or more needed)"


def _rate_pct(rows: pd.DataFrame) -> float | None:
    return float((rows["ok"] != 1).mean()) * 100.0 if len(rows) else None


def _pooled(rows: pd.DataFrame, column: str, q: float) -> float | None:
    """A version's quantile over all its measured requests, failures ranked slowest."""
    if rows.empty:
        return None
    value = _figure(rows, column, q)
    return value if math.isfinite(value) else None


def _pooled_length(rows: pd.DataFrame) -> float | None:
    value = _mean_length(rows) if not rows.empty else math.nan
    return value if math.isfinite(value) else None


def load_reasons(
    side: str, offered_rps: float, achieved_rps: float | None, pacing: Pacing
) -> list[str]:
    """Why ``side`` did not get the load asked for (empty when it did).

    It must achieve at least ``LOAD_SHARE_LIMIT`` of the offered rate and start at most
    ``LATE_SHARE_LIMIT`` of its tasks late: a server that cannot keep up answers fewer
    requests, later, and its latencies are no longer those of the load compared.
    """
    reasons = []
    short = achieved_rps is not None and achieved_rps < LOAD_SHARE_LIMIT * offered_rps
    if achieved_rps is not None and offered_rps > 0 and short:
        reasons.append(
            f"{side} achieved {achieved_rps:.1f} of {offered_rps:.1f} req/s offered "
            f"({100 * achieved_rps / offered_rps:.0f}% < {100 * LOAD_SHARE_LIMIT:.0f}%)"
        )
    if pacing.tasks and pacing.late_share > LATE_SHARE_LIMIT:
        reasons.append(
            f"{side} started {100 * pacing.late_share:.0f}% of its tasks late "
            f"(> {100 * LATE_SHARE_LIMIT:.0f}%)"
        )
    return reasons
