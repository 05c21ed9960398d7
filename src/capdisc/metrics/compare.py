"""Is B faster than A? Block pairs, a t-interval of their log ratios, failures counted.

A comparison runs each version in blocks; live versions alternate in pairs, A B then
B A, and so on (``compare stream``). Every block gives one figure per version (its
median end-to-end time, its p95, TTFT and TPOT medians), with **failed requests
ranked slower than every success** (a timeout is not a fast answer left out). Per
pair the log ratio B/A of that figure is one observation; the 95% interval is the
t-interval of their mean (n - 1 degrees of freedom), reported as a change in percent.

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
pairs' t-interval and Newcombe's interval of two proportions over all requests. A
version whose failure rate is significantly higher is the slower one, and never the
faster one: when its median says otherwise, the verdict is inconclusive. The
request-level Mann-Whitney p-value is kept as information only: requests are not
independent, so it cannot carry a verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from capdisc.metrics.frame import tasks
from capdisc.schema import Pacing, Verdict, VersionDiff

__all__ = [
    "LATE_SHARE_LIMIT",
    "LOAD_SHARE_LIMIT",
    "MIN_BLOCK_TASKS",
    "POWER",
    "Interval",
    "block_quantile",
    "compare_versions",
    "decide",
    "gate",
    "load_reasons",
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
_METHOD = {
    "paired": "t-interval of per-pair log ratios (A B B A block pairs); failures ranked "
    "slowest; Mann-Whitney U for information",
    "unpaired": "Welch t-interval of per-block log figures (no pairs); failures ranked "
    "slowest; Mann-Whitney U for information",
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
    alpha: float = 0.05,
) -> VersionDiff:
    """B against A from their measured task rows (``step`` = block number).

    ``paired``: block k of A with block k of B (both must have at least
    ``MIN_BLOCK_TASKS`` tasks). ``unpaired``: all blocks of each as two groups.
    Figures that cannot be had (no pair, an infinite median) are None.
    """
    a, b = tasks(a_df), tasks(b_df)
    blocks_a, blocks_b = _blocks(a), _blocks(b)
    if design == "paired":
        keys = sorted(set(blocks_a) & set(blocks_b))
        ga, gb = [blocks_a[k] for k in keys], [blocks_b[k] for k in keys]
    else:
        ga, gb = list(blocks_a.values()), list(blocks_b.values())

    def interval(column: str, q: float) -> Interval | None:
        fa, fb = [_figure(g, column, q) for g in ga], [_figure(g, column, q) for g in gb]
        if any(math.isnan(v) for v in fa + fb) or not (fa and fb):
            return None
        return _paired(fa, fb) if design == "paired" else _welch(fa, fb)

    def both(found: Interval | None) -> tuple[float | None, tuple[float, float] | None]:
        if found is None:
            return None, None
        if not (math.isfinite(found.se) and found.df >= 1):
            return _pct(found.estimate), None
        return _pct(found.estimate), found.pct(alpha)

    p50 = interval("duration_ms", 0.5)
    p50_pct, p50_ci = both(p50)
    p95_pct, p95_ci = both(interval("duration_ms", 0.95))
    ttft_pct, ttft_ci = both(interval("ttft_ms", 0.5))
    tpot_pct, tpot_ci = both(interval("tpot_ms", 0.5))
    pair_diffs = (
        [float((y["ok"] != 1).mean() - (x["ok"] != 1).mean()) for x, y in zip(ga, gb, strict=True)]
        if design == "paired"
        else []
    )
    failures = _failure_interval(a, b, pair_diffs)
    mde = p50.mde_pct(alpha) if p50 is not None and p50_ci is not None else None
    return VersionDiff(
        p50_pct=p50_pct,
        p50_ci95_pct=p50_ci,
        p95_pct=p95_pct,
        p95_ci95_pct=p95_ci,
        p_value=_mann_whitney(a, b),
        ttft_p50_pct=ttft_pct,
        ttft_p50_ci95_pct=ttft_ci,
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
    )


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


def decide(diff: VersionDiff, unequal_load: list[str]) -> tuple[Verdict, str]:
    """The verdict and why, in words.

    Unequal load gives no verdict. Otherwise the median's interval decides: within
    +/- the margin ``equivalent``, below 0 ``b_faster``, above 0 ``b_slower``, else
    ``inconclusive``. A failure rate that is significantly higher on one side makes
    that side the slower one (failures rank slower than any success), and when its
    median says the opposite, the verdict is ``inconclusive``: a version that fails
    more is never the faster one.
    """
    if unequal_load:
        return "inconclusive", "unequal load: " + "; ".join(unequal_load)
    verdict, why = _latency_verdict(diff)
    fails = diff.failure_rate_ci95_pts
    if fails is None or fails[0] <= 0 <= fails[1]:
        return verdict, why
    worse: Verdict = "b_slower" if fails[0] > 0 else "b_faster"
    better: Verdict = "b_faster" if fails[0] > 0 else "b_slower"
    who = "B" if fails[0] > 0 else "A"
    more = f"{who} fails more often ({_pts(diff.failure_rate_pts)}, 95% CI {_pts_ci(fails)})"
    if verdict == better:
        return "inconclusive", f"{more}, but its median is lower: {why}"
    return worse, more if verdict == worse else f"{more}; median: {why}"


def _pts(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f} pt"


def _pts_ci(ci: tuple[float, float]) -> str:
    return f"{ci[0]:+.2f} .. {ci[1]:+.2f} pt"


def _latency_verdict(diff: VersionDiff) -> tuple[Verdict, str]:
    ci = diff.p50_ci95_pct
    if ci is None:
        if diff.p50_pct is None:
            return "inconclusive", "no median to compare (too few requests, or most failed)"
        return "inconclusive", "too few block pairs for an interval (2 or more needed)"
    lo, hi = ci
    margin = diff.margin_pct or 0.0
    if -margin <= lo and hi <= margin:
        return "equivalent", f"the 95% interval lies within the \u00b1{margin:g}% margin"
    if hi < 0:
        return "b_faster", "the 95% interval is below 0"
    if lo > 0:
        return "b_slower", "the 95% interval is above 0"
    return "inconclusive", (
        f"the 95% interval spans 0 and reaches beyond the \u00b1{margin:g}% margin: run longer"
    )


Gate = Literal["pass", "regression", "inconclusive"]


def gate(diff: VersionDiff, unequal_load: list[str], limit_pct: float) -> tuple[Gate, int]:
    """``--fail-on-regression``: regression (exit 1), pass (exit 0) or inconclusive (exit 5).

    Regression: the interval's lower bound of B's slowdown is above the limit, or B
    fails significantly more often. Pass: the upper bound is at or below the limit.
    Unequal load or no interval can only be inconclusive.
    """
    fails = diff.failure_rate_ci95_pts
    if not unequal_load and fails is not None and fails[0] > 0:
        return "regression", 1
    ci = diff.p50_ci95_pct
    if unequal_load or ci is None:
        return "inconclusive", 5
    if ci[0] > limit_pct:
        return "regression", 1
    if ci[1] <= limit_pct:
        return "pass", 0
    return "inconclusive", 5
