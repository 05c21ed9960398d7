"""A comparison as a markdown section to paste into a pull request.

Same figures and wording as the terminal summary (the formatters are shared), laid
out as a GitHub-flavoured table with the verdict and a note on the method, so a
reviewer can judge the claim without running anything.
"""

from __future__ import annotations

from capdisc.reports.terminal import compare_rows, load_line, regression_line, verdict_line
from capdisc.schema import CompareSummary

__all__ = ["compare_markdown"]


def _cell(text: str) -> str:
    # A label such as a URL may hold a pipe, which would split the table cell.
    return text.replace("|", "\\|").replace("\n", " ")


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
    verdict = verdict_line(summary)
    head, _, rest = verdict.partition(": ")
    title, _, detail = rest.partition(": ")
    lines += ["", f"**{head}: {title}**" + (f": {detail}" if detail else "")]
    if summary.regression_limit_pct is not None:
        lines += ["", regression_line(summary) + "."]
    lines += [
        "",
        "<sub>Method: end-to-end time of successful requests. The 95% CI of the median "
        "difference comes from a block bootstrap (whole time blocks resampled, so "
        "correlation in time is respected); the p-value from a two-sided Mann-Whitney U "
        "test. B is called faster or slower only when the CI excludes 0 and p < 0.05. "
        f"Measured {summary.started_at} to {summary.finished_at} with capdisc.</sub>",
        "",
    ]
    return "\n".join(lines)
