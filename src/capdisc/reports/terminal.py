"""The terminal summary of a run: rich tables and the one-line result a user looks for first.

Renders a finished ``summary.json`` model (never raw records), so ``capdisc report``
can show a saved run exactly as it was shown live. Numbers are written by
:mod:`capdisc.reports.formatting`.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from capdisc.durations import format_duration
from capdisc.reports.formatting import (
    MISSING,
    format_int,
    format_ms,
    format_percent,
    format_rps,
    format_share,
    format_tps,
    goodput_text,
    slo_text,
)
from capdisc.reports.server import discovery_server_line
from capdisc.schema import (
    Capacity,
    CompareSummary,
    DiscoverySummary,
    Goodput,
    StepResult,
    TargetInfo,
)

__all__ = [
    "capacity_line",
    "render_compare",
    "render_discovery",
    "render_summary",
    "target_label",
    "tiers_table",
]

# -- discovery -------------------------------------------------------------------------


def capacity_line(summary: DiscoverySummary) -> str:
    """``Capacity: 18 users, 9.0 req/s, p50 452 ms, p95 497 ms (stopped: max_users)``."""
    stopped = f"stopped: {summary.stop_reason}"
    if summary.stop_detail:
        stopped += f", {summary.stop_detail}"
    cap = summary.capacity
    if cap is None:
        return f"Capacity not found: {_why_not_found(summary)} ({stopped})"
    users = f"at least {cap.users}" if cap.at_least else str(cap.users)
    return (
        f"Capacity: {users} users, {format_rps(cap.rps)} req/s, "
        f"p50 {format_ms(cap.p50_ms)}, p95 {format_ms(cap.p95_ms)}{_sample(summary)}"
        f"{_interval(cap, summary.stop_reason)} ({stopped})"
    )


def _sample(summary: DiscoverySummary) -> str:
    """`` (n=60)``: the successes the capacity's percentiles are over."""
    cap = summary.capacity
    if cap is not None and cap.n is not None:
        return f" (n={cap.n})"
    step = next((s for s in reversed(summary.steps) if cap and s.users == cap.users), None)
    return "" if step is None else f" (n={step.requests - step.failures})"


def _slo_cell(good: Goodput | None) -> str:
    """The TTFT at the SLO's percentile and the requests it is over: ``412 ms n=63``."""
    if good is None:
        return format_ms(None)
    return format_ms(good.ttft_ms) + (f" n={good.n}" if good.n else "")


def _interval(cap: Capacity, stop_reason: str = "") -> str:
    """``; confirmed, below 52 users (26.0 req/s offered) that failed`` (schema 2 only)."""
    if cap.confirmed is None:
        return ""
    how = "confirmed (passed twice)" if cap.confirmed else "NOT confirmed (passed once)"
    if cap.fail_users is None or cap.fail_rps is None:
        if stop_reason == "failure_threshold":
            return f"; {how}, the failure threshold stopped the run before a level failed"
        return f"; {how}, no level failed"
    return (
        f"; {how}, below {cap.fail_users} users ({format_rps(cap.fail_rps)} req/s offered), "
        f"which {'failed' if cap.fail_verdict == 'fail' else 'stayed inconclusive'}"
    )


def _longer_windows(summary: DiscoverySummary) -> str:
    """Said when a level was held longer than a step so its SLO percentile could be bounded."""
    step_s = summary.step_s or 0.0
    longer = [
        s for s in summary.steps if s.extensions == 0 and (s.measured_s or 0.0) > step_s + 1e-6
    ]
    if summary.slo is None or not longer:
        return ""
    return (
        "; levels with few users were held longer, until their window had the requests "
        f"a p{summary.slo.percentile:g} bound needs"
    )


def tiers_table(summary: DiscoverySummary) -> Table | None:
    """With SLO tiers: one line per tier, its limits and the capacity under them."""
    if not summary.tiers:
        return None
    table = Table(title="Capacity per SLO tier", title_justify="left")
    for header in ("tier", "limits", "users", "req/s", "confirmed", "failed at"):
        table.add_column(header, justify="left" if header in ("limits", "confirmed") else "right")
    for number, tier in enumerate(summary.tiers, start=1):
        users = "-" if tier.users is None else str(tier.users)
        if tier.at_least:
            users = f">= {users}"
        confirmed = "-" if tier.confirmed is None else "yes" if tier.confirmed else "NO (once)"
        table.add_row(
            str(number),
            slo_text(tier.limits.model_copy(update={"min_goodput_pct": None})),
            users,
            format_rps(tier.rps) if tier.rps is not None else "-",
            confirmed,
            "-" if tier.fail_users is None else str(tier.fail_users),
        )
    return table


def _why_not_found(summary: DiscoverySummary) -> str:
    if any(s.client_bound for s in summary.steps):
        return "client-bound"
    if not summary.steps:
        return "no step completed"
    first = min(summary.steps, key=lambda s: s.users)
    if not any(s.passed for s in summary.steps):
        why = "; ".join(first.reasons) or "it failed"
        return f"no step passed, the first ({first.users} users) failed: {why}"
    return "no passing step could be confirmed"


def _verdict_cell(step: StepResult) -> Text:
    if step.passed:
        return Text("\u2713", style="green")
    # A client-bound step is no server verdict, an inconclusive one not yet one: both are
    # marked apart from a failure.
    if step.client_bound:
        text = Text("!", style="yellow")
    elif step.verdict == "inconclusive":
        text = Text("?", style="yellow")
    else:
        text = Text("\u2717", style="red")
    if step.reasons:
        text.append(" " + "; ".join(step.reasons))
    return text


def target_label(target: TargetInfo) -> str:
    """How a target is named in titles: the profile and model, or the URL it was given."""
    where = "embedded simulator" if target.embedded else target.url
    name = f"profile {target.profile}, " if target.profile and target.profile != "custom" else ""
    return f"{name}{target.model} ({target.api}) at {where}"


def render_discovery(summary: DiscoverySummary, console: Console) -> None:
    """Print the steps of a discovery, the capacity line and the figures at stop."""
    table = Table(
        title=Text(f"discover {summary.strategy}: {target_label(summary.target)}"),
        title_justify="left",
    )
    for header in ("#", "phase", "users", "offered rps", "achieved rps", "requests"):
        table.add_column(header, justify="left" if header == "phase" else "right")
    for header in ("failures", "fail %", "p50", "p95", "late %"):
        table.add_column(header, justify="right")
    slo = summary.slo
    if slo is not None:
        table.add_column(f"ttft p{slo.percentile:g}", justify="right")
        table.add_column("goodput", justify="right")
    table.add_column("verdict", overflow="fold")
    for step in summary.steps:
        good = step.goodput
        slo_cells = (
            [_slo_cell(good), format_percent(good.pct if good else None)] if slo is not None else []
        )
        table.add_row(
            str(step.index),
            Text(step.phase),
            str(step.users),
            format_rps(step.offered_rps),
            format_rps(step.achieved_rps),
            format_int(step.requests),
            format_int(step.failures),
            f"{step.failure_rate:.1f}%",
            format_ms(step.p50_ms),
            format_ms(step.p95_ms),
            format_share(step.pacing.late_share),
            *slo_cells,
            _verdict_cell(step),
        )
    if summary.steps:
        console.print(table)
    else:
        console.print("No step completed.", markup=False, soft_wrap=True)

    style = "bold green" if summary.capacity else "bold red"
    # Result lines are soft-wrapped: the terminal folds them, a copy-paste gets one line.
    console.print(Text(capacity_line(summary), style=style), markup=False, soft_wrap=True)
    tiers = tiers_table(summary)
    if tiers is not None:
        console.print(tiers)
    server = discovery_server_line(summary)
    if server is not None:
        console.print(server, markup=False, highlight=False, soft_wrap=True)
    if slo is not None:
        line = f"SLO: {slo_text(slo)}"
        good = summary.capacity.goodput if summary.capacity else None
        if good is not None:
            line += f"; goodput at capacity {goodput_text(good)}"
        console.print(line, markup=False, soft_wrap=True)
    if summary.step_s is not None:
        console.print(
            f"Steps: measured {format_duration(summary.step_s)} each (a whole number of "
            f"{format_duration(summary.interval_s)} intervals), after all their users run; "
            "an inconclusive step is extended; requests belong to the step they started in"
            + _longer_windows(summary),
            markup=False,
            soft_wrap=True,
        )
    stop = summary.at_stop
    console.print(
        f"At stop: {stop.users} users, {format_int(stop.total_requests)} requests, "
        f"{stop.failure_rate:.1f}% failed, mean response time {format_ms(stop.avg_ms)}"
        + (
            f" ({format_int(stop.cut)} cut in flight by the stop, counted at their age so far: "
            "the mean is a lower bound)"
            if stop.cut
            else ""
        ),
        markup=False,
        soft_wrap=True,
    )
    if summary.pacing.tasks:
        pacing = summary.pacing
        console.print(
            f"Pacing: {format_share(pacing.late_share)} of {format_int(pacing.tasks)} tasks started late "
            f"(slip p95 {format_ms(pacing.slip_p95_ms)}, max {format_ms(pacing.slip_max_ms)})",
            markup=False,
            soft_wrap=True,
        )
    best = next(
        (
            s
            for s in summary.steps
            if summary.capacity and s.users == summary.capacity.users and s.passed
        ),
        None,
    )
    if best is not None and best.tokens.output_tokens_per_s is not None:
        tokens = best.tokens
        console.print(
            f"Tokens at capacity: {format_tps(tokens)} output tok/s"
            + (f", ttft p95 {format_ms(tokens.ttft.p95_ms)}" if tokens.ttft.p95_ms else "")
            + (f", tpot p95 {format_ms(tokens.tpot.p95_ms)}" if tokens.tpot.p95_ms else "")
            + (f" (n={tokens.requests})" if tokens.ttft.p95_ms or tokens.tpot.p95_ms else "")
            + (" (~ counted from events: the server sent no usage)" if tokens.estimated else ""),
            markup=False,
            soft_wrap=True,
        )
    counted = [step.connections for step in summary.steps if step.connections.requests]
    if counted:
        requests = sum(c.requests for c in counted)
        fresh = sum(c.new_share * c.requests for c in counted)
        reconnects = sum(c.reconnects for c in counted)
        console.print(
            f"Connections: {format_share(fresh / requests)} of measured requests opened a new "
            f"connection; {format_int(reconnects)} were sent again on a new one after the server "
            "had closed the kept one (per step in steps.csv)",
            markup=False,
            soft_wrap=True,
        )
    if summary.tools is not None:
        tools = summary.tools
        cv = MISSING if tools.duration_cv is None else f"{tools.duration_cv:.2f}"
        line = (
            f"Tools: {tools.per_task} per task ({tools.orchestration}-orchestrated), "
            f"{format_int(tools.tasks)} tasks, {format_int(tools.wrong_count)} wrong, duration CV {cv}"
        )
        if tools.round_p50_ms:
            line += ", round p50 " + " / ".join(format_ms(ms) for ms in tools.round_p50_ms)
        console.print(line, markup=False, soft_wrap=True)


# -- comparison ------------------------------------------------------------------------


def render_compare(summary: CompareSummary, console: Console) -> None:
    """Print a comparison: its table, verdict and gate (:mod:`capdisc.reports.comparison`)."""
    from capdisc.reports.comparison import render_comparison

    render_comparison(summary, console)


def render_summary(summary: DiscoverySummary | CompareSummary, console: Console) -> None:
    """Print any run's summary: a discovery or a comparison."""
    if isinstance(summary, CompareSummary):
        render_compare(summary, console)
    else:
        render_discovery(summary, console)
    if summary.client is not None:
        from capdisc.reports.client import client_line

        console.print(client_line(summary.client), markup=False, highlight=False, soft_wrap=True)
