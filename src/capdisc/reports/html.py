"""capdisc's own ``report.html``: one self-contained page of a run that a person would rather read.

Three pages, each a pure function of a finished summary and its records (nothing is
written here; :mod:`capdisc.rundir` writes the file):

- :func:`render_discovery_page`: a discovery (``batch``, ``tools``, ``stream``);
- :func:`render_compare_page`: a ``compare stream``;
- :func:`render_discoveries_page`: two discoveries side by side (``capdisc report A B``).

The page holds everything it shows: BokehJS is inlined (no network, no CDN), styles are
inline, and the charts' data travel inside the page, so it opens from a mail attachment.
The markup is in Jinja2 templates under ``reports/templates/``; the charts come from
:mod:`capdisc.reports.charts`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

import pandas as pd
from jinja2 import Environment, FunctionLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from capdisc.durations import format_duration
from capdisc.reports.formatting import format_ms, format_rps, slo_text
from capdisc.reports.server import compare_server_line, discovery_server_line, server_text
from capdisc.reports.terminal import (
    capacity_difference,
    capacity_line,
    step_summary,
    target_label,
)
from capdisc.schema import CompareSummary, DiscoverySummary, StepResult, Summary

__all__ = [
    "STOP_WORDS",
    "render_compare_page",
    "render_discoveries_page",
    "render_discovery_page",
]

# Why a run ended, in words a reader who did not run it understands.
STOP_WORDS = {
    "max_users": "it reached --max-users with every step passing",
    "slo": "a step failed its limits (the climb ends at the first failing level)",
    "failure_threshold": "the failure threshold stopped it at once",
    "interrupted": "it was interrupted (Ctrl+C or a signal); everything measured is reported",
    "duration": "the planned duration ended",
    "client_bound": "capdisc itself was the limit (client-bound): no server verdict",
}


def _load_template(name: str) -> str:
    return (files("capdisc.reports") / "templates" / name).read_text(encoding="utf-8")


@cache
def _environment() -> Environment:
    return Environment(
        loader=FunctionLoader(_load_template),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@cache
def _bokeh_js() -> Markup:
    from bokeh.resources import Resources

    # Only the core bundle: the pages use plots, no widgets, tables or maths.
    return Markup(Resources(mode="inline", components=["bokeh"]).render_js())


def _charts(charts: dict[str, Any]) -> tuple[Markup, dict[str, Markup]]:
    """The one script that draws every chart, and each chart's div (None: left out)."""
    from bokeh.embed import components

    drawn = {name: chart for name, chart in charts.items() if chart is not None}
    if not drawn:
        return Markup(""), {}
    script, divs = components(drawn)
    return Markup(script), {name: Markup(div) for name, div in divs.items()}


def _render(template: str, charts: dict[str, Any], **context: Any) -> str:
    script, divs = _charts(charts)
    page = _environment().get_template(template)
    return page.render(bokeh_js=_bokeh_js(), charts_script=script, charts=divs, **context)


@dataclass(frozen=True)
class _StepRow:
    index: int
    phase: str
    users: int
    offered: str
    achieved: str
    requests: int
    failures: int
    fail_pct: str
    p50: str
    p95: str
    p99: str
    verdict: str
    short: str
    reasons: list[str]
    server: str


def _step_rows(steps: Sequence[StepResult]) -> list[_StepRow]:
    from capdisc.reports.charts import step_verdict

    return [
        _StepRow(
            index=s.index,
            phase=s.phase,
            users=s.users,
            offered=format_rps(s.offered_rps),
            achieved=format_rps(s.achieved_rps),
            requests=s.requests,
            failures=s.failures,
            fail_pct=f"{s.failure_rate:.1f}%",
            p50=format_ms(s.p50_ms),
            p95=format_ms(s.p95_ms),
            p99=format_ms(s.p99_ms),
            verdict=step_verdict(s),
            short=step_summary(s),
            reasons=list(s.reasons),
            server=server_text(s.server) if s.server is not None else "",
        )
        for s in steps
    ]


def _stopped(summary: Summary) -> str:
    words = STOP_WORDS.get(summary.stop_reason, summary.stop_reason)
    detail = summary.stop_detail
    # The detail of a climb's end repeats the words; a stop's says what stopped it.
    if not detail or summary.stop_reason in ("max_users", "slo"):
        return words
    return f"{words} ({detail})"


def _command(summary: Summary) -> str:
    return summary.command or ""


def _tiers(summary: DiscoverySummary) -> list[dict[str, Any]]:
    """SLO tiers when the summary has them (``tiers``: one capacity per tier)."""
    tiers = getattr(summary, "tiers", None) or []
    rows = []
    for tier in tiers:
        data = tier.model_dump() if hasattr(tier, "model_dump") else dict(tier)
        limits = data.get("limits")
        if isinstance(limits, dict):
            limits = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                               for k, v in limits.items() if v is not None)  # fmt: skip
        rows.append(
            {
                "limits": str(limits or ""),
                "users": data.get("users"),
                "rps": "-" if data.get("rps") is None else format_rps(float(data["rps"])),
                "confirmed": data.get("confirmed"),
            }
        )
    return rows


def _settings(summary: DiscoverySummary) -> list[tuple[str, str]]:
    rows = [
        ("target", target_label(summary.target)),
        ("URL", summary.target.url),
        ("started / finished", f"{summary.started_at} / {summary.finished_at}"),
        ("interval (pacing)", format_duration(summary.interval_s)),
        ("step measured", format_duration(summary.step_s) if summary.step_s else "-"),
        ("failure threshold", str(summary.failure_threshold or "off")),
    ]
    if summary.slo is not None:
        rows.append(("SLO", slo_text(summary.slo)))
    if summary.tools is not None:
        rows.append(("tools per task", f"{summary.tools.per_task} ({summary.tools.orchestration})"))
    for server in summary.servers:
        rows.append(("server metrics", f"{server.label} at {server.url}, {server.scrapes} scrapes"))
    line = discovery_server_line(summary)
    if line is not None:
        rows.append(("server figures", line))
    return rows


def _client_rows(summary: Summary) -> list[tuple[str, str]]:
    from capdisc.reports.client import client_line

    client = summary.client
    if client is None:
        return []
    rows = [("summary", client_line(client))]
    for name, limit in sorted(client.limits.items()):
        rows.append((f"limit {name}", f"{limit:g}"))
    if client.bound:
        rows.append(("client-bound", ", ".join(client.bound)))
    return rows


def render_discovery_page(
    summary: DiscoverySummary, records: pd.DataFrame, client: pd.DataFrame | None
) -> str:
    """The page of one discovery: headline, charts, steps with reasons, client, settings."""
    from capdisc.reports import charts

    cap = summary.capacity
    content = {
        "capacity": charts.capacity_chart(summary),
        "tokens": charts.tokens_chart(summary) if summary.strategy == "stream" else None,
        "timeline": charts.timeline_chart(records, summary),
        "client": charts.client_chart(client, summary.client.limits if summary.client else {}),
    }
    return _render(
        "discovery.html.j2",
        content,
        title=f"capdisc discover {summary.strategy}: {target_label(summary.target)}",
        found=cap is not None,
        headline=capacity_line(summary),
        capacity=cap,
        capacity_rps=format_rps(cap.rps) if cap else "",
        fail_rps=format_rps(cap.fail_rps) if cap and cap.fail_rps is not None else "",
        stopped=_stopped(summary),
        tiers=_tiers(summary),
        steps=_step_rows(summary.steps),
        server_column=any(s.server is not None for s in summary.steps),
        settings=_settings(summary),
        client_rows=_client_rows(summary),
        warnings=summary.warnings,
        command=_command(summary),
        summary=summary,
    )


_VERDICT_WORDS = {
    "b_faster": "B is faster",
    "b_slower": "B is slower",
    "equivalent": "A and B are equivalent",
    "inconclusive": "inconclusive",
    "no_difference": "no difference",
}


def render_compare_page(
    summary: CompareSummary, records: pd.DataFrame, client: pd.DataFrame | None
) -> str:
    """The page of a comparison: verdict, forest plot, blocks, distributions, checks."""
    from capdisc.reports import charts

    labels = [("a", f"A: {summary.a.label}", charts.A_COLOR),
              ("b", f"B: {summary.b.label}", charts.B_COLOR)]  # fmt: skip
    content = {
        "forest": charts.forest_chart(summary),
        "blocks": charts.blocks_chart(summary),
        "e2e": charts.ecdf_chart(records, "duration_ms", "End-to-end time: ECDF", labels),
        "ttft": charts.ecdf_chart(records, "ttft_ms", "Time to first token: ECDF", labels),
        "failures": charts.failures_chart(summary),
        "client": charts.client_chart(client, summary.client.limits if summary.client else {}),
    }
    metrics = [
        {
            "name": m.metric,
            "judged": m.judged,
            "a": "-" if m.a is None else f"{m.a:,.1f}",
            "b": "-" if m.b is None else f"{m.b:,.1f}",
            "change": "-" if m.change is None else f"{m.change:+.1f} {m.unit}",
            "ci": "-" if m.ci95 is None else f"[{m.ci95[0]:+.1f}, {m.ci95[1]:+.1f}]",
            "margin": f"± {m.margin:g} {m.unit}",
            "verdict": m.verdict,
            "note": m.note,
        }
        for m in summary.diff.metrics.values()
    ]
    versions = [
        {
            "side": side.upper(),
            "label": v.label,
            "requests": v.requests,
            "failures": v.failures,
            "p50": format_ms(v.p50_ms),
            "p95": format_ms(v.p95_ms),
            "ttft": format_ms(v.ttft_p50_ms),
            "offered": "-" if v.offered_rps is None else format_rps(v.offered_rps),
            "achieved": "-" if v.achieved_rps is None else format_rps(v.achieved_rps),
            "url": v.target.url if v.target else (v.run_dir or "-"),
        }
        for side, v in (("a", summary.a), ("b", summary.b))
    ]
    load = summary.load
    return _render(
        "compare.html.j2",
        content,
        title=f"capdisc compare stream: {summary.a.label} vs {summary.b.label}",
        verdict=summary.verdict,
        verdict_words=_VERDICT_WORDS.get(summary.verdict, summary.verdict),
        verdict_reason=summary.verdict_reason,
        decided_by=summary.decided_by,
        gate=summary.gate,
        gate_reason=summary.gate_reason,
        stopped=_stopped(summary),
        metrics=metrics,
        versions=versions,
        load_text=(
            f"{load.users} users, one task every {format_duration(load.interval_s)} each, "
            f"{format_duration(load.duration_s)}, {load.blocks} block pair(s), "
            f"order {load.order}, temperature {load.temperature:g}"
        ),
        load_reasons=summary.load_reasons,
        overloaded=[s.upper() for s in summary.overloaded],
        broken=(summary.broken or "").upper(),
        client_rows=_client_rows(summary),
        server_line=compare_server_line(summary) or "",
        slo=slo_text(summary.slo) if summary.slo else "",
        warnings=summary.warnings,
        command=_command(summary),
        summary=summary,
    )


def render_discoveries_page(runs: Sequence[tuple[str, DiscoverySummary]]) -> str:
    """Two discoveries side by side: each capacity, the difference, both curves on one chart."""
    from capdisc.reports import charts

    rows = []
    for label, summary in runs:
        cap = summary.capacity
        rows.append(
            {
                "label": label,
                "strategy": summary.strategy,
                "target": target_label(summary.target),
                "started": summary.started_at,
                "users": ("at least " if cap and cap.at_least else "") + str(cap.users)
                if cap
                else "not found",
                "rps": format_rps(cap.rps) if cap else "-",
                "p95": format_ms(cap.p95_ms) if cap else "-",
                "bracket": (
                    f"below {cap.fail_users} users" if cap and cap.fail_users is not None else "-"
                ),
                "confirmed": _yes_no(cap.confirmed if cap else None),
                "stopped": _stopped(summary),
            }
        )
    difference = capacity_difference(runs)
    return _render(
        "discoveries.html.j2",
        {"curves": charts.two_runs_chart(runs)},
        title="capdisc: " + " vs ".join(label for label, _ in runs),
        runs=rows,
        difference=difference,
    )


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")
