"""A comparison as a markdown section to paste into a pull request.

Same figures and wording as the terminal summary (shared from
:mod:`capdisc.reports.comparison`), laid out as a GitHub-flavoured table, then one
paragraph with the verdict, its interval, the margin and the minimum detectable
effect, and a note on the method, so a reviewer can judge the claim without running
anything.
"""

from __future__ import annotations

from capdisc.reports.comparison import compare_rows, load_line, regression_line, verdict_head
from capdisc.reports.terminal import format_p_value, format_pct
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
    lines += ["", verdict_paragraph(summary)]
    if summary.regression_limit_pct is not None:
        lines += ["", _cell(regression_line(summary)) + "."]
    if summary.diff.design is None:  # schema 1
        method = (
            "end-to-end time of successful requests; the 95% CI of the median difference "
            "from a block bootstrap, the p-value from a two-sided Mann-Whitney U test"
        )
    else:
        method = (
            "each version runs in blocks, in A B then B A pairs, so a drift of the machine "
            "cancels; per pair, the log ratio of B's to A's median end-to-end time (failed "
            "requests ranked slower than every success) is one observation, and the 95% "
            "interval is the t-interval of their mean. Equivalent: the interval lies within "
            "the margin. A load either side did not get (under 90% of the offered rate, or "
            "over 10% of its tasks late) gives no verdict"
        )
    lines += [
        "",
        f"<sub>Method: {method}. Measured {summary.started_at} to {summary.finished_at} "
        "with capdisc.</sub>",
        "",
    ]
    return "\n".join(lines)
