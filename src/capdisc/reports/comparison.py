"""The words and tables of a comparison, shared by the terminal and the markdown section.

Everything here reads a finished :class:`~capdisc.schema.CompareSummary`: the verdict
with the metric that decided it, why, the margin and the minimum detectable effect,
the gate, the A | B | diff table and the per-metric table (each metric's change, 95%
interval, margin and verdict). Schema-1 and schema-2 summaries read as they did.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from capdisc.durations import format_duration
from capdisc.metrics.decision import METRIC_LABELS, metric_text
from capdisc.reports.formatting import (
    MISSING,
    format_int,
    format_ms,
    format_p_value,
    format_pct,
    format_rps,
    format_share,
    format_tps,
    goodput_text,
    slo_text,
)
from capdisc.reports.server import compare_server_line
from capdisc.schema import CompareSummary, VersionStats
from capdisc.verdicts import METRICS, MetricDiff

__all__ = [
    "compare_rows",
    "load_line",
    "metric_rows",
    "regression_line",
    "render_comparison",
    "statistics_line",
    "verdict_head",
    "verdict_line",
]

_HEADS = {
    "b_faster": "B is faster",
    "b_slower": "B is slower",
    "inconclusive": "inconclusive",
    "no_difference": "no significant difference",
}
_STYLES = {"b_faster": "bold green", "b_slower": "bold red"}


def _ci(ci: tuple[float, float] | None, unit: str = "%") -> str:
    if ci is None:
        return MISSING
    return f"{format_pct(ci[0], unit=unit)} .. {format_pct(ci[1], unit=unit)}"


def verdict_head(summary: CompareSummary) -> str:
    """``B is faster``, ``equivalent within ±2%``, ``inconclusive``, ..."""
    if summary.verdict == "equivalent":
        if summary.diff.metrics:
            return "equivalent within the margins"
        return f"equivalent within \u00b1{summary.diff.margin_pct or 0:g}%"
    return _HEADS[summary.verdict]


def verdict_line(summary: CompareSummary) -> str:
    """``Verdict: B is faster: median -18.2% (95% CI -20.1% .. -16.0%)``.

    (Negative numbers are printed with a real minus sign, U+2212.) A schema-1 summary
    also shows its p-value, which then carried the verdict.
    """
    diff = summary.diff
    head = verdict_head(summary)
    if diff.metrics:  # schema 3: the metric (or check) that decided
        decided = diff.metrics.get(summary.decided_by or "")
        if decided is not None:
            return f"Verdict: {head}: {metric_text(decided)}"
        if summary.decided_by and summary.verdict_reason:  # a check: broken, overload, ...
            return f"Verdict: {head}: {summary.verdict_reason.split('; ')[0]}"
        return f"Verdict: {head}"
    if diff.p50_pct is None:
        return f"Verdict: {head}: no median to compare"
    text = f"Verdict: {head}: median {format_pct(diff.p50_pct)}"
    if diff.p50_ci95_pct is None:
        return text + " (no interval: too few block pairs or samples)"
    text += f" (95% CI {_ci(diff.p50_ci95_pct)})"
    if summary.verdict == "no_difference" or diff.design is None:
        text += f", {format_p_value(diff.p_value)}"
    return text


def statistics_line(summary: CompareSummary) -> str:
    """Why the verdict, the margin, the minimum detectable effect and the failure rates."""
    diff = summary.diff
    parts = [f"Why: {summary.verdict_reason}"] if summary.verdict_reason else []
    if diff.design == "paired":
        parts.append(f"{diff.pairs} A B B A block pairs")
    elif diff.design == "unpaired":
        parts.append(f"{diff.blocks_a} blocks of A against {diff.blocks_b} of B, unpaired")
    if diff.margin_pct is not None:
        parts.append(f"margin \u00b1{diff.margin_pct:g}%")
    if diff.mde_pct is not None:
        parts.append(f"minimum detectable effect \u00b1{diff.mde_pct:.1f}% (80% power)")
    if diff.failure_rate_pts is not None:
        a, b = summary.a, summary.b
        parts.append(
            f"failures A {_rate(a)}, B {_rate(b)} ({format_pct(diff.failure_rate_pts, unit=' pt')}, "
            f"95% CI {_ci(diff.failure_rate_ci95_pts, ' pt')})"
        )
    if diff.design is not None and diff.p_value is not None:
        parts.append(f"request-level Mann-Whitney {format_p_value(diff.p_value)} (information)")
    return "; ".join(parts)


def _rate(v: VersionStats) -> str:
    return format_share(v.failures / v.requests) if v.requests else MISSING


def regression_line(summary: CompareSummary) -> str:
    """What the gate decided, with its exit code (only when a gate was asked for)."""
    if summary.diff.metrics and summary.gate is not None:  # schema 3
        heads = {
            "regression": "Regression (exit 1)",
            "broken": "Broken baseline (exit 1)",
            "pass": "No regression (exit 0)",
            "inconclusive": "Inconclusive (exit 5)",
        }
        limits = ", ".join(
            f"{METRIC_LABELS.get(m.metric, m.metric)} {m.gate_limit:g}{_unit(m)}"
            for m in _gated(summary)
        )
        return f"{heads[summary.gate]}: {summary.gate_reason} (limits: {limits})"
    limit = f"{summary.regression_limit_pct or 0:g}%"
    diff = summary.diff
    if summary.gate is None:  # schema 1
        if summary.regression:
            return f"Regression: B is slower than A by more than the {limit} limit"
        return f"No regression beyond the {limit} limit"
    if summary.gate == "regression":
        ci = diff.p50_ci95_pct
        if ci is not None and ci[0] > (summary.regression_limit_pct or 0):
            return (
                f"Regression (exit 1): B is slower than A by more than the {limit} limit "
                f"(95% CI {_ci(ci)})"
            )
        return f"Regression (exit 1): B fails more often than A ({_rate(summary.b)} against {_rate(summary.a)})"
    if summary.gate == "pass":
        return (
            f"No regression (exit 0): B is at most {limit} slower (95% CI {_ci(diff.p50_ci95_pct)})"
        )
    why = (
        "the load was unequal"
        if summary.load_reasons
        else "no interval"
        if diff.p50_ci95_pct is None
        else f"the interval {_ci(diff.p50_ci95_pct)} spans the {limit} limit"
    )
    return f"Inconclusive (exit 5): {why}: run longer"


def _unit(metric: MetricDiff) -> str:
    return " pt" if metric.unit == "pt" else "%"


def _gated(summary: CompareSummary) -> list[MetricDiff]:
    return [m for m in summary.diff.metrics.values() if m.judged and m.gate_limit is not None]


def _figure(metric: MetricDiff, value: float | None) -> str:
    if value is None:
        return MISSING
    if metric.metric == "failures":
        return f"{value:.2f}%"
    if metric.metric == "output_tokens":
        return f"{value:.1f}"
    return format_ms(value)


_METRIC_VERDICTS = {
    "faster": "B faster",
    "slower": "B slower",
    "shorter": "B shorter",
    "longer": "B longer",
}


def metric_rows(summary: CompareSummary) -> list[tuple[str, str, str, str, str, str]]:
    """The per-metric table (schema 3): metric (``*`` decides the verdict), A, B, change with
    its 95% interval, margin, verdict. Empty for an older summary."""
    rows = []
    for name in METRICS:
        metric = summary.diff.metrics.get(name)
        if metric is None:
            continue
        unit = _unit(metric)
        label = METRIC_LABELS.get(name, name) + (" /token" if metric.per_token else "")
        change = format_pct(metric.change, unit=unit, digits=2 if unit == " pt" else 1)
        if metric.ci95 is not None:
            change += f" [{_ci(metric.ci95, unit).replace(' .. ', ', ')}]"
        verdict = _METRIC_VERDICTS.get(metric.verdict, metric.verdict)
        if metric.note.startswith("not compared"):
            verdict = "not compared"
        rows.append(
            (
                ("* " if metric.judged else "  ") + label,
                _figure(metric, metric.a),
                _figure(metric, metric.b),
                change,
                f"\u00b1{metric.margin:g}{unit}",
                verdict,
            )
        )
    return rows


def load_line(summary: CompareSummary) -> str:
    """The fixed load both versions got, in one line."""
    load = summary.load
    offered = load.users / load.interval_s if load.interval_s > 0 else 0.0
    line = (
        f"Load: {load.users} users, one request each every {load.interval_s:g} s "
        f"({format_rps(offered)} req/s offered), {format_duration(load.duration_s)} per version, "
        f"temperature {load.temperature:g}"
    )
    if load.order == "abba":
        line += f", {load.blocks} A B B A block pairs"
    elif load.blocks > 1:
        line += f", {load.blocks} blocks ({load.order})"
    return line


def _diff_pct(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or a <= 0:
        return None
    return (b - a) / a * 100.0


def compare_rows(summary: CompareSummary) -> list[tuple[str, str, str, str]]:
    """The rows of the A | B | diff table, formatted (shared with the markdown report).

    The p50, p95, ttft p50 and tpot p50 changes are the paired estimates (failures
    ranked slowest) when the summary has them; the others compare the two columns.
    """
    a, b, diff = summary.a, summary.b, summary.diff

    def row(
        name: str, get_a: float | None, get_b: float | None, pct: float | None = None
    ) -> tuple[str, str, str, str]:
        change = pct if pct is not None else _diff_pct(get_a, get_b)
        return (name, format_ms(get_a), format_ms(get_b), format_pct(change))

    def chunks(v: VersionStats) -> str:
        return MISSING if v.chunks_p50 is None else f"{v.chunks_p50:g}"

    def achieved(v: VersionStats) -> str:
        if v.achieved_rps is None or v.offered_rps is None:
            return MISSING
        return f"{format_rps(v.achieved_rps)} of {format_rps(v.offered_rps)}"

    ta, tb = a.tokens, b.tokens
    late_diff = 100 * (b.pacing.late_share - a.pacing.late_share)
    slo_rows: list[tuple[str, str, str, str]] = []
    if summary.slo is not None and a.goodput is not None and b.goodput is not None:
        points = (
            format_pct(b.goodput.pct - a.goodput.pct, unit=" pt")
            if a.goodput.pct is not None and b.goodput.pct is not None
            else ""
        )
        slo_rows.append(("goodput", goodput_text(a.goodput), goodput_text(b.goodput), points))
    return [
        ("requests", format_int(a.requests), format_int(b.requests), ""),
        (
            "failures",
            f"{format_int(a.failures)} ({_rate(a)})",
            f"{format_int(b.failures)} ({_rate(b)})",
            format_pct(diff.failure_rate_pts, unit=" pt")
            if diff.failure_rate_pts is not None
            else "",
        ),
        row("p50", a.p50_ms, b.p50_ms, diff.p50_pct),
        row("p95", a.p95_ms, b.p95_ms, diff.p95_pct),
        row("p99", a.p99_ms, b.p99_ms),
        row("ttfb p50", ta.ttfb.p50_ms, tb.ttfb.p50_ms),
        row("ttft p50", a.ttft_p50_ms, b.ttft_p50_ms, diff.ttft_p50_pct),
        row("ttft p95", a.ttft_p95_ms, b.ttft_p95_ms),
        row("tpot p50", ta.tpot.p50_ms, tb.tpot.p50_ms, diff.tpot_p50_pct),
        row("tpot p95", ta.tpot.p95_ms, tb.tpot.p95_ms),
        row("itl p50", ta.itl.p50_ms, tb.itl.p50_ms),
        row("itl max p95", ta.itl_max.p95_ms, tb.itl_max.p95_ms),
        (
            "output tok/s",
            format_tps(ta),
            format_tps(tb),
            format_pct(_diff_pct(ta.output_tokens_per_s, tb.output_tokens_per_s)),
        ),
        ("chunks p50", chunks(a), chunks(b), ""),
        ("req/s achieved", achieved(a), achieved(b), ""),
        (
            "late %",
            format_share(a.pacing.late_share),
            format_share(b.pacing.late_share),
            format_pct(late_diff, unit=" pt") if a.pacing.tasks and b.pacing.tasks else "",
        ),
        (
            "new conn %",
            format_share(a.connections.new_share) if a.connections.requests else MISSING,
            format_share(b.connections.new_share) if b.connections.requests else MISSING,
            "",
        ),
        (
            "reconnects",
            format_int(a.connections.reconnects),
            format_int(b.connections.reconnects),
            "",
        ),
        *slo_rows,
    ]


def render_comparison(summary: CompareSummary, console: Console) -> None:
    """Print the A | B | diff table of a comparison, its verdict and the gate."""
    console.print(load_line(summary), markup=False, soft_wrap=True)
    if summary.slo is not None:
        console.print(f"SLO: {slo_text(summary.slo)}", markup=False, soft_wrap=True)
    table = Table(title="compare stream", title_justify="left")
    table.add_column("")
    # Labels come from users (profile names, URLs): never read them as rich markup.
    table.add_column(Text(f"A: {summary.a.label}"), justify="right")
    table.add_column(Text(f"B: {summary.b.label}"), justify="right")
    table.add_column("B vs A", justify="right")
    for cells in compare_rows(summary):
        table.add_row(*cells)
    console.print(table)
    metrics = metric_rows(summary)
    if metrics:
        per_metric = Table(
            title="B vs A per metric (* decides the verdict; failures ranked slowest)",
            title_justify="left",
        )
        for heading in ("metric", "A", "B", "change [95% CI]", "margin", "verdict"):
            per_metric.add_column(
                heading, justify="left" if heading in ("metric", "verdict") else "right"
            )
        for metric_cells in metrics:
            per_metric.add_row(*metric_cells)
        console.print(per_metric)
    style = _STYLES.get(summary.verdict, "bold")
    console.print(Text(verdict_line(summary), style=style), markup=False, soft_wrap=True)
    server = compare_server_line(summary)
    if server is not None:
        console.print(server, markup=False, highlight=False, soft_wrap=True)
    details = statistics_line(summary)
    if details:
        console.print(details, markup=False, soft_wrap=True)
    if summary.regression_limit_pct is not None or summary.gate is not None:
        style = "bold red" if summary.regression else ""
        console.print(regression_line(summary), style=style, markup=False, soft_wrap=True)
