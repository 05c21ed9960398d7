"""Rendering: the terminal summary, the PNG plots, and a comparison from records to outputs.

The comparison's own words and table are tested in ``test_comparison.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from capdisc.metrics.compare import compare_versions
from capdisc.metrics.decision import decide
from capdisc.metrics.figures import version_stats
from capdisc.metrics.frame import records_frame
from capdisc.reports.formatting import format_ms, format_p_value, format_pct
from capdisc.reports.markdown import compare_markdown
from capdisc.reports.plots import plot_capacity, plot_compare
from capdisc.reports.terminal import render_discovery, render_summary, step_summary
from capdisc.schema import (
    Capacity,
    CompareSummary,
    ToolsInfo,
)
from tests.summaries import comparison, discovery, step

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MINUS = "\u2212"


def console() -> Console:
    """A recording console wide enough for the step table."""
    return Console(record=True, width=140, color_system=None)


# -- formatting ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (None, "-"),
        (0.0, "0 ms"),
        (0.34, "0.34 ms"),
        (0.4, "0.4 ms"),
        (0.996, "1.0 ms"),
        (7.23, "7.2 ms"),
        (452.4, "452 ms"),
        (1240.0, "1.24 s"),
        (12_500, "12.5 s"),
    ],
)
def test_format_ms(ms: float | None, text: str) -> None:
    """Milliseconds read as a person would say them."""
    assert format_ms(ms) == text


def test_format_pct_and_p_value() -> None:
    """Signed percentages use a real minus; tiny p-values use an exponent."""
    assert format_pct(-18.24) == f"{MINUS}18.2%"
    assert format_pct(3.0) == "+3.0%"
    assert format_pct(None) == "-"
    assert format_p_value(1.2e-40) == "p = 1.2e-40"
    assert format_p_value(0.21) == "p = 0.21"
    assert format_p_value(0.0) == "p < 1e-300"


# -- terminal --------------------------------------------------------------------------


def test_render_discovery_shows_steps_capacity_and_at_stop() -> None:
    """The step table, the capacity line and the figures at stop."""
    out = console()
    render_discovery(discovery(), out)
    text = out.export_text()
    assert (
        "Capacity: 18 users, 9.0 req/s, p50 452 ms, p95 497 ms (n=540) (stopped: max_users)" in text
    )
    assert "At stop: 20 users, 1,234 requests, 1.5% failed, mean response time 1.24 s" in text
    assert "\u2717 achieved 70% of offered" in text  # the reason, folded in its cell
    assert "\u2713" in text and "\u2717" in text
    for header in ("offered", "achieved", "failed", "late", "verdict"):
        assert header in text
    assert "Tools:" not in text


TREND = (
    "latency trend +31 ms/s [+12, +50] (within-user least squares 95%, Kendall z +3.1, "
    "240 tasks), 1.9 s over the 60 s step (+40% of the median 4.1 s); fails above 25 ms/s, "
    "passes below 5"
)
BACKLOG = "backlog 3 -> 19 in flight over 60 s (+16, noise ±3.9, material 2.0)"


@pytest.mark.parametrize("slo", [False, True])
def test_the_step_table_fits_100_columns_one_line_per_step(slo: bool) -> None:
    """Long reasons (and the SLO columns) never wrap a step over lines at 100 columns: each
    step is one line with its deciding test and figure; --verbose adds every reason."""
    from capdisc.schema import Goodput, Slo

    long_step = step(2, 20, passed=False, p50=1240.0).model_copy(
        update={"verdict": "fail", "reasons": [TREND, BACKLOG, "lateness 40 of 200 tasks"]}
    )
    unsure = step(3, 19, passed=False).model_copy(
        update={"verdict": "inconclusive", "reasons": [BACKLOG], "failures": 123}
    )
    changes: dict[str, object] = {
        "steps": [step(0, 10, passed=True), step(1, 18, passed=True), long_step, unsure]
    }
    if slo:
        good = Goodput(requests=100, good=95, pct=95.0, rps=4.0, ttft_ms=380.0)
        changes["slo"] = Slo(ttft_ms=400.0)
        changes["steps"] = [
            s.model_copy(update={"goodput": good})
            for s in changes["steps"]  # type: ignore[attr-defined]
        ]
    summary = discovery(**changes)
    out = Console(record=True, width=100, color_system=None)
    render_discovery(summary, out)
    lines = out.export_text().splitlines()
    table = lines[: next(i for i, line in enumerate(lines) if line.startswith("Capacity"))]
    assert all(len(line) <= 100 for line in table), table
    rows = [line for line in table if line.lstrip()[:2] in ("0 ", "1 ", "2 ", "3 ")]
    assert len(rows) == 4, table  # one line per step, none folded
    if slo:  # less room: the deciding test, cut short
        assert "\u2717 latency trend" in rows[2] and rows[2].rstrip().endswith("\u2026"), rows[2]
        assert "? backlog 3 -> 19" in rows[3], rows[3]
    else:
        assert "\u2717 latency trend +31 ms/s [+12, +50]" in rows[2], rows[2]
        assert "? backlog 3 -> 19 in flight over 60 s" in rows[3], rows[3]
    assert "Kendall" not in "\n".join(lines)  # the details wait for --verbose
    assert step_summary(long_step) == "fail: latency trend +31 ms/s [+12, +50] (+2)"
    assert step_summary(unsure) == "inconclusive: backlog 3 -> 19 in flight over 60 s"

    out = Console(record=True, width=100, color_system=None)
    render_discovery(summary, out, verbose=True)
    text = out.export_text()
    assert TREND in text.replace("\n", " ").replace("  ", " ") or "Kendall z +3.1" in text
    assert "Step 2 (20 users, fail): latency trend" in text
    assert "lateness 40 of 200 tasks" in text


def test_render_discovery_at_least_and_not_found() -> None:
    """An unbounded capacity says "at least"; no capacity says why."""
    out = console()
    cap = Capacity(users=40, rps=20.0, p50_ms=400.0, p95_ms=450.0, failure_rate=0.0, at_least=True)
    render_discovery(discovery(capacity=cap), out)
    assert "Capacity: at least 40 users" in out.export_text()

    out = console()
    failed = discovery(
        capacity=None,
        stop_reason="failure_threshold",
        stop_detail="5 failed requests",
        steps=[step(0, 10, passed=False)],
    )
    render_discovery(failed, out)
    text = out.export_text()
    assert "Capacity not found: no step passed" in text
    assert "(stopped: failure_threshold, 5 failed requests)" in text

    out = console()
    render_discovery(discovery(capacity=None, steps=[], stop_reason="interrupted"), out)
    assert "Capacity not found: no step completed (stopped: interrupted)" in out.export_text()


def test_render_discovery_tools_line() -> None:
    """Tool discovery adds its tool line with the per-round p50s."""
    tools = ToolsInfo(
        per_task=3, tasks=200, wrong_count=2, duration_cv=0.08, round_p50_ms=[210, 230, 260, 300]
    )
    out = console()
    render_discovery(discovery(strategy="tools", tools=tools), out)
    text = out.export_text()
    assert "Tools: 3 per task (client-orchestrated), 200 tasks, 2 wrong, duration CV 0.08" in text
    assert "round p50 210 ms / 230 ms / 260 ms / 300 ms" in text


def test_render_summary_dispatches() -> None:
    """One entry point renders either kind of summary."""
    out = console()
    render_summary(discovery(), out)
    render_summary(comparison(), out)
    text = out.export_text()
    assert "Capacity: 18 users" in text and "Verdict: B is faster" in text


# -- plots -----------------------------------------------------------------------------


def assert_png(path: Path) -> None:
    """The file exists, is a PNG and is not trivially small."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 1000


def test_plot_capacity(tmp_path: Path) -> None:
    """The capacity chart, and its degenerate forms: one step, no latency, no steps."""
    plot_capacity(discovery(), tmp_path / "capacity.png")
    assert_png(tmp_path / "capacity.png")

    single = discovery(steps=[step(0, 10, passed=False, p50=None)], capacity=None)
    plot_capacity(single, tmp_path / "single.png")
    assert_png(tmp_path / "single.png")

    plot_capacity(discovery(steps=[], capacity=None), tmp_path / "empty.png")
    assert_png(tmp_path / "empty.png")


def stream_frame(seed: int, factor: float, *, ttft: bool = True) -> pd.DataFrame:
    """A small stream run: 300 tasks over 300 s in 4 blocks, a few failed."""
    rng = np.random.default_rng(seed)
    rows: list[list[object]] = []
    for i, start in enumerate(np.sort(rng.uniform(0, 300, 300))):
        d = float(rng.lognormal(np.log(800), 0.3)) * factor
        ok = int(i % 50 != 0)
        status, chunks, error = (200, 40, "") if ok else (0, 0, "timeout")
        ttft_ms = d * 0.2 if ttft else None
        end = start + d / 1000
        block = 1 + int(start // 75)
        rows.append(
            [start, start, end, i % 20, block, "v", "stream", status, ok, d, ttft_ms, chunks]
        )
        rows[-1] += [None, error]
    return records_frame(rows)


def test_plot_compare(tmp_path: Path) -> None:
    """The two ECDF panels, and with no ttft or no data at all."""
    plot_compare(stream_frame(1, 1.0), stream_frame(2, 0.8), "v1", "v2", tmp_path / "c.png")
    assert_png(tmp_path / "c.png")

    no_ttft = stream_frame(3, 1.0, ttft=False)
    plot_compare(no_ttft, no_ttft, "a", "b", tmp_path / "no_ttft.png")
    assert_png(tmp_path / "no_ttft.png")

    empty = records_frame([])
    plot_compare(empty, stream_frame(4, 1.0).iloc[:1], "a", "b", tmp_path / "empty.png")
    assert_png(tmp_path / "empty.png")


# -- markdown --------------------------------------------------------------------------


def test_from_records_to_every_output(tmp_path: Path) -> None:
    """Metrics feed the reports end to end: records to stats, diff, table, markdown, plot."""
    a_df, b_df = stream_frame(5, 1.0), stream_frame(6, 0.7)
    diff = compare_versions(a_df, b_df)
    verdict, reason, decided_by = decide(diff)
    summary = comparison(
        verdict,
        decided_by=decided_by,
        a=version_stats(a_df, "v1", 20.0),
        b=version_stats(b_df, "v2", 20.0),
        diff=diff,
        verdict_reason=reason,
    )
    CompareSummary.model_validate_json(summary.model_dump_json(by_alias=True))
    assert summary.schema_ == 3
    out = console()
    render_summary(summary, out)
    text = out.export_text()
    assert "Verdict: B is faster: " in text and "B vs A per metric" in text
    assert "B is faster" in compare_markdown(summary)
    plot_compare(a_df, b_df, "v1", "v2", tmp_path / "compare.png")
    assert_png(tmp_path / "compare.png")
