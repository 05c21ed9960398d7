"""A comparison as a markdown section to paste into a pull request.

Same figures and wording as the terminal summary (shared from
:mod:`capdisc.reports.comparison`), laid out as a GitHub-flavoured table, then one
paragraph with the verdict, its interval, the margin and the minimum detectable
effect, and a note on the method, so a reviewer can judge the claim without running
anything.
"""

from __future__ import annotations

from capdisc.reports.comparison import (
    compare_rows,
    load_line,
    metric_rows,
    regression_line,
    verdict_head,
    verdict_line,
)
from capdisc.reports.formatting import format_p_value, format_pct
from capdisc.reports.server import compare_server_line
from capdisc.schema import CompareSummary

__all__ = ["compare_markdown"]


def _cell(text: str) -> str:
    # A label such as a URL may hold a pipe, which would split the table cell.
    return text.replace("|", "\\|").replace("\n", " ")


def _interval(ci: tuple[float, float] | None) -> str:
    return "no interval" if ci is None else f"{format_pct(ci[0])} .. {format_pct(ci[1])}"


def verdict_paragraph(summary: CompareSummary) -> str:
    """The verdict, the interval, the margin and the minimum detectable effect in one paragraph."""
    diff = summary.diff
    if diff.metrics:  # schema 3: every metric has its line in the table above
        text = f"**{_cell(verdict_line(summary))}.**"
        if summary.verdict_reason:
            text += f" Why: {_cell(summary.verdict_reason)}."
        if diff.design == "paired":
            text += f" From {diff.pairs} A B B A block pairs."
        elif diff.design == "unpaired":
            text += f" From {diff.blocks_a} blocks of A against {diff.blocks_b} of B, not paired."
        if diff.mde_pct is not None:
            text += (
                f" This run detects a change of the end-to-end median of \u00b1{diff.mde_pct:.1f}%"
                " or more with 80% power (its minimum detectable effect)."
            )
        return text
    text = f"**Verdict: {verdict_head(summary)}.**"
    if diff.p50_pct is None:
        text += " There is no median to compare (too few requests, or most of them failed)."
    else:
        text += (
            f" B's median end-to-end time differs from A's by {format_pct(diff.p50_pct)} "
            f"(95% CI {_interval(diff.p50_ci95_pct)}"
        )
        if diff.design == "paired":
            text += f", from {diff.pairs} A B B A block pairs)."
        elif diff.design == "unpaired":
            text += f", {diff.blocks_a} blocks of A against {diff.blocks_b} of B, not paired)."
        else:
            text += f", {format_p_value(diff.p_value)})."
    if diff.margin_pct is not None:
        text += f" The margin of equivalence is \u00b1{diff.margin_pct:g}%"
        if diff.mde_pct is not None:
            text += (
                f"; this run detects a change of \u00b1{diff.mde_pct:.1f}% or more "
                "with 80% power (its minimum detectable effect)"
            )
        else:
            text += "; with no interval, this run has no minimum detectable effect"
        text += "."
    if summary.verdict_reason:
        text += f" Why: {_cell(summary.verdict_reason)}."
    if diff.failure_rate_pts is not None:
        text += (
            f" Failure rate change: {format_pct(diff.failure_rate_pts, unit=' pt', digits=2)} "
            f"(95% CI {_interval(diff.failure_rate_ci95_pts).replace('%', ' pt')})."
        )
    return text


def compare_markdown(summary: CompareSummary) -> str:
    """The comparison as a PR-ready markdown section (title, load, table, verdict, method)."""
    a, b = summary.a, summary.b
    lines = [
        f"### Latency: {_cell(a.label)} (A) vs {_cell(b.label)} (B)",
        "",
        load_line(summary) + ".",
        "",
        f"| | A: {_cell(a.label)} | B: {_cell(b.label)} | B vs A |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {' | '.join(_cell(c) for c in row)} |" for row in compare_rows(summary)]
    metrics = metric_rows(summary)
    if metrics:
        lines += [
            "",
            "| metric (* decides) | A | B | change [95% CI] | margin | verdict |",
            "|---|---:|---:|---:|---:|---|",
        ]
        lines += [f"| {' | '.join(_cell(c.strip()) for c in row)} |" for row in metrics]
    lines += ["", verdict_paragraph(summary)]
    server = compare_server_line(summary)
    if server is not None:  # what the servers said of themselves, beside the verdict
        lines += ["", _cell(server) + "."]
    if summary.regression_limit_pct is not None or summary.gate is not None:
        lines += ["", _cell(regression_line(summary)) + "."]
    if summary.diff.design is None:  # schema 1
        method = (
            "end-to-end time of successful requests; the 95% CI of the median difference "
            "from a block bootstrap, the p-value from a two-sided Mann-Whitney U test"
        )
    else:
        method = (
            "each version runs in blocks, in A B then B A pairs, so a drift of the machine "
            "cancels; per pair and metric, the log ratio of B's to A's block figure (failed "
            "requests ranked slower than every success) is one observation, and the 95% "
            "interval is the t-interval of their mean; failure rates have their own interval "
            "in points. A metric is slower or faster when its interval lies beyond its margin, "
            "equivalent within it. B is slower when a judged metric is slower (failures "
            "first), faster when none is slower and one is faster. A load either side did not "
            "get (under 90% of the offered rate, over 10% of its tasks late, a queue building "
            "within its blocks) gives no latency verdict"
        )
    lines += [
        "",
        f"<sub>Method: {method}. Measured {summary.started_at} to {summary.finished_at} "
        "with capdisc.</sub>",
        "",
    ]
    return "\n".join(lines)
