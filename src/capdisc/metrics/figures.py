"""Figures from records: pacing, one discovery step, the run at stop, one compared version.

Pure functions from the records frame (see :mod:`capdisc.metrics.frame`) to the
``summary.json`` models. Latency percentiles count successful tasks only (a fast
error would flatter them, a timeout would be counted twice with the failure rate);
percentiles interpolate linearly between samples (numpy's default).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from capdisc.metrics.frame import cut_mask, rounds, tasks
from capdisc.metrics.pacing import late_after_ms, slips_ms
from capdisc.records import ROUND_PREFIX
from capdisc.schema import AtStop, Connections, Pacing, Spread, StepResult, TokenStats, VersionStats

__all__ = [
    "at_stop",
    "connection_stats",
    "pacing_stats",
    "percentile",
    "round_p50s",
    "spread",
    "step_figures",
    "token_stats",
    "version_stats",
]


_ROUND_NUMBER = re.compile(r"(\d+)\s*$")


def percentile(values: pd.Series | np.ndarray, q: float) -> float | None:
    """The ``q``-th percentile (0..100) of the non-missing values, None when there are none."""
    arr = np.asarray(values, dtype="float64")
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return None
    return float(np.percentile(arr, q))


def _mean(values: pd.Series) -> float | None:
    arr = values.to_numpy(dtype="float64", na_value=np.nan)
    arr = arr[~np.isnan(arr)]
    return float(arr.mean()) if arr.size else None


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["ok"] == 1]


def pacing_stats(tasks_df: pd.DataFrame, interval_s: float) -> Pacing:
    """How far tasks started after their schedule (constant pacing), in ms."""
    if tasks_df.empty:
        return Pacing()
    slip = slips_ms(tasks_df)
    late = int((slip > late_after_ms(interval_s)).sum())
    return Pacing(
        tasks=int(slip.size),
        late=late,
        late_share=late / slip.size,
        slip_p50_ms=float(np.percentile(slip, 50)),
        slip_p95_ms=float(np.percentile(slip, 95)),
        slip_max_ms=float(slip.max()),
    )


def connection_stats(tasks_df: pd.DataFrame) -> Connections:
    """Share of tasks that opened a new connection, retries, and the median connect time.

    Rows of an older ``requests.csv`` (no ``connect_ms``) are left out.
    """
    connect = tasks_df["connect_ms"].to_numpy(dtype="float64", na_value=np.nan)
    known = ~np.isnan(connect)
    if not known.any():
        return Connections()
    fresh = connect[known] > 0
    reconnects = tasks_df["reconnects"].to_numpy(dtype="float64", na_value=np.nan)
    return Connections(
        requests=int(known.sum()),
        new_share=float(fresh.mean()),
        reconnects=int(np.nansum(reconnects)),
        connect_p50_ms=float(np.median(connect[known][fresh])) if fresh.any() else None,
    )


def spread(values: pd.Series) -> Spread:
    """p50/p95/p99 of the non-missing values."""
    return Spread(
        p50_ms=percentile(values, 50), p95_ms=percentile(values, 95), p99_ms=percentile(values, 99)
    )


def token_stats(tasks_df: pd.DataFrame, measured_s: float | None) -> TokenStats:
    """Token figures of the successful tasks; output tokens per second over ``measured_s``."""
    good = _ok(tasks_df)
    out = good["output_tokens"].astype("float64").to_numpy(dtype="float64", na_value=np.nan)
    inp = good["input_tokens"].astype("float64").to_numpy(dtype="float64", na_value=np.nan)
    estimated = good["tokens_estimated"].astype("float64").to_numpy(dtype="float64", na_value=0.0)
    output = int(np.nansum(out))
    return TokenStats(
        requests=len(good),
        ttfb=spread(good["ttfb_ms"]),
        ttft=spread(good["ttft_ms"]),
        tpot=spread(good["tpot_ms"]),
        itl=spread(good["itl_mean_ms"]),
        itl_max=spread(good["itl_max_ms"]),
        output_tokens=output,
        input_tokens=int(np.nansum(inp)) if not np.isnan(inp).all() else None,
        output_tokens_per_s=output / measured_s if measured_s and not np.isnan(out).all() else None,
        estimated=bool(estimated.any()),
    )


def _cv(durations: pd.Series) -> float | None:
    arr = durations.to_numpy(dtype="float64")
    if arr.size < 2:
        return None
    mean = float(arr.mean())
    if mean <= 0:
        return None
    # Sample standard deviation: the step is a sample of the server's behaviour.
    return float(arr.std(ddof=1)) / mean


def _round_key(name: str) -> tuple[int, int, str]:
    match = _ROUND_NUMBER.search(name[len(ROUND_PREFIX) :])
    return (0, int(match.group(1)), name) if match else (1, 0, name)


def round_p50s(rounds_df: pd.DataFrame) -> list[float]:
    """p50 duration of each tool round ("round 1", "round 2", ...), in round order.

    Successful rounds count; a round that never succeeded falls back to all its rows,
    so the list stays aligned with the round numbers.
    """
    result: list[float] = []
    for name in sorted({str(n) for n in rounds_df["name"].unique()}, key=_round_key):
        rows = rounds_df[rounds_df["name"] == name]
        good = _ok(rows)
        value = percentile((good if not good.empty else rows)["duration_ms"], 50)
        if value is not None:
            result.append(value)
    return result


def step_figures(
    df: pd.DataFrame,
    *,
    index: int,
    users: int,
    interval_s: float,
    window_start: float,
    window_end: float,
    phase: Literal["ramp", "refine", "confirm"] = "ramp",
) -> StepResult:
    """The figures of one step: its tasks are those that *started* in its window.

    Latency, failures, pacing and tokens are over the tasks started in
    ``[window_start, window_end)`` (a request belongs to the step in which it started);
    ``achieved_rps`` is the server's delivery: successful tasks that *ended* in it, per
    second. ``passed`` is left False with no reasons: the strategy judges the step.
    """
    spans = [(window_start, window_end)]
    task_df = tasks(df)
    started = _in_windows(task_df["ts_start"], spans)
    ended = _in_windows(task_df["ts_end"], spans)
    # Cut in flight by a stop: started and never answered, so censored, not failed.
    cut = int((started & cut_mask(task_df)).sum())
    task_rows = task_df[started & ~cut_mask(task_df)]
    good = _ok(task_rows)
    requests = len(task_rows)
    failures = requests - len(good)
    length = window_end - window_start
    delivered = int(((task_df["ok"] == 1) & ended).sum())
    durations = good["duration_ms"]
    round_df = rounds(df)
    return StepResult(
        index=index,
        users=users,
        phase=phase,
        window_start=window_start,
        window_end=window_end,
        offered_rps=users / interval_s if interval_s > 0 else 0.0,
        achieved_rps=delivered / length if length > 0 else 0.0,
        requests=requests,
        failures=failures,
        failure_rate=100.0 * failures / requests if requests else 0.0,
        p50_ms=percentile(durations, 50),
        p95_ms=percentile(durations, 95),
        p99_ms=percentile(durations, 99),
        avg_ms=_mean(durations),
        pacing=pacing_stats(task_rows, interval_s),
        connections=connection_stats(task_rows),
        tokens=token_stats(task_rows, length),
        duration_cv=_cv(durations),
        round_p50_ms=round_p50s(round_df[_in_windows(round_df["ts_start"], spans)]),
        measured_s=length,
        started=requests + cut,
        censored=cut,
        passed=False,
        reasons=[],
    )


def _in_windows(times: pd.Series, spans: Sequence[tuple[float, float]]) -> pd.Series:
    mask = pd.Series(False, index=times.index)
    for start, end in spans:
        mask |= (times >= start) & (times < end)
    return mask


def at_stop(df: pd.DataFrame, users: int) -> AtStop:
    """Where the run was when it stopped, over all its tasks.

    Like Locust's aggregate line (the figures earlier reports quoted), the mean
    response time counts failed tasks too, and the requests cut in flight by the stop
    at their age (a lower bound: the longest requests are the ones cut). The failure
    rate is of the requests the target answered: a cut request is not its failure.
    """
    task_rows = tasks(df)
    total = len(task_rows)
    cut = cut_mask(task_rows)
    answered = total - int(cut.sum())
    failures = int(((task_rows["ok"] != 1) & ~cut).sum())
    return AtStop(
        users=users,
        total_requests=total,
        failure_rate=100.0 * failures / answered if answered else 0.0,
        avg_ms=_mean(task_rows["duration_ms"]),
        cut=int(cut.sum()),
    )


def version_stats(
    df: pd.DataFrame, label: str, interval_s: float, measured_s: float | None = None
) -> VersionStats:
    """The figures of one version of a comparison from its measured rows.

    ``measured_s`` (the measured windows' total length) gives output tokens per second.
    """
    task_rows = tasks(df)
    good = _ok(task_rows)
    chunks = good["chunks"].astype("float64")
    return VersionStats(
        label=label,
        requests=len(task_rows),
        failures=len(task_rows) - len(good),
        p50_ms=percentile(good["duration_ms"], 50),
        p95_ms=percentile(good["duration_ms"], 95),
        p99_ms=percentile(good["duration_ms"], 99),
        ttft_p50_ms=percentile(good["ttft_ms"], 50),
        ttft_p95_ms=percentile(good["ttft_ms"], 95),
        chunks_p50=percentile(chunks.to_numpy(dtype="float64", na_value=np.nan), 50),
        pacing=pacing_stats(task_rows, interval_s),
        connections=connection_stats(task_rows),
        tokens=token_stats(task_rows, measured_s),
    )


def measured_tasks(
    df: pd.DataFrame, version: str, windows: Sequence[tuple[int, float, float]]
) -> pd.DataFrame:
    """Task rows of ``version`` that started inside one of its measured windows.

    ``windows`` holds ``(step, start, end)``: a row counts when its ``step`` is the
    window's and its ``ts_start`` lies in ``[start, end)`` (ramp-up excluded). A
    request belongs to the window in which it started, however long it took (the
    engine awaits it): by end time the slowest requests at a window's end would
    vanish. Rows cut in flight by capdisc's own stop are included (see ``cut_mask``).
    """
    rows = tasks(df)
    rows = rows[rows["version"] == version]
    keep = pd.Series(False, index=rows.index)
    for step, start, end in windows:
        keep |= (rows["step"] == step) & (rows["ts_start"] >= start) & (rows["ts_start"] < end)
    return rows[keep]
