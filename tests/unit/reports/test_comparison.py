"""Rendering a comparison: the table, the verdict with its interval, the gate, markdown.

The summaries are built by hand (schema 2, and a schema-1 one saved before the paired
design), so every verdict and gate outcome is shown without running anything.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from typer.testing import CliRunner

from capdisc.reports.markdown import compare_markdown
from capdisc.reports.terminal import render_compare
from capdisc.schema import (
    CompareLoad,
    CompareSummary,
    VersionDiff,
    load_summary,
)
from tests.summaries import comparison

MINUS = "\u2212"


def console() -> Console:
    return Console(record=True, width=140, color_system=None)


def test_render_compare_table_and_verdict() -> None:
    """The A | B | diff table, the verdict with its interval, why, margin and MDE."""
    out = console()
    render_compare(comparison(), out)
    text = out.export_text()
    assert (
        f"Verdict: B is faster: median {MINUS}18.2% (95% CI {MINUS}20.1% .. {MINUS}16.0%)" in text
    )
    assert "Why: the 95% interval is below 0; 4 A B B A block pairs; margin \u00b12%" in text
    assert "minimum detectable effect \u00b12.5% (80% power)" in text
    assert "Mann-Whitney p = 1.2e-40 (information)" in text
    for label in ("A: v1", "B: v2", "p50", "p95", "p99", "ttft p50", "chunks p50", "late %"):
        assert label in text
    assert "9.9 of 10.0" in text  # req/s achieved of offered: the load check's figures
    assert "2.48 s" in text and "2.03 s" in text
    assert "200 users" in text and "every 20 s" in text and "4 A B B A block pairs" in text


def test_render_compare_other_verdicts_and_the_gate() -> None:
    """Slower, equivalent, inconclusive, missing data, and each outcome of the gate."""
    out = console()
    slower = comparison(
        "b_slower",
        diff=comparison().diff.model_copy(
            update={"p50_pct": 12.0, "p50_ci95_pct": (9.5, 14.0), "p95_pct": 10.0}
        ),
        regression_limit_pct=5.0,
        regression=True,
        gate="regression",
    )
    render_compare(slower, out)
    text = out.export_text()
    assert "Verdict: B is slower: median +12.0% (95% CI +9.5% .. +14.0%)" in text
    assert "Regression (exit 1): B is slower than A by more than the 5% limit" in text

    spanning = comparison(
        "b_slower",
        diff=comparison().diff.model_copy(update={"p50_pct": 5.2, "p50_ci95_pct": (0.5, 9.9)}),
        regression_limit_pct=5.0,
        gate="inconclusive",
    )
    out = console()
    render_compare(spanning, out)
    assert (
        "Inconclusive (exit 5): the interval +0.5% .. +9.9% spans the 5% limit: run longer"
        in out.export_text()
    )

    equivalent = comparison(
        "equivalent",
        diff=comparison().diff.model_copy(update={"p50_pct": 0.3, "p50_ci95_pct": (-1.0, 1.5)}),
        regression_limit_pct=5.0,
        gate="pass",
    )
    out = console()
    render_compare(equivalent, out)
    text = out.export_text()
    assert "Verdict: equivalent within \u00b12%: median +0.3%" in text
    assert "No regression (exit 0): B is at most 5% slower" in text

    unequal = comparison(
        "inconclusive",
        verdict_reason="unequal load: A achieved 4.0 of 8.0 req/s offered (50% < 90%)",
        load_reasons=["A achieved 4.0 of 8.0 req/s offered (50% < 90%)"],
        regression_limit_pct=5.0,
        gate="inconclusive",
    )
    out = console()
    render_compare(unequal, out)
    text = out.export_text()
    assert "Verdict: inconclusive" in text and "Why: unequal load: A achieved 4.0" in text
    assert "Inconclusive (exit 5): the load was unequal" in text

    out = console()
    empty = VersionDiff(p50_pct=None, p50_ci95_pct=None, p95_pct=None, p_value=None)
    render_compare(comparison("inconclusive", diff=empty, verdict_reason=""), out)
    assert "Verdict: inconclusive: no median to compare" in out.export_text()


def test_a_schema_1_comparison_still_renders() -> None:
    """`capdisc report` on an old run: verdict no_difference, its p-value, no pairs."""
    old = comparison(
        "no_difference",
        diff=VersionDiff(p50_pct=1.0, p50_ci95_pct=(-1.0, 3.0), p95_pct=2.0, p_value=0.3),
        load=CompareLoad(users=200, interval_s=20, duration_s=480, temperature=0, blocks=2),
        verdict_reason="",
        regression_limit_pct=5.0,
    )
    out = console()
    render_compare(old, out)
    text = out.export_text()
    assert "Verdict: no significant difference: median +1.0% (95% CI" in text
    assert "p = 0.30" in text and "No regression beyond the 5% limit" in text
    assert "no significant difference" in compare_markdown(old)


SCHEMA_1_COMPARISON = {
    "schema": 1,
    "strategy": "stream",
    "started_at": "2026-01-01T00:00:00Z",
    "finished_at": "2026-01-01T00:16:00Z",
    "stop_reason": "duration",
    "load": {
        "users": 200,
        "interval_s": 20.0,
        "duration_s": 480.0,
        "temperature": 0.0,
        "blocks": 2,
        "order": "alternating",
    },
    "a": {
        "label": "v1",
        "requests": 4800,
        "failures": 0,
        "p50_ms": 2480.0,
        "p95_ms": 3000.0,
        "p99_ms": 3300.0,
        "ttft_p50_ms": 500.0,
        "ttft_p95_ms": 600.0,
        "chunks_p50": 120.0,
    },
    "b": {
        "label": "v2",
        "requests": 4800,
        "failures": 0,
        "p50_ms": 2500.0,
        "p95_ms": 3010.0,
        "p99_ms": 3310.0,
        "ttft_p50_ms": 505.0,
        "ttft_p95_ms": 606.0,
        "chunks_p50": 120.0,
    },
    "diff": {
        "p50_pct": 0.8,
        "p50_ci95_pct": [-1.2, 2.9],
        "p95_pct": 0.3,
        "p_value": 0.41,
        "method": "block bootstrap of the median difference; Mann-Whitney U",
    },
    "verdict": "no_difference",
    "regression_limit_pct": None,
    "regression": False,
    "files": {"summary": "summary.json"},
    "warnings": [],
}


def test_capdisc_report_reads_a_schema_1_comparison(tmp_path: Path) -> None:
    """A run saved before the paired design (schema 1, no_difference) still reads and shows."""

    from capdisc.cli import app

    (tmp_path / "summary.json").write_text(json.dumps(SCHEMA_1_COMPARISON))
    old = load_summary(tmp_path / "summary.json")
    assert isinstance(old, CompareSummary)
    assert old.schema_ == 1 and old.verdict == "no_difference" and old.diff.design is None
    result = CliRunner().invoke(app, ["report", str(tmp_path)], terminal_width=160)
    assert result.exit_code == 0, result.output
    assert "Verdict: no significant difference: median +0.8%" in result.output
    assert "p = 0.41" in result.output


def test_compare_markdown() -> None:
    """A PR-ready section: title, load, the table, one verdict paragraph and the method."""
    text = compare_markdown(comparison(regression_limit_pct=5.0, gate="pass"))
    assert text.startswith("### ")
    assert "| | A: v1 | B: v2 | B vs A |" in text
    assert "|---|---:|---:|---:|" in text
    assert f"| p50 | 2.48 s | 2.03 s | {MINUS}18.2% |" in text
    paragraph = next(line for line in text.splitlines() if line.startswith("**Verdict"))
    assert paragraph.startswith(
        f"**Verdict: B is faster.** B's median end-to-end time differs from A's by "
        f"{MINUS}18.2% (95% CI {MINUS}20.1% .. {MINUS}16.0%, from 4 A B B A block pairs)."
    )
    assert "margin of equivalence is \u00b12%" in paragraph
    assert "detects a change of \u00b12.5% or more with 80% power" in paragraph
    assert "Why: the 95% interval is below 0." in paragraph
    assert "No regression (exit 0)" in text
    assert "A B then B A pairs" in text and "t-interval" in text
    assert "200 users" in text
    # A pipe in a label must not break the table.
    piped = comparison()
    piped = piped.model_copy(update={"a": piped.a.model_copy(update={"label": "x|y"})})
    assert "A: x\\|y" in compare_markdown(piped)
