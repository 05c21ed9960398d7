"""capdisc at its own limit: client-bound steps, never a server capacity; --workers auto.

The target is a simulator with no service time and slots to spare, so the server is
never the limit. Making one capdisc process fall behind for real would take about
9,000 requests/s on a 2-core test machine (what ``capdisc calibrate`` measures
there), more than the simulator and the other tests leave room for. So the tests
simulate a client at its limit instead, with a test-only knob,
``CAPDISC_TEST_HOLD_LOOP_MS``: each task first holds its process's event loop for
that long without yielding, as a saturated process does. 260 tasks/s x 5 ms is 1.3 s
of held loop per second: one process cannot keep up (its timers fire hundreds of ms
late), two processes hold theirs 65% of the time each and keep up. Holding the loop
costs no CPU, so the outcome does not depend on how busy the shared machine is.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.e2e.helpers import rows_of, run_capdisc, summary_of

pytestmark = pytest.mark.slow

RATE = 260  # users at a 1 s interval: tasks per second
HOLD_MS = "5"


def zero_latency_profile(tmp_path: Path) -> Path:
    path = tmp_path / "zero.toml"
    path.write_text(
        "[target]\nembedded = true\nmax_tokens = 8\n\n"
        "[simulator]\nslots = 1024\nprefill_ms = 0\nper_token_ms = 0\noutput_tokens = 8\n"
    )
    return path


def discover(tmp_path: Path, out: str, *extra: str) -> tuple[int, str]:
    result = run_capdisc(
        "discover",
        "batch",
        "--profile",
        str(zero_latency_profile(tmp_path)),
        "--start-users",
        str(RATE),
        "--max-users",
        str(RATE),
        "--step-duration",
        "3s",
        "--interval",
        "1s",
        "--out",
        str(tmp_path / out),
        *extra,
        env={"CAPDISC_TEST_HOLD_LOOP_MS": HOLD_MS, "CAPDISC_CACHE_DIR": str(tmp_path / "cache")},
        timeout=180,
    )
    return result.returncode, result.stdout + result.stderr


def test_one_process_past_its_limit_is_client_bound_and_reports_no_capacity(
    tmp_path: Path,
) -> None:
    """Without a calibration, auto trusts one process; the live check sees it fall behind."""
    code, output = discover(tmp_path, "run", "--workers", "auto")
    assert code == 0, output
    summary = summary_of(tmp_path / "run")
    assert summary["stop_reason"] == "client_bound"
    assert summary["capacity"] is None
    (step,) = summary["steps"]
    assert step["client_bound"] and not step["passed"]
    assert step["reasons"][0].startswith("client-bound: capdisc's event loop lagged")
    assert step["client"]["lag_p95_ms"] > 50
    client = summary["client"]
    assert client["processes"] == 1 and client["bound"] == ["1"]
    assert client["ceiling"] is None and client["workers_needed"] is None
    assert "Capacity not found: client-bound" in output
    assert "capdisc calibrate" in summary["stop_detail"]
    # Every request is still recorded; client.csv has capdisc's seconds.
    assert rows_of(tmp_path / "run")
    assert "client.csv" in summary["files"].values()
    page = (tmp_path / "run" / "report.html").read_text()  # the page says so too
    assert "Capacity not found" in page and "capdisc itself was the limit" in page


@pytest.mark.skipif(
    len(os.sched_getaffinity(0)) < 2, reason="--workers auto needs 2 cores for 2 workers"
)
def test_workers_auto_reaches_the_rate_and_the_server_is_not_saturated(tmp_path: Path) -> None:
    """Calibrated (knob on), auto starts the workers the peak needs, and every step passes."""
    cache = tmp_path / "cache"
    calibrated = run_capdisc(
        "calibrate",
        "--workload",
        "batch",
        env={"CAPDISC_TEST_HOLD_LOOP_MS": HOLD_MS, "CAPDISC_CACHE_DIR": str(cache)},
        timeout=120,
    )
    assert calibrated.returncode == 0, calibrated.stderr
    (cached,) = cache.glob("client-ceiling-*.json")
    assert str(cached) in calibrated.stdout.replace("\n", "")
    ceiling = json.loads(cached.read_text())["workloads"]["batch"]
    assert ceiling["saturated"] and ceiling["rate"] < RATE  # one process cannot drive it

    code, output = discover(tmp_path, "run", "--workers", "auto")
    assert code == 0, output
    assert "calibrating" not in output  # the cached ceiling is reused
    summary = summary_of(tmp_path / "run")
    client = summary["client"]
    assert client["ceiling"] == ceiling["rate"] and client["processes"] >= 2
    assert client["bound"] == [] and client["lag_p95_max_ms"] <= 50
    assert summary["stop_reason"] == "max_users"
    assert summary["capacity"]["users"] == RATE and summary["capacity"]["at_least"]
    (step,) = summary["steps"]
    assert step["passed"] and step["client"]["processes"] == client["processes"] + 1  # + master
    workers = {int(row["user"]) // 1_000_000 for row in rows_of(tmp_path / "run")}
    assert len(workers) == client["processes"]


def test_a_client_bound_comparison_gives_no_verdict(tmp_path: Path) -> None:
    """A comparison whose blocks capdisc could not drive says so, block by block, and
    gives no verdict (a gated run exits 5, "run longer" being no cure here).

    140 streams/s stays under half of a slow machine's stream ceiling, so no
    calibration runs first; 10 ms of held loop per stream is 1.4 s per second.
    """
    profile = str(zero_latency_profile(tmp_path))
    result = run_capdisc(
        "compare",
        "stream",
        profile,
        profile,
        "--users",
        "140",
        "--interval",
        "1s",
        "--duration",
        "3s",
        "--blocks",
        "1",
        "--fail-on-regression",
        "5",
        "--quiet",
        "--out",
        str(tmp_path / "run"),
        env={"CAPDISC_TEST_HOLD_LOOP_MS": "10", "CAPDISC_CACHE_DIR": str(tmp_path / "cache")},
        timeout=180,
    )
    assert result.returncode in (4, 5), result.stderr
    assert "calibrating" not in result.stderr
    summary = summary_of(tmp_path / "run")
    client = summary["client"]
    assert client["unit"] == "chunks/s" and client["bound"] == ["a1", "b1"]
    assert client["blocks"]["a1"]["lag_p95_ms"] > 50
    warned = [w for w in summary["warnings"] if w.startswith("block ")]
    assert len(warned) == 2 and all("treat its verdict as inconclusive" in w for w in warned)
    assert "block A1 was client-bound" in result.stderr
    assert summary["verdict"] == "inconclusive"
    assert any("client-bound block(s) a1, b1" in r for r in summary["load_reasons"])
    assert "inconclusive" in (tmp_path / "run" / "compare.md").read_text()
