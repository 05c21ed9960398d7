"""The terminal summary of a run: rich tables and the one-line result a user looks for first.

Renders a finished ``summary.json`` model (never raw records), so ``capdisc report``
can show a saved run exactly as it was shown live. Numbers are written by
:mod:`capdisc.reports.formatting`.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
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
    "capacity_difference",
    "capacity_line",
    "render_compare",
    "render_discovery",
    "render_summary",
    "render_two_runs",
    "step_summary",
    "steps_table",
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


# The short verdict of a step fits the 100-column table: its first reason up to the
# figure (the details after " (" or "; " are in report.html and --verbose).
_SHORT_REASON = 36


def step_summary(step: StepResult) -> str:
    """A step's verdict in a few words: ``pass``, or the deciding test and its figure.

    ``fail: p95 442 ms > SLO 400ms``, ``inconclusive: latency trend +31 ms/s [+2, +60]``,
    with ``(+2)`` when more reasons follow.
    """
    if step.passed:
        return "pass"
    word = "client-bound" if step.client_bound else (step.verdict or "fail")
    if not step.reasons:
        return word
    first = step.reasons[0]
    for cut in (" (", "; "):
        if cut in first:
            first = first[: first.index(cut)]
    if len(first) > _SHORT_REASON:
        first = first[: _SHORT_REASON - 1].rstrip() + "\u2026"
    more = f" (+{len(step.reasons) - 1})" if len(step.reasons) > 1 else ""
    return f"{word}: {first}{more}"


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
    short = step_summary(step)
    text.append(" " + short.split(": ", 1)[1] if ": " in short else "")
    return text


def _failures_cell(step: StepResult) -> str:
    if not step.failures:
        return "0"
    return f"{format_int(step.failures)} {step.failure_rate:.1f}%"


def steps_table(summary: DiscoverySummary, width: int = 100) -> Table:
    """One line per step within ``width`` columns: figures and a short verdict.

    The figures keep their width; the verdict gets the rest and ends in an ellipsis
    when it is longer (its whole text is in report.html and ``--verbose``). Offered
    req/s is users / interval, said in the title.
    """
    slo = summary.slo
    headers = ["#", "phase", "users", "req/s", "reqs", "failed", "p50", "p95", "late"]
    if slo is not None:
        headers += [f"ttft p{slo.percentile:g}", "good"]
    rows: list[list[str]] = []
    for step in summary.steps:
        good = step.goodput
        rows.append(
            [
                str(step.index),
                step.phase,
                str(step.users),
                format_rps(step.achieved_rps),
                format_int(step.requests),
                _failures_cell(step),
                format_ms(step.p50_ms),
                format_ms(step.p95_ms),
                format_share(step.pacing.late_share),
            ]
            + (
                [
                    _slo_cell(good),
                    format_percent(good.pct if good else None),
                ]
                if slo is not None
                else []
            )
        )
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    title = (
        f"discover {summary.strategy}: {target_label(summary.target)}; req/s achieved "
        f"(offered: users / {format_duration(summary.interval_s)})"
    )
    table = Table(
        title=Text(title),
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        padding=(0, 1, 0, 0),
    )
    for header, cell_width in zip(headers, widths, strict=True):
        table.add_column(header, justify="left" if header == "phase" else "right",
                         no_wrap=True, min_width=cell_width)  # fmt: skip
    # Each column is its width plus two spaces; the verdict gets what is left.
    rest = max(12, width - sum(w + 2 for w in widths) + 1)
    table.add_column("verdict", overflow="ellipsis", no_wrap=True, max_width=rest)
    for step, cells in zip(summary.steps, rows, strict=True):
        table.add_row(*cells[:1], Text(cells[1]), *cells[2:], _verdict_cell(step))
    return table


def print_step_reasons(summary: DiscoverySummary, console: Console) -> None:
    """``--verbose``: every reason of every step that did not pass, one line each."""
    for step in summary.steps:
        if step.passed or not step.reasons:
            continue
        head = f"Step {step.index} ({step.users} users, {step.verdict or 'fail'}): "
        for reason in step.reasons:
            console.print(head + reason, markup=False, highlight=False, soft_wrap=True)
            head = " " * len(head)


def target_label(target: TargetInfo) -> str:
    """How a target is named in titles: the profile and model, or the URL it was given."""
    where = "embedded simulator" if target.embedded else target.url
    name = f"profile {target.profile}, " if target.profile and target.profile != "custom" else ""
    return f"{name}{target.model} ({target.api}) at {where}"


def render_discovery(summary: DiscoverySummary, console: Console, verbose: bool = False) -> None:
    """Print the steps of a discovery, the capacity line and the figures at stop.

    ``verbose``: every reason of each step that did not pass, below the table.
    """
    slo = summary.slo
    if summary.steps:
        console.print(steps_table(summary, console.width))
        if verbose:
            print_step_reasons(summary, console)
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


def render_summary(
    summary: DiscoverySummary | CompareSummary, console: Console, verbose: bool = False
) -> None:
    """Print any run's summary: a discovery or a comparison (``verbose``: every reason)."""
    if isinstance(summary, CompareSummary):
        render_compare(summary, console)
    else:
        render_discovery(summary, console, verbose)
    if summary.client is not None:
        from capdisc.reports.client import client_line

        console.print(client_line(summary.client), markup=False, highlight=False, soft_wrap=True)


# -- two discoveries side by side (capdisc report RUN_A RUN_B) -------------------------


def capacity_difference(runs: Sequence[tuple[str, DiscoverySummary]]) -> str:
    """``b minus a: +2 users, +2.0 req/s (+12.5%)``, said so when a side is a lower bound."""
    if len(runs) != 2:
        return ""
    (la, a), (lb, b) = runs
    if a.capacity is None or b.capacity is None:
        return "No difference can be given: a run found no capacity."
    du = b.capacity.users - a.capacity.users
    dr = b.capacity.rps - a.capacity.rps
    pct = f" ({100 * dr / a.capacity.rps:+.1f}%)" if a.capacity.rps else ""
    hedge = ""
    if a.capacity.at_least or b.capacity.at_least:
        hedge = " (a lower bound on at least one side: no level failed there)"
    return f"{lb} minus {la}: {du:+d} users, {dr:+.1f} req/s{pct}{hedge}"


def render_two_runs(runs: Sequence[tuple[str, DiscoverySummary]], console: Console) -> None:
    """Each run's capacity line, then the difference."""
    for label, summary in runs:
        console.print(f"{label}: {capacity_line(summary)}", markup=False, soft_wrap=True)
    console.print(Text(capacity_difference(runs), style="bold"), markup=False, soft_wrap=True)
