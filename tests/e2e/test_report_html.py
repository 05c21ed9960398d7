"""report.html in a real browser: every kind of page opens in headless Chromium.

Real runs of the CLI against the embedded simulator (short ones), their report.html
opened in Debian's Chromium over the DevTools protocol (``tests/e2e/browser.py``):

- no script error, console error or failed load in the page, and nothing fetched
  but the page itself and the data: URLs inside it (no network, no CDN);
- every chart drawn (one Bokeh view per chart on the page);
- the capacity or the verdict shown as text a person reads;
- under 5 MB.

Each page's screenshot is saved in the test's tmp dir for a person to look at (the
path is printed); with ``CAPDISC_SCREENSHOTS=docs`` the README's screenshots in
``docs/`` are written again. Without a browser the tests skip saying why.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.e2e.browser import Browser, Page, find_chromium
from tests.e2e.helpers import CAPDISC, run_capdisc

pytestmark = pytest.mark.slow

DOCS = Path(__file__).parents[2] / "docs"
LIMIT = 5 * 1024 * 1024
PROFILE = """
[target]
embedded = true
max_tokens = 64
timeout = "10s"

[simulator]
slots = 4
prefill_ms = 40
per_token_ms = 5
output_tokens = 24
jitter = 0.05
seed = 3

[batch]
start_users = 2
step_users = 3
max_users = 11
step_duration = "2s"
interval = "0.5s"
slo_p95 = "200ms"

[discover_stream]
start_users = 2
step_users = 3
max_users = 11
step_duration = "2s"
interval = "0.5s"
slo_ttft = "100ms"
"""


@pytest.fixture
def browser(tmp_path: Path) -> Browser:
    executable, why = find_chromium()
    if executable is None:
        pytest.skip(why)
    with Browser(executable, tmp_path / "chromium-profile") as started:
        yield started  # type: ignore[misc]


def open_page(browser: Browser, path: Path) -> Page:
    """The page loaded and every chart drawn; fails on any error in it."""
    assert path.stat().st_size < LIMIT, f"{path}: {path.stat().st_size} bytes"
    page = browser.open(path.resolve().as_uri())
    charts = page.evaluate("document.querySelectorAll('div.chart').length")
    assert charts >= 1, "no chart on the page"
    # Each chart's root view, rendered into its place (Bokeh also adds a view of its own
    # to the body, for notifications).
    drawn = page.wait_for(
        "window.Bokeh && Object.values(Bokeh.index).filter(v => v.el.parentNode"
        " && v.el.parentNode.closest && v.el.parentNode.closest('div.chart')).length"
    )
    assert drawn == charts
    # Every chart has a canvas of its size (in its shadow root): it was drawn, not left blank.
    sized = page.evaluate(
        "Array.from(document.querySelectorAll('div.chart')).every(d => d.offsetHeight > 100)"
    )
    assert sized, "a chart has no height"
    assert page.errors == [], page.errors
    foreign = [u for u in page.requests if not u.startswith(("file:", "data:"))]
    assert foreign == [], foreign
    return page


def shoot(page: Page, tmp_path: Path, name: str) -> None:
    shot = page.screenshot(tmp_path / f"{name}.png", full_page=True)
    print(f"screenshot of the {name} page: {shot}")
    if os.environ.get("CAPDISC_SCREENSHOTS") == "docs":  # the first screen, for the README
        from PIL import Image  # Bokeh's own dependency

        first = page.screenshot(tmp_path / f"{name}-first-screen.png")
        with Image.open(first) as image:
            small = image.convert("RGB").resize((800, 960)).quantize(colors=128)
            small.save(DOCS / f"report-{name}.png", optimize=True)


def discover(command: str, profile: Path, out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CAPDISC, "discover", command, "--profile", str(profile), "--out", str(out), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def written(run: Path, command: str) -> Path:
    """The run's own report.html, listed in its summary, with the command that ran it."""
    summary = json.loads((run / "summary.json").read_text())
    assert summary["files"]["report_html"] == "report.html"
    assert summary["command"].startswith(f"capdisc {command} "), summary["command"]
    assert list(run.glob("locust*.html"))  # Locust's pages kept beside it
    return run / "report.html"


def rebuilt(run: Path) -> Path:
    """``capdisc report RUN``: report.html from the run's files, as the run wrote it."""
    before = (run / "report.html").read_text()
    result = run_capdisc("report", str(run), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    after = (run / "report.html").read_text()
    # The same page but for the ids Bokeh gives its charts anew.
    ids = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|p\d{4,}")
    assert ids.sub("", before) == ids.sub("", after)
    return run / "report.html"


def test_discovery_pages_and_two_runs_side_by_side(browser: Browser, tmp_path: Path) -> None:
    """discover batch and discover stream (run at once), then both side by side."""
    profile = tmp_path / "sim.toml"
    profile.write_text(PROFILE)
    runs = {name: tmp_path / name for name in ("batch", "stream")}
    started = {name: discover(name, profile, out) for name, out in runs.items()}
    for name, process in started.items():
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, f"{name}: {stdout}{stderr}"

    for name, run in runs.items():
        summary = json.loads((run / "summary.json").read_text())
        capacity = summary["capacity"]
        page = open_page(browser, written(run, f"discover {name}"))
        command = page.evaluate("document.getElementById('command').innerText")
        assert command == summary["command"]
        headline = page.evaluate("document.getElementById('capacity').innerText")
        if capacity is None:  # e.g. client-bound on a busy machine: the page says so
            assert headline == "Capacity not found", headline
        else:
            users = f"{'at least ' if capacity['at_least'] else ''}{capacity['users']} users"
            assert headline.startswith(f"Capacity: {users}"), headline
        steps = page.evaluate("document.querySelectorAll('#steps tr').length")
        assert steps == len(summary["steps"]) + 1
        if name == "stream":
            assert page.evaluate("!!document.getElementById('chart-tokens')")
        shoot(page, tmp_path, f"discover-{name}")

    both = tmp_path / "side-by-side.html"
    result = run_capdisc(
        "report", str(runs["batch"]), str(runs["stream"]), "--html", str(both), timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    found = all(json.loads((r / "summary.json").read_text())["capacity"] for r in runs.values())
    difference = "stream minus batch:" if found else "No difference can be given"
    assert difference in result.stdout
    page = open_page(browser, both)
    text = page.evaluate("document.getElementById('difference').innerText")
    assert text.startswith(difference), text
    shoot(page, tmp_path, "two-runs")


def test_comparison_page(browser: Browser, tmp_path: Path) -> None:
    """compare stream v1 v2 (the shipped pair, B faster), one short block pair."""
    out = tmp_path / "compare"
    result = run_capdisc(
        "compare", "stream", "v1", "v2", "--users", "6", "--interval", "0.5s",
        "--duration", "3s", "--blocks", "1", "--out", str(out), "--quiet",
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((out / "summary.json").read_text())
    written(out, "compare stream")
    page = open_page(browser, rebuilt(out))
    verdict = page.evaluate("document.getElementById('verdict').innerText")
    words = {
        "b_faster": "B is faster",
        "b_slower": "B is slower",
        "equivalent": "A and B are equivalent",
        "inconclusive": "inconclusive",
    }
    assert verdict == f"Verdict: {words[summary['verdict']]}"
    assert page.evaluate("!!document.getElementById('chart-forest')")
    shoot(page, tmp_path, "compare-stream")
