"""report.html without a browser: self-contained, what it says, old schemas, ``capdisc report``.

The pages in a real browser (script errors, what a person sees) are
``tests/e2e/test_report_html.py``'s.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from capdisc.metrics.frame import read_client, records_frame
from capdisc.records import RECORD_COLUMNS
from capdisc.reports.html import (
    render_compare_page,
    render_discoveries_page,
    render_discovery_page,
)
from capdisc.schema import DiscoverySummary, load_summary
from tests.summaries import comparison, discovery

FIXTURE = Path(__file__).parents[2] / "fixtures" / "summaries" / "discovery-schema-1.json"
LIMIT = 5 * 1024 * 1024


def assert_self_contained(page: str) -> None:
    """Nothing the page needs comes from elsewhere: no src=, no stylesheet link, no import."""
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"<script[^>]*\bsrc\s*=", page, re.I)
    assert not re.search(r"<link[^>]*>", page, re.I)
    assert not re.search(r"<img[^>]*\bsrc\s*=\s*[\"']?(https?:)?//", page, re.I)
    assert "@import" not in page
    assert "BEGIN bokeh.min.js" in page  # the charts' runtime is inside
    assert len(page.encode()) < LIMIT


def records(summary: DiscoverySummary, per_step: int = 50) -> pd.DataFrame:
    """Rows in each step's window, every tenth failed."""
    rng = np.random.default_rng(3)
    rows = []
    for step in summary.steps:
        for i in range(per_step):
            start = step.window_start + i * (step.window_end - step.window_start) / per_step
            ms = float(rng.uniform(200, 600))
            ok = i % 10 != 0
            row = dict.fromkeys(RECORD_COLUMNS)
            row.update(
                ts_scheduled=start, ts_start=start, ts_end=start + ms / 1000, user=i, step=step.index,
                version="", name="batch", status=200 if ok else 500, ok=int(ok), duration_ms=ms,
                error="" if ok else "HTTP 500",
            )  # fmt: skip
            rows.append(tuple(row[c] for c in RECORD_COLUMNS))
    return records_frame(rows)


def test_a_discovery_page_says_the_capacity_and_why_each_step_failed() -> None:
    summary = discovery()
    page = render_discovery_page(summary, records(summary), None)
    assert_self_contained(page)
    assert "Capacity: 18 users, 9.0 req/s" in page
    assert "achieved 70% of offered load (&lt; 90%)" in page  # the full reason, escaped
    assert "<details>" in page  # collapsed by default
    assert page.count('class="chart"') == 2  # steps and timeline; no client samples
    assert "No client samples" in page


def test_the_servers_own_figures_are_beside_each_step() -> None:
    from capdisc.servermetrics.figures import ServerFigures

    figures = ServerFigures(family="vllm", samples=10, running_mean=4.0, waiting_mean=0.3)
    summary = discovery()
    assert "server (its own metrics)" not in render_discovery_page(summary, records_frame([]), None)
    steps = [s.model_copy(update={"server": figures}) for s in summary.steps]
    page = render_discovery_page(
        summary.model_copy(update={"steps": steps}), records_frame([]), None
    )
    assert "server (its own metrics)" in page
    # each step, and the line at capacity under the settings
    assert page.count("ran 4, queued 0.3 on average") == len(steps) + 1


def test_a_long_run_stays_under_5_mb_drawing_a_sample_of_its_requests() -> None:
    summary = discovery()
    page = render_discovery_page(summary, records(summary, per_step=20_000), None)
    assert_self_contained(page)  # 60,000 requests
    assert "one request in 3 drawn" in page


def test_a_page_escapes_what_came_from_outside() -> None:
    summary = discovery().model_copy(
        update={"warnings": ["<script>alert(1)</script>"], "command": "capdisc x --prompt '<b>'"}
    )
    page = render_discovery_page(summary, records(summary, 5), None)
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "capdisc x --prompt &#39;&lt;b&gt;&#39;" in page


def test_a_schema_1_summary_without_records_still_renders() -> None:
    summary = load_summary(FIXTURE)
    assert isinstance(summary, DiscoverySummary)
    page = render_discovery_page(summary, records_frame([]), None)
    assert_self_contained(page)
    assert "a schema-1 run" in page
    assert "No request records" in page
    assert "does not record its command line" in page


def test_a_comparison_page_says_the_verdict_and_each_metric() -> None:
    page = render_compare_page(comparison(), records_frame([]), None)
    assert_self_contained(page)
    assert "Verdict: B is faster" in page


def test_two_discoveries_give_both_capacities_and_the_difference() -> None:
    a = discovery()
    b = discovery(capacity=a.capacity.model_copy(update={"users": 24, "rps": 12.0}))  # type: ignore[union-attr]
    page = render_discoveries_page([("old", a), ("new", b)])
    assert_self_contained(page)
    assert "new minus old: +6 users, +3.0 req/s (+33.3%)" in page


def test_client_csv_reads_as_a_frame(tmp_path: Path) -> None:
    path = tmp_path / "client.csv"
    path.write_text(
        "ts,process,cpu,lag_p95_ms,lag_max_ms,lags_ms\n"
        "100.0,capdisc,0.2,1.5,2.0,1 2\n"
        "101.0,worker-1,0.3,2.5,3.0,2 3\n"
        "102.0,capdisc,0."  # a line cut by a crash
    )
    frame = read_client(path)
    assert frame is not None and list(frame["process"]) == ["capdisc", "worker-1"]
    assert read_client(tmp_path / "none.csv") is None


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "capdisc", "report", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def test_capdisc_report_rebuilds_an_old_run_and_keeps_locusts_page(tmp_path: Path) -> None:
    """A schema-1 run kept Locust's page as report.html: it becomes locust.html, and
    report.html is capdisc's own."""
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(FIXTURE, old / "summary.json")
    (old / "report.html").write_text("<html>Locust</html>")
    result = run(str(old), "--verbose")
    assert result.returncode == 0, result.stderr
    assert "Capacity" in result.stdout
    assert (old / "locust.html").read_text() == "<html>Locust</html>"
    page = (old / "report.html").read_text()
    assert_self_contained(page)
    result = run(str(old))  # again: our own page is replaced, Locust's stays
    assert result.returncode == 0 and (old / "locust.html").read_text() == "<html>Locust</html>"

    other = tmp_path / "other"
    shutil.copytree(old, other)
    result = run(str(old), str(other), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "other minus old: +0 users" in result.stdout
    assert_self_contained((tmp_path / "report-old-vs-other.html").read_text())


@pytest.mark.parametrize("what", ["missing", "comparison"])
def test_capdisc_report_refuses_what_is_not_two_discoveries(tmp_path: Path, what: str) -> None:
    good = tmp_path / "good"
    good.mkdir()
    shutil.copy(FIXTURE, good / "summary.json")
    second = tmp_path / "second"
    second.mkdir()
    if what == "comparison":
        (second / "summary.json").write_text(comparison().model_dump_json(by_alias=True))
    result = run(str(good), str(second), "--html", str(tmp_path / "x.html"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "RUN_DIR" in result.stderr
    assert not (tmp_path / "x.html").exists()
