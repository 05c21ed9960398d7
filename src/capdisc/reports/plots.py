"""PNG charts of a run: ``capacity.png`` for a discovery, ``compare.png`` for a comparison.

matplotlib is imported inside the functions (it costs CLI start-up time) and draws on
an explicit Agg canvas: no display is needed and no global pyplot state is touched,
so plotting works headless and from threads. Missing data (no ttft, a single step,
no successful request) gives a chart that says so instead of an exception.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

from capdisc.schema import DiscoverySummary

__all__ = ["plot_capacity", "plot_compare"]

_A_COLOR = "#1f77b4"
_B_COLOR = "#d62728"


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)  # attaches itself: savefig then renders with Agg
    return figure


def _nan(value: float | None) -> float:
    # matplotlib leaves a gap at NaN: a step without successful tasks has no latency.
    return float("nan") if value is None else value


def plot_capacity(summary: DiscoverySummary, path: Path) -> None:
    """Latency (left axis) and throughput (right axis) against users, capacity marked."""
    figure = _figure(9, 5)
    ax = figure.add_subplot()
    steps = sorted(summary.steps, key=lambda s: (s.users, s.index))
    title = f"discover {summary.strategy}: {summary.target.model or summary.target.url}"
    if summary.capacity is None:
        title += f"\ncapacity not found (stopped: {summary.stop_reason})"
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("users")
    ax.set_ylabel("latency (ms)")
    if not steps:
        ax.text(0.5, 0.5, "no step completed", ha="center", va="center", transform=ax.transAxes)
        figure.savefig(path)
        return

    from matplotlib.ticker import MaxNLocator

    users = [s.users for s in steps]
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # users come whole
    ax.plot(users, [_nan(s.p50_ms) for s in steps], "o-", color="#1f77b4", label="p50")
    ax.plot(users, [_nan(s.p95_ms) for s in steps], "s-", color="#ff7f0e", label="p95")
    failing = [s for s in steps if not s.passed]
    if failing:
        # Failing steps are marked on the p95 line, or at the bottom when they have none.
        y = [s.p95_ms if s.p95_ms is not None else 0.0 for s in failing]
        ax.scatter(
            [s.users for s in failing],
            y,
            marker="x",
            s=90,
            color="#d62728",
            zorder=5,
            label="step failed",
        )
    if all(s.p50_ms is None and s.p95_ms is None for s in steps):
        # No latency at all (every request failed): keep a sensible scale and say so.
        ax.set_ylim(0, 1000)
        ax.text(0.5, 0.5, "no successful request", ha="center", transform=ax.transAxes)
    else:
        ax.set_ylim(bottom=0)

    rps_ax = ax.twinx()
    rps_ax.set_ylabel("requests / s")
    rps_ax.plot(users, [s.achieved_rps for s in steps], "^-", color="#2ca02c", label="achieved")
    rps_ax.plot(
        users,
        [s.offered_rps for s in steps],
        "--",
        marker=".",
        color="#7f7f7f",
        label="offered (users/interval)",
    )
    rps_ax.set_ylim(bottom=0)

    cap = summary.capacity
    if cap is not None:
        label = f"capacity {'>= ' if cap.at_least else ''}{cap.users} users"
        ax.axvline(cap.users, color="#9467bd", linestyle=":", linewidth=2, label=label)
        ax.annotate(
            label,
            xy=(cap.users, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(4, -14),
            textcoords="offset points",
            color="#9467bd",
            fontsize=9,
        )
    if len(set(users)) == 1:
        # A single step: give the x axis some width so the point is not on the frame.
        ax.set_xlim(users[0] - 1, users[0] + 1)

    handles, labels = ax.get_legend_handles_labels()
    rps_handles, rps_labels = rps_ax.get_legend_handles_labels()
    # Below the axes: a legend inside would hide whichever curve it lands on.
    figure.legend(
        handles + rps_handles, labels + rps_labels, loc="outside lower center", ncols=4, fontsize=8
    )
    figure.savefig(path)


def _successful(df: pd.DataFrame, column: str) -> np.ndarray:
    import numpy as np

    from capdisc.metrics.frame import tasks

    if column not in df.columns or df.empty:
        return np.empty(0)
    rows = tasks(df)
    values = rows.loc[rows["ok"] == 1, column].to_numpy(dtype="float64", na_value=np.nan)
    return np.sort(values[np.isfinite(values)])


def _ecdf_panel(ax: Any, series: list[tuple[str, str, np.ndarray]], xlabel: str) -> None:
    import numpy as np

    ax.set_xlabel(xlabel)
    ax.set_ylabel("share of requests")
    ax.set_ylim(0, 1.02)
    drawn = False
    for label, color, values in series:
        if values.size == 0:
            continue
        drawn = True
        y = np.arange(1, values.size + 1) / values.size
        median = float(np.median(values))
        # The median goes in the legend: labels on the plot collide when medians are close.
        ax.step(
            values,
            y,
            where="post",
            color=color,
            label=f"{label}: p50 {median:.0f} ms (n={values.size})",
        )
        ax.axvline(median, color=color, linestyle="--", linewidth=1)
    if drawn:
        ax.legend(loc="lower right", fontsize=8)
        ax.grid(alpha=0.3)
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)


def plot_compare(
    a_df: pd.DataFrame, b_df: pd.DataFrame, label_a: str, label_b: str, path: Path
) -> None:
    """ECDFs of end-to-end time and time to first chunk, A against B, medians marked."""
    figure = _figure(11, 4.5)
    e2e_ax, ttft_ax = figure.subplots(1, 2)
    e2e_ax.set_title("end-to-end time (successful requests)", fontsize=10)
    ttft_ax.set_title("time to first token", fontsize=10)
    _ecdf_panel(
        e2e_ax,
        [
            (f"A: {label_a}", _A_COLOR, _successful(a_df, "duration_ms")),
            (f"B: {label_b}", _B_COLOR, _successful(b_df, "duration_ms")),
        ],
        "ms",
    )
    _ecdf_panel(
        ttft_ax,
        [
            (f"A: {label_a}", _A_COLOR, _successful(a_df, "ttft_ms")),
            (f"B: {label_b}", _B_COLOR, _successful(b_df, "ttft_ms")),
        ],
        "ms",
    )
    figure.savefig(path)
