"""The interactive charts of ``report.html``: Bokeh figures built from a summary and its records.

Pure: each function returns a Bokeh model (nothing is written, nothing is shown); the page
(:mod:`capdisc.reports.html`) embeds them with BokehJS inlined, so the page needs no
network. Bokeh is imported inside this module only, and this module only by the page.
Missing data (no steps, no successful request, no client samples) gives ``None`` and the
page says so instead of drawing an empty chart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, HoverTool, LayoutDOM, Range1d
from bokeh.models.annotations.geometry import BoxAnnotation, Span
from bokeh.models.annotations.labels import Label
from bokeh.palettes import Category10_10
from bokeh.plotting import figure

from capdisc.schema import CompareSummary, DiscoverySummary, StepResult
from capdisc.verdicts import METRICS, BlockStats

__all__ = [
    "VERDICT_COLORS",
    "blocks_chart",
    "capacity_chart",
    "client_chart",
    "ecdf_chart",
    "failures_chart",
    "forest_chart",
    "timeline_chart",
    "tokens_chart",
    "two_runs_chart",
]

VERDICT_COLORS = {
    "pass": "#2ca02c",
    "fail": "#d62728",
    "inconclusive": "#ff7f0e",
    "client_bound": "#7f7f7f",
}
A_COLOR = "#1f77b4"
B_COLOR = "#d62728"
_WIDTH = 900
_TOOLS = "pan,box_zoom,wheel_zoom,reset,save"
# Points drawn of one distribution (an ECDF): beyond this it is drawn at quantiles.
_ECDF_POINTS = 1500
# Requests drawn one by one on the timeline: beyond this a regular sample (said so).
_TIMELINE_POINTS = 20000


def step_verdict(step: StepResult) -> str:
    """A step's verdict in one word (schema 1 knew only passed or not)."""
    if step.client_bound:
        return "client_bound"
    if step.verdict is not None:
        return step.verdict
    return "pass" if step.passed else "fail"


def _figure(title: str, x_label: str, y_label: str, height: int = 320, **kw: Any) -> Any:
    """A figure of the page's width and tools (Any: bokeh's glyph methods are generated)."""
    fig = figure(
        title=title,
        width=_WIDTH,
        height=height,
        x_axis_label=x_label,
        y_axis_label=y_label,
        tools=_TOOLS,
        toolbar_location="above",
        **kw,
    )
    fig.title.text_font_size = "13px"  # type: ignore[union-attr]
    return fig


def _layout(fig: Any) -> LayoutDOM:
    """A finished figure as what the page embeds."""
    assert isinstance(fig, LayoutDOM)
    return fig


def _num(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _steps_source(summary: DiscoverySummary) -> ColumnDataSource:
    steps = sorted(summary.steps, key=lambda s: (s.users, s.index))
    verdicts = [step_verdict(s) for s in steps]
    return ColumnDataSource(
        {
            "index": [s.index for s in steps],
            "phase": [s.phase for s in steps],
            "users": [s.users for s in steps],
            "offered": [s.offered_rps for s in steps],
            "achieved": [s.achieved_rps for s in steps],
            "requests": [s.requests for s in steps],
            "failures": [s.failures for s in steps],
            "p50": [_num(s.p50_ms) for s in steps],
            "p95": [_num(s.p95_ms) for s in steps],
            "p99": [_num(s.p99_ms) for s in steps],
            "ttft50": [_num(s.tokens.ttft.p50_ms) for s in steps],
            "ttft95": [_num(s.tokens.ttft.p95_ms) for s in steps],
            "tpot50": [_num(s.tokens.tpot.p50_ms) for s in steps],
            "tpot95": [_num(s.tokens.tpot.p95_ms) for s in steps],
            "verdict": verdicts,
            "color": [VERDICT_COLORS[v] for v in verdicts],
            "why": ["; ".join(s.reasons) or "-" for s in steps],
        }
    )


_STEP_TIPS = [
    ("step", "#@index (@phase)"),
    ("users", "@users"),
    ("req/s offered / achieved", "@offered{0.0} / @achieved{0.0}"),
    ("requests / failures", "@requests / @failures"),
    ("p50 / p95 / p99", "@p50{0} / @p95{0} / @p99{0} ms"),
    ("verdict", "@verdict"),
    ("why", "@why"),
]


def _mark_capacity(fig: Any, summary: DiscoverySummary) -> None:
    cap = summary.capacity
    if cap is None:
        return
    fig.add_layout(Span(location=cap.users, dimension="height", line_color="#2ca02c", line_width=2))
    fig.add_layout(
        Label(
            x=cap.users,
            y=5,
            y_units="screen",
            text=f"capacity {'>= ' if cap.at_least else ''}{cap.users} ",
            text_align="right",
            text_color="#2ca02c",
            text_font_size="11px",
        )
    )
    if cap.fail_users is not None:
        fig.add_layout(
            BoxAnnotation(
                left=cap.users, right=cap.fail_users, fill_color="#ffbb78", fill_alpha=0.25
            )
        )
        fig.add_layout(
            Span(
                location=cap.fail_users,
                dimension="height",
                line_color="#d62728",
                line_dash="dashed",
                line_width=2,
            )
        )


def _verdict_points(fig: Any, source: ColumnDataSource, y: str) -> Any:
    return fig.scatter(
        "users",
        y,
        source=source,
        size=11,
        color="color",
        line_color="black",
        legend_field="verdict",
    )


def capacity_chart(summary: DiscoverySummary) -> LayoutDOM | None:
    """Req/s (offered and achieved) and latency p50/p95/p99 against users, steps by verdict."""
    if not summary.steps:
        return None
    source = _steps_source(summary)
    rps = _figure("Throughput against users", "users", "req/s", height=280)
    rps.line("users", "offered", source=source, color="#999999", line_dash="dashed",
             legend_label="offered")  # fmt: skip
    rps.line("users", "achieved", source=source, color=A_COLOR, line_width=2,
             legend_label="achieved")  # fmt: skip
    points = _verdict_points(rps, source, "achieved")
    rps.add_tools(HoverTool(renderers=[points], tooltips=_STEP_TIPS))
    _mark_capacity(rps, summary)
    rps.legend.location = "top_left"

    lat = _figure("Latency against users", "users", "ms", height=300, x_range=rps.x_range)
    for name, color in (("p50", "#1f77b4"), ("p95", "#ff7f0e"), ("p99", "#9467bd")):
        lat.line("users", name, source=source, color=color, line_width=2, legend_label=name)
    points = _verdict_points(lat, source, "p95")
    lat.add_tools(HoverTool(renderers=[points], tooltips=_STEP_TIPS))
    slo = summary.slo
    if slo is not None and slo.e2e_ms is not None:
        _limit(lat, slo.e2e_ms, f"SLO e2e p{slo.percentile:g}")
    _mark_capacity(lat, summary)
    lat.legend.location = "top_left"
    return column(rps, lat)


def _limit(fig: Any, value: float, text: str) -> None:
    """A horizontal limit line, named in the legend (a label on the plot hides under it)."""
    fig.add_layout(
        Span(location=value, dimension="width", line_color="#d62728", line_dash="dotted",
             line_width=2)
    )  # fmt: skip
    # An empty line of the same style carries the name into the legend.
    fig.line(x=[], y=[], color="#d62728", line_dash="dotted", line_width=2, legend_label=text)


def tokens_chart(summary: DiscoverySummary) -> LayoutDOM | None:
    """Streams: TTFT and TPOT percentiles against users, with the SLO limits drawn."""
    steps = summary.steps
    if not any(s.tokens.ttft.p50_ms is not None for s in steps):
        return None
    source = _steps_source(summary)
    slo = summary.slo
    charts = []
    for title, lo, hi, limit in (
        ("Time to first token against users", "ttft50", "ttft95", slo.ttft_ms if slo else None),
        ("Time per output token against users", "tpot50", "tpot95", slo.tpot_ms if slo else None),
    ):
        fig = _figure(title, "users", "ms", height=260)
        fig.line("users", lo, source=source, color="#1f77b4", line_width=2, legend_label="p50")
        fig.line("users", hi, source=source, color="#ff7f0e", line_width=2, legend_label="p95")
        points = _verdict_points(fig, source, hi)
        tips = [*_STEP_TIPS[:2], ("p50 / p95", f"@{lo}{{0.0}} / @{hi}{{0.0}} ms"), *_STEP_TIPS[-2:]]
        fig.add_tools(HoverTool(renderers=[points], tooltips=tips))
        if limit is not None and slo is not None:
            _limit(fig, limit, f"SLO p{slo.percentile:g} {limit:g} ms")
        _mark_capacity(fig, summary)
        fig.legend.location = "top_left"
        charts.append(fig)
    return column(*charts)


def _sample(frame: pd.DataFrame, limit: int) -> tuple[pd.DataFrame, bool]:
    if len(frame) <= limit:
        return frame, False
    every = int(np.ceil(len(frame) / limit))
    return frame.iloc[::every], True


def timeline_chart(records: pd.DataFrame, summary: DiscoverySummary) -> LayoutDOM | None:
    """Every request at its start time and duration, coloured by step, failures marked."""
    if records.empty:
        return None
    rows = records.sort_values("ts_start")
    rows, sampled = _sample(rows, _TIMELINE_POINTS)
    t0 = float(rows["ts_start"].min())
    users = {s.index: s.users for s in summary.steps}
    title = "Requests over time (each a point: start and duration; x = failed)"
    if sampled:
        title += f"; one request in {int(np.ceil(len(records) / len(rows)))} drawn"
    fig = _figure(title, "seconds since the first request", "duration (ms)", height=340)
    for ok in (True, False):
        part = rows[(rows["ok"] == 1) == ok]
        if part.empty:
            continue
        steps = part["step"].to_numpy()
        source = ColumnDataSource(
            {
                "t": part["ts_start"].to_numpy() - t0,
                "ms": part["duration_ms"].to_numpy(),
                "step": steps,
                "users": [users.get(int(s), 0) for s in steps],
                "color": [Category10_10[int(s) % 10] for s in steps],
                "status": part["status"].to_numpy(),
                "error": part["error"].astype(str).str.slice(0, 80).to_numpy(),
            }
        )
        if ok:
            drawn = fig.scatter("t", "ms", source=source, size=4, color="color", alpha=0.6)
        else:
            drawn = fig.scatter("t", "ms", source=source, size=9, marker="x", color="#d62728",
                                line_width=2, legend_label="failed")  # fmt: skip
        fig.add_tools(
            HoverTool(
                renderers=[drawn],
                tooltips=[
                    ("step", "@step (@users users)"),
                    ("started", "@t{0.00} s"),
                    ("duration", "@ms{0} ms"),
                    ("status", "@status @error"),
                ],
            )
        )
    for step in summary.steps:
        fig.add_layout(
            BoxAnnotation(
                left=step.window_start - t0,
                right=step.window_end - t0,
                fill_color=Category10_10[step.index % 10],
                fill_alpha=0.07,
            )
        )
    return _layout(fig)


def client_chart(client: pd.DataFrame | None, limits: dict[str, float]) -> LayoutDOM | None:
    """capdisc's own load processes: CPU (1.0 = a core) and loop lag p95, against the limits."""
    if client is None or client.empty:
        return None
    t0 = float(client["ts"].min())
    cpu = _figure("Client CPU per load process (1.0 = one core)", "seconds", "CPU", height=220)
    lag = _figure("Client event-loop lag p95", "seconds", "ms", height=220, x_range=cpu.x_range)
    for i, (process, part) in enumerate(client.groupby("process", sort=True)):
        color = Category10_10[i % 10]
        source = ColumnDataSource(
            {
                "t": part["ts"].to_numpy() - t0,
                "cpu": part["cpu"].to_numpy(),
                "lag": part["lag_p95_ms"].to_numpy(),
            }
        )
        cpu.line("t", "cpu", source=source, color=color, legend_label=str(process))
        lag.line("t", "lag", source=source, color=color, legend_label=str(process))
    if "cpu" in limits:
        _limit(cpu, limits["cpu"], f"limit {limits['cpu']:g}")
    if "lag_p95_ms" in limits:
        _limit(lag, limits["lag_p95_ms"], f"limit {limits['lag_p95_ms']:g} ms")
    for fig in (cpu, lag):
        fig.legend.location = "top_left"
    return column(cpu, lag)


# -- comparison ------------------------------------------------------------------------


def forest_chart(summary: CompareSummary) -> LayoutDOM | None:
    """Each compared metric's change (B against A) with its 95% interval and margin band."""
    metrics = [summary.diff.metrics[m] for m in METRICS if m in summary.diff.metrics]
    if not metrics:
        return None
    names = [m.metric + (" (gate)" if m.judged else "") for m in metrics][::-1]
    metrics = metrics[::-1]
    spans = [abs(v) for m in metrics for v in (*(m.ci95 or ()), m.margin, m.change or 0.0)]
    edge = max([*spans, 1.0]) * 1.15
    fig = _figure(
        "Change of B against A (% of A; failures in points): 95% interval, margin band",
        "change (negative: B lower)",
        "",
        height=60 + 40 * len(metrics),
        y_range=names,
        x_range=Range1d(-edge, edge),
    )
    source = ColumnDataSource(
        {
            "name": names,
            "margin": [m.margin for m in metrics],
            "neg": [-m.margin for m in metrics],
            "change": [_num(m.change) for m in metrics],
            "lo": [_num(m.ci95[0]) if m.ci95 else float("nan") for m in metrics],
            "hi": [_num(m.ci95[1]) if m.ci95 else float("nan") for m in metrics],
            "verdict": [m.verdict for m in metrics],
            "unit": [m.unit for m in metrics],
            "a": [_num(m.a) for m in metrics],
            "b": [_num(m.b) for m in metrics],
            "note": [m.note or "-" for m in metrics],
            "color": [_metric_color(m.verdict) for m in metrics],
        }
    )
    fig.hbar(y="name", left="neg", right="margin", height=0.7, source=source, color="#cccccc",
             alpha=0.5, legend_label="margin (equivalent within)")  # fmt: skip
    fig.segment(x0="lo", y0="name", x1="hi", y1="name", source=source, color="color", line_width=3)
    points = fig.scatter(
        "change", "name", source=source, size=11, color="color", line_color="black"
    )
    fig.add_layout(Span(location=0, dimension="height", line_color="black", line_width=1))
    fig.add_tools(
        HoverTool(
            renderers=[points],
            tooltips=[
                ("metric", "@name"),
                ("A / B", "@a{0.0} / @b{0.0}"),
                ("change", "@change{+0.0} @unit [@lo{+0.0}, @hi{+0.0}]"),
                ("margin", "± @margin{0.0} @unit"),
                ("verdict", "@verdict"),
                ("note", "@note"),
            ],
        )
    )
    fig.legend.location = "bottom_right"
    return _layout(fig)


def _metric_color(verdict: str) -> str:
    return {"faster": "#2ca02c", "slower": "#d62728", "equivalent": "#1f77b4"}.get(
        verdict, "#ff7f0e"
    )


def _blocks(summary: CompareSummary) -> list[tuple[str, BlockStats]]:
    named = [(f"A{b.block}", b) for b in summary.a.blocks]
    named += [(f"B{b.block}", b) for b in summary.b.blocks]
    return sorted(named, key=lambda nb: nb[1].start)


def blocks_chart(summary: CompareSummary) -> LayoutDOM | None:
    """Each measured block's medians over time, in the order they ran (A B B A ...)."""
    blocks = _blocks(summary)
    if not blocks:
        return None
    t0 = blocks[0][1].start
    fig = _figure("Blocks over time: median per block", "seconds since the first block", "ms",
                  height=300)  # fmt: skip
    for side, color in (("A", A_COLOR), ("B", B_COLOR)):
        mine = [(n, b) for n, b in blocks if n.startswith(side)]
        if not mine:
            continue
        source = ColumnDataSource(
            {
                "t": [(b.start + b.end) / 2 - t0 for _, b in mine],
                "left": [b.start - t0 for _, b in mine],
                "right": [b.end - t0 for _, b in mine],
                "p50": [_num(b.p50_ms) for _, b in mine],
                "ttft": [_num(b.ttft_p50_ms) for _, b in mine],
                "name": [n for n, _ in mine],
                "requests": [b.requests for _, b in mine],
                "failures": [b.failures for _, b in mine],
                "overload": [b.overload or "-" for _, b in mine],
            }
        )
        fig.segment(x0="left", y0="p50", x1="right", y1="p50", source=source, color=color,
                    line_width=3)  # fmt: skip
        e2e = fig.scatter("t", "p50", source=source, size=10, color=color,
                          legend_label=f"{side} e2e p50")  # fmt: skip
        fig.scatter("t", "ttft", source=source, size=9, marker="triangle", color=color, alpha=0.6,
                    legend_label=f"{side} ttft p50")  # fmt: skip
        fig.add_tools(
            HoverTool(
                renderers=[e2e],
                tooltips=[
                    ("block", "@name"),
                    ("e2e p50 / ttft p50", "@p50{0} / @ttft{0} ms"),
                    ("requests / failures", "@requests / @failures"),
                    ("overload check", "@overload"),
                ],
            )
        )
    fig.add_layout(fig.legend[0], "right")
    return _layout(fig)


def failures_chart(summary: CompareSummary) -> LayoutDOM | None:
    """Failures of each block, in the order they ran."""
    blocks = _blocks(summary)
    if not blocks:
        return None
    names = [n for n, _ in blocks]
    source = ColumnDataSource(
        {
            "name": names,
            "failures": [b.failures for _, b in blocks],
            "requests": [b.requests for _, b in blocks],
            "color": [A_COLOR if n.startswith("A") else B_COLOR for n in names],
        }
    )
    fig = _figure("Failures per block (in the order run)", "block", "failed requests", height=220,
                  x_range=names)  # fmt: skip
    bars = fig.vbar(x="name", top="failures", width=0.7, source=source, color="color")
    fig.add_tools(HoverTool(renderers=[bars], tooltips=[("block", "@name"),
                                                        ("failed", "@failures of @requests")]))  # fmt: skip
    fig.y_range.start = 0
    return _layout(fig)


def _ecdf(values: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    values = np.sort(values[~np.isnan(values)])
    n = len(values)
    if n > _ECDF_POINTS:
        probs = np.linspace(0, 1, _ECDF_POINTS)
        return np.quantile(values, probs), probs
    return values, np.arange(1, n + 1) / n


def ecdf_chart(
    records: pd.DataFrame, column_name: str, title: str, labels: Sequence[tuple[str, str, str]]
) -> LayoutDOM | None:
    """Overlaid ECDFs of one column of the successful requests, one line per version.

    ``labels``: (version value in the records, legend label, colour).
    """
    if records.empty or column_name not in records:
        return None
    fig = _figure(title, "ms", "share of successful requests at or below", height=280)
    drawn = False
    for version, label, color in labels:
        rows = records[(records["version"] == version) & (records["ok"] == 1)]
        xs, ys = _ecdf(rows[column_name].to_numpy(dtype=float))
        if len(xs) == 0:
            continue
        source = ColumnDataSource({"ms": xs, "share": ys})
        line = fig.step("ms", "share", source=source, mode="after", color=color, line_width=2,
                        legend_label=label)  # fmt: skip
        fig.add_tools(HoverTool(renderers=[line], tooltips=[(label, "@ms{0} ms: @share{0.0%}")],
                                mode="vline"))  # fmt: skip
        drawn = True
    if not drawn:
        return None
    fig.legend.location = "bottom_right"
    return _layout(fig)


# -- two discoveries -------------------------------------------------------------------


def two_runs_chart(runs: Sequence[tuple[str, DiscoverySummary]]) -> LayoutDOM | None:
    """Two (or more) discoveries on one chart: achieved req/s and p95 latency against users."""
    if not any(s.steps for _, s in runs):
        return None
    rps = _figure("Achieved req/s against users", "users", "req/s", height=280)
    lat = _figure("Latency p95 against users", "users", "ms", height=280, x_range=rps.x_range)
    for (label, summary), color in zip(
        runs, (A_COLOR, B_COLOR, "#2ca02c", "#9467bd"), strict=False
    ):
        source = _steps_source(summary)
        for fig, y in ((rps, "achieved"), (lat, "p95")):
            fig.line("users", y, source=source, color=color, line_width=2, legend_label=label)
            points = fig.scatter("users", y, source=source, size=10, fill_color="color",
                                 line_color=color, line_width=2)  # fmt: skip
            fig.add_tools(HoverTool(renderers=[points], tooltips=[("run", label), *_STEP_TIPS]))
        cap = summary.capacity
        if cap is not None:
            for fig in (rps, lat):
                fig.add_layout(Span(location=cap.users, dimension="height", line_color=color,
                                    line_dash="dashed", line_width=2))  # fmt: skip
    for fig in (rps, lat):
        fig.legend.location = "top_left"
    return column(rps, lat)
