"""Is a step past the server's capacity? Overload tests that hold at exactly capacity.

``users`` paced users offer ``users / interval`` tasks per second. A server at its
capacity keeps up: what is in flight stays stationary and latency does not drift. Past
it the excess queues: the backlog grows by (offered - capacity) x window and latency
climbs; for a FIFO queue at ``rho - 1`` seconds per second (6.25 % overload: +62.5 ms/s),
since a task waits for the queue ahead of it. Each test turns one consequence into
pass, fail or inconclusive, judged against the noise the step itself explains, with a
reason naming the test and its figure:

- **latency trend**: latency against start time within each user. Comparing each user
  with itself removes the phase pattern (who shares the server with whom repeats every
  interval) that made a batching server's stationary noise look like a climb.
- **backlog growth**: in flight at the window's end against its start (or one
  interval into it, when the step's new users were still starting as it opened).
- **throughput deficit**: tasks started against offered.
- **lateness**: tasks started late (the pacing could not be held).

A step owns the tasks that *started* in its window. One still in flight when the step is
judged is :class:`Censored`: started and not completed, in the trend at its age (a lower
bound of its duration: it can hide growth, never invent it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy.stats import norm
from scipy.stats import t as t_dist

from capdisc.metrics.pacing import late_after_ms, slips_ms
from capdisc.records import STOPPED_IN_FLIGHT, is_round
from capdisc.schema import TestVerdict

__all__ = [
    "MATERIAL_OVERLOAD",
    "MATERIAL_SHARE_OF_MEDIAN",
    "Backlog",
    "Censored",
    "Evidence",
    "Lateness",
    "Throughput",
    "Trend",
    "backlog_growth",
    "busy_upper_bound",
    "fails_however_long",
    "judge_evidence",
    "latency_trend",
    "lateness",
    "split_censored",
    "throughput_deficit",
]

# The smallest overload worth failing a step for, as a share of the offered load. The
# discovery must never confirm a level 5 % past capacity, so it sits well below that.
# For the trend it is a slope: 2.5 % overload grows a FIFO queue's latency by 25 ms/s.
MATERIAL_OVERLOAD = 0.025
# Two-sided 95 % interval for the trend's slope.
TREND_CONFIDENCE = 0.95
# A stationary server's latency wanders with what is in flight (a batching server's by
# a third of itself within a few seconds at full load): a climb over the step smaller
# than this share of the median is not yet a queue. A queue's climb grows with the
# step, so an extended step settles it. (At a half, a queue 5 % past capacity could
# not fail one 4-interval window: its climb is about half its median there.)
MATERIAL_SHARE_OF_MEDIAN = 0.4
# Counts (backlog, deficit): beyond this many noise SDs a material excess fails
# (one-sided 99 %), beyond Z_WARN it is suggestive only and the step should be extended.
Z_FAIL = 2.33
Z_WARN = 1.28
# One task on an edge of the window is timer jitter, never evidence.
EDGE_TASKS = 1
# Below this many tasks an excess is never material, however small the step.
MIN_MATERIAL_TASKS = 2
# Pacing: above this share of tasks started late (metrics.pacing) the step fails.
MAX_LATE_SHARE = 0.10
_Z_TREND = float(norm.ppf(0.5 + TREND_CONFIDENCE / 2))
# One-sided 95 % for the upper bound of the mean in flight (an idle server).
_Z_IDLE = float(norm.ppf(0.95))


@dataclass(frozen=True)
class Censored:
    """A task of the window still in flight when the step is judged.

    ``age_ms`` is a lower bound of its duration. Without ``user`` and ``ts_start`` it is
    still counted as started and not completed, but it cannot enter the trend.
    """

    age_ms: float
    user: int | None = None
    ts_start: float | None = None


@dataclass(frozen=True)
class Trend:
    """Latency against start time within each user: slope in ms per second of the step."""

    verdict: TestVerdict
    reason: str
    tasks: int  # in the trend: completed plus censored with a known start
    pairs: int  # within-user pairs (the Kendall statistic's)
    slope_ms_per_s: float | None
    low_ms_per_s: float | None
    high_ms_per_s: float | None
    limit_ms_per_s: float  # fails above: max(MATERIAL_OVERLOAD, share of median / window)
    growth_ms: float | None  # slope x window
    median_ms: float | None


@dataclass(frozen=True)
class Backlog:
    """In flight at the window's end minus at its first count, against its noise."""

    verdict: TestVerdict
    reason: str
    at_start: int
    at_end: int
    growth: int
    noise_sd: float
    material: float  # tasks


@dataclass(frozen=True)
class Throughput:
    """Tasks started in the window against what the users offered, against its noise."""

    verdict: TestVerdict
    reason: str
    offered: float  # users x window / interval
    started: int
    deficit: float
    noise_sd: float
    material: float  # tasks


@dataclass(frozen=True)
class Lateness:
    """Tasks that started later than pacing wanted by more than ``slack_ms``."""

    verdict: TestVerdict
    reason: str
    tasks: int
    late: int
    share: float
    slack_ms: float


@dataclass(frozen=True)
class Evidence:
    """Every overload test of one step and their verdict: any fail fails, then inconclusive."""

    verdict: TestVerdict
    trend: Trend
    backlog: Backlog | None  # None when the in-flight counts were not given
    throughput: Throughput
    lateness: Lateness

    @property
    def tests(self) -> tuple[Trend | Backlog | Throughput | Lateness, ...]:
        found = (self.trend, self.backlog, self.throughput, self.lateness)
        return tuple(t for t in found if t is not None)

    @property
    def reasons(self) -> tuple[str, ...]:
        """Every test's reason, in a fixed order."""
        return tuple(t.reason for t in self.tests)

    @property
    def deciding(self) -> tuple[str, ...]:
        """The reasons of the tests that gave the overall verdict."""
        return tuple(t.reason for t in self.tests if t.verdict == self.verdict)


def split_censored(tasks_df: pd.DataFrame) -> tuple[pd.DataFrame, list[Censored]]:
    """The tasks the target answered, and those cut in flight by capdisc's stop as
    :class:`Censored` at their age (their rows' duration)."""
    cut = tasks_df["error"] == STOPPED_IN_FLIGHT
    gone = tasks_df[cut]
    censored = [
        Censored(age_ms=age, user=user, ts_start=start)
        for age, user, start in zip(
            gone["duration_ms"].astype(float).tolist(),
            gone["user"].astype(int).tolist(),
            gone["ts_start"].astype(float).tolist(),
            strict=True,
        )
    ]
    return tasks_df[~cut], censored


def judge_evidence(
    tasks_df: pd.DataFrame,
    *,
    window_start: float,
    window_end: float,
    users: int,
    interval_s: float,
    censored: Sequence[Censored] = (),
    in_flight_at_start: int | None = None,
    in_flight_at_end: int | None = None,
    in_flight_start_at: float | None = None,
) -> Evidence:
    """Judge one step on every overload test; any fail -> fail, any inconclusive -> inconclusive.

    ``tasks_df`` holds the tasks that started in ``[window_start, window_end)`` (rows
    outside it and tool rounds are ignored), completed, possibly after the window;
    ``censored`` the window's tasks still in flight; the in-flight counts are all of our
    requests in flight at ``in_flight_start_at`` (the window's start unless given) and
    at its end (``None``: no backlog test).
    """
    window = _window_tasks(tasks_df, window_start, window_end)
    length = window_end - window_start
    started = len(window) + len(censored)
    offered = users * length / interval_s
    trend = latency_trend(
        window,
        window_start=window_start,
        window_end=window_end,
        censored=censored,
        busy_upper=None if censored else busy_upper_bound(window, length),
    )
    backlog = None
    if in_flight_at_start is not None and in_flight_at_end is not None:
        ages = [c.age_ms for c in censored]
        durations = [*window["duration_ms"].to_numpy(dtype="float64"), *ages]
        # Little's law: start rate x mean duration (censored at their age).
        in_flight = started / length * float(np.mean(durations)) / 1000.0 if started else 0.0
        start_at = window_start if in_flight_start_at is None else in_flight_start_at
        span = max(window_end - start_at, 0.0)
        backlog = backlog_growth(
            in_flight_at_start,
            in_flight_at_end,
            mean_in_flight=in_flight,
            offered=offered * span / length if length > 0 else 0.0,
            span_s=span,
        )
    throughput = throughput_deficit(started, users=users, window_s=length, interval_s=interval_s)
    late = lateness(window, interval_s=interval_s)
    verdicts = {t.verdict for t in (trend, backlog, throughput, late) if t is not None}
    verdict: TestVerdict = (
        "fail" if "fail" in verdicts else "inconclusive" if "inconclusive" in verdicts else "pass"
    )
    return Evidence(verdict, trend, backlog, throughput, late)


def fails_however_long(
    evidence: Evidence, *, censored: int, longer_by_s: float, window_s: float
) -> bool:
    """True when ``evidence`` fails on a test its ``censored`` tasks cannot undo, each
    lasting up to ``longer_by_s`` longer than its age: the throughput deficit (it counts
    starts) or the backlog growth, its noise taken at its largest (Little's law with
    every such task that much longer). The trend is left out: a task's true duration
    moves its median and its interval both ways.
    """
    if evidence.throughput.verdict == "fail":
        return True
    backlog = evidence.backlog
    if backlog is None or longer_by_s < 0 or window_s <= 0:
        return False
    # noise^2 = 2 x mean in flight; each longer task adds longer_by_s / window_s to it.
    noise = math.sqrt(backlog.noise_sd**2 + 2.0 * censored * longer_by_s / window_s)
    return _count_verdict(backlog.growth, noise, backlog.material) == "fail"


def busy_upper_bound(tasks_df: pd.DataFrame, length_s: float) -> float | None:
    """One-sided 95 % upper bound of the mean number of tasks in flight over a window
    (Little's law: start rate x mean duration), from its completed tasks."""
    durations = tasks_df["duration_ms"].to_numpy(dtype="float64") / 1000.0
    if durations.size < 2 or length_s <= 0:
        return None
    sd = float(np.std(durations, ddof=1))
    mean_upper = float(np.mean(durations)) + _Z_IDLE * sd / math.sqrt(durations.size)
    return durations.size / length_s * mean_upper


def latency_trend(
    tasks_df: pd.DataFrame,
    *,
    window_start: float,
    window_end: float,
    censored: Sequence[Censored] = (),
    busy_upper: float | None = None,
) -> Trend:
    """Slope of latency against start time within each user, with its 95 % interval.

    The slope is the within-user least-squares one (every user its own intercept), its
    interval clustered by user (CR1, Student t with users - 1 degrees of freedom): a
    slow user or a timeout widens it instead of moving it. Not Theil-Sen's median of
    pairwise slopes: a queue climbs in steps (most tasks move a little, a few by a whole
    service time), which the median misses. The seasonal Kendall statistic over the same
    within-user pairs (Hirsch, Slack & Smith 1982) must agree that latency rises.

    Fails when the interval lies above both :data:`MATERIAL_OVERLOAD` (25 ms/s) and
    :data:`MATERIAL_SHARE_OF_MEDIAN` of the median latency over the step; passes when it
    lies below 25 ms/s; else inconclusive. Every task counts, failed or not (a timeout is
    the queue's tail); a censored one at its age, and then the trend cannot pass (its
    duration has no upper bound).

    An undecided trend also passes when ``busy_upper``, an upper bound of the mean
    number of our requests in flight, is below one: a server that serves at least one
    request at a time was then idle part of the window, so no queue was building, however
    wide the interval of a few users' noisy latencies.
    """
    length = window_end - window_start
    user, x, y = _trend_points(_window_tasks(tasks_df, window_start, window_end), censored)
    median = float(np.median(y)) if y.size else None
    fit = _within_user_fit(user, x - window_start, y)
    floor = MATERIAL_OVERLOAD * 1000.0
    if fit is None or median is None:
        reason = f"latency trend: under two users started two tasks in {length:.0f} s (extend)"
        return Trend("inconclusive", reason, int(y.size), 0, None, None, None, floor, None, median)
    limit = max(floor, MATERIAL_SHARE_OF_MEDIAN * median / length)
    verdict: TestVerdict = "inconclusive"
    if fit.low > limit and fit.kendall_z > _Z_TREND:
        verdict = "fail"
    elif fit.high < floor and not censored:
        verdict = "pass"
    idle = busy_upper is not None and busy_upper < 1.0 and not censored
    if verdict == "inconclusive" and idle:
        verdict = "pass"
    growth = fit.slope * length
    reason = (
        f"latency trend {fit.slope:+.0f} ms/s [{fit.low:+.0f}, {fit.high:+.0f}] (within-user "
        f"least squares 95%, Kendall z {fit.kendall_z:+.1f}, {y.size} tasks), "
        f"{_seconds(growth)} over the {length:.0f} s step ({growth / median:+.0%} of the "
        f"median {median / 1000:.1f} s); fails above {limit:.0f} ms/s, passes below {floor:.0f}"
    )
    if censored:
        reason += f"; {len(censored)} still in flight, at their age"
    if idle and busy_upper is not None:
        reason += f"; idle part of the time: at most {busy_upper:.2f} in flight on average"
    return Trend(
        verdict, reason, int(y.size), fit.pairs, fit.slope, fit.low, fit.high, limit, growth, median
    )


def backlog_growth(
    at_start: int,
    at_end: int,
    *,
    mean_in_flight: float,
    offered: float,
    span_s: float | None = None,
) -> Backlog:
    """Growth of what is in flight between two counts, against its noise under stationarity.

    The counts are whole intervals apart, so every on-time user is at the same point of
    its cycle at both, in flight at each with the same probability. Model: the
    difference has mean 0 and a variance at most twice the mean in flight (Poisson bound,
    generous for paced users). Past capacity it grows by (offered - capacity) x span.
    ``offered``: tasks offered between the counts, for what is material; ``span_s``
    their distance, for the reason.
    """
    noise = math.sqrt(2.0 * mean_in_flight)
    growth = at_end - at_start
    material = _material(offered)
    over = f" over {span_s:.0f} s" if span_s is not None else ""
    reason = (
        f"backlog {at_start} -> {at_end} in flight{over} ({growth:+d}, noise ±{noise:.1f}, "
        f"material {material:.1f})"
    )
    verdict = _count_verdict(growth, noise, material)
    return Backlog(verdict, reason, at_start, at_end, growth, noise, material)


def throughput_deficit(
    started: int, *, users: int, window_s: float, interval_s: float
) -> Throughput:
    """Tasks started in the window (censored ones too) against ``users x window / interval``.

    Each on-time user starts floor(T/P) or ceil(T/P) tasks in a window of T, by its
    phase: with phases spread evenly, the count has variance ``users x f x (1 - f)``,
    ``f`` the fraction of an interval (0 for whole intervals: the count is then exact
    but for a task on an edge). Users of a server too slow for the pacing start late,
    and the count falls by their accumulated lateness over the interval.
    """
    offered = users * window_s / interval_s
    fraction = window_s / interval_s - math.floor(window_s / interval_s)
    noise = math.sqrt(users * fraction * (1.0 - fraction))
    deficit = offered - started
    material = _material(offered)
    reason = (
        f"throughput {started} started of {offered:.1f} offered (deficit {deficit:+.1f}, "
        f"noise ±{noise:.1f}, material {material:.1f})"
    )
    verdict = _count_verdict(deficit, noise, material)
    return Throughput(verdict, reason, offered, started, deficit, noise, material)


def lateness(tasks_df: pd.DataFrame, *, interval_s: float) -> Lateness:
    """Share of tasks that started late: above 10 % (and 2 tasks) pacing was not held."""
    slip_ms = slips_ms(tasks_df)
    slack = late_after_ms(interval_s)
    late = int((slip_ms > slack).sum())
    share = late / slip_ms.size if slip_ms.size else 0.0
    failed = share > MAX_LATE_SHARE and late >= MIN_MATERIAL_TASKS
    reason = (
        f"lateness {late} of {slip_ms.size} tasks started over {slack:.0f} ms late "
        f"({share:.0%}, limit {MAX_LATE_SHARE:.0%})"
    )
    return Lateness("fail" if failed else "pass", reason, int(slip_ms.size), late, share, slack)


# -- helpers ----------------------------------------------------------------


def _window_tasks(tasks_df: pd.DataFrame, window_start: float, window_end: float) -> pd.DataFrame:
    """Whole tasks that started in the window (the step they belong to)."""
    starts = tasks_df["ts_start"]
    keep = (starts >= window_start) & (starts < window_end)
    if "name" in tasks_df.columns:
        keep &= ~tasks_df["name"].astype(str).map(is_round).astype(bool)
    return tasks_df[keep]


class _Fit(NamedTuple):
    slope: float
    low: float
    high: float
    kendall_z: float
    pairs: int


def _trend_points(window: pd.DataFrame, censored: Sequence[Censored]) -> list[np.ndarray]:
    """User, start and duration of every task in the trend, censored ones at their age."""
    placed = [(c.user, c.ts_start, c.age_ms) for c in censored if None not in (c.user, c.ts_start)]
    known = window[["user", "ts_start", "duration_ms"]].to_numpy(dtype="float64")
    points = np.vstack([known, np.asarray(placed, dtype="float64").reshape(-1, 3)])
    return [points[:, 0], points[:, 1], points[:, 2]]


def _within_user_fit(user: np.ndarray, x: np.ndarray, y: np.ndarray) -> _Fit | None:
    """Within-user slope, its clustered 95 % interval and the seasonal Kendall z."""
    groups: list[tuple[np.ndarray, np.ndarray]] = []
    kendall_s = 0.0
    kendall_var = 0.0
    pairs = 0
    for season in np.unique(user):
        xs, ys = x[user == season], y[user == season]
        n = xs.size
        if n < 2:
            continue
        groups.append((xs - xs.mean(), ys - ys.mean()))
        i, j = np.triu_indices(n, 1)
        kendall_s += float(np.sign((xs[j] - xs[i]) * (ys[j] - ys[i])).sum())
        # No correction for tied durations: it would only shrink the variance.
        kendall_var += n * (n - 1) * (2 * n + 5) / 18.0
        pairs += i.size
    sxx = sum(float((xc * xc).sum()) for xc, _ in groups)
    if len(groups) < 2 or sxx <= 0:
        return None
    slope = sum(float((xc * yc).sum()) for xc, yc in groups) / sxx
    scores = [float((xc * (yc - slope * xc)).sum()) for xc, yc in groups]
    g = len(groups)
    se = math.sqrt(g / (g - 1) * sum(s * s for s in scores)) / sxx
    half = float(t_dist.ppf(0.5 + TREND_CONFIDENCE / 2, g - 1)) * se
    # Continuity-corrected normal approximation of the Kendall statistic.
    kendall_z = (
        (kendall_s - math.copysign(1.0, kendall_s)) / math.sqrt(kendall_var) if kendall_s else 0.0
    )
    return _Fit(slope, slope - half, slope + half, kendall_z, pairs)


def _material(offered_tasks: float) -> float:
    return max(float(MIN_MATERIAL_TASKS), MATERIAL_OVERLOAD * offered_tasks)


def _count_verdict(excess: float, noise_sd: float, material: float) -> TestVerdict:
    """Fail a material excess beyond Z_FAIL noise SDs; beyond Z_WARN it is inconclusive."""
    beyond_edge = excess - EDGE_TASKS
    if excess >= material and beyond_edge > Z_FAIL * noise_sd:
        return "fail"
    if excess >= material and beyond_edge > Z_WARN * noise_sd:
        return "inconclusive"
    return "pass"


def _seconds(ms: float) -> str:
    return f"{ms / 1000:+.1f} s" if abs(ms) >= 1000 else f"{ms:+.0f} ms"
