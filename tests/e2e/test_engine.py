"""The load engine against real simulators: true counts, constant pacing, clean stops, faults.

The simulator runs outside capdisc (``--host``) so its ``/stats`` ground truth can be
checked after each run; capdisc itself never reads it.
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import pytest

from tests.conftest import StartSimulator
from tests.e2e.helpers import (
    rows_of,
    rows_so_far,
    run_capdisc,
    start_capdisc,
    summary_of,
    wait_for_file,
    wait_until,
)

pytestmark = pytest.mark.slow


def batch(
    url: str, out: Path, *extra: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return run_capdisc(
        "discover",
        "batch",
        "--host",
        url,
        "--model",
        "sim-llm",
        "--out",
        str(out),
        "--quiet",
        *extra,
        timeout=timeout,
    )


def test_constant_pacing_and_recorded_slip(start_simulator: StartSimulator, tmp_path: Path) -> None:
    """Each user starts a task every interval; a slow server shows as slip, not as lost load."""
    sim = start_simulator(slots=8, prefill_ms=5, per_token_ms=1, output_tokens=5)
    result = batch(
        sim.base_url,
        tmp_path / "fast",
        "--start-users",
        "4",
        "--max-users",
        "4",
        "--step-duration",
        "3s",
        "--interval",
        "0.5s",
    )
    assert result.returncode == 0, result.stderr
    starts: dict[str, list[float]] = defaultdict(list)
    for r in rows_of(tmp_path / "fast"):
        starts[r["user"]].append(float(r["ts_start"]))
        assert float(r["ts_start"]) - float(r["ts_scheduled"]) < 0.05
    gaps = [b - a for s in starts.values() for a, b in itertools.pairwise(s)]
    assert gaps and all(0.45 < g < 0.6 for g in gaps), gaps

    slow = start_simulator(slots=8, prefill_ms=800, per_token_ms=1, output_tokens=2)
    result = batch(
        slow.base_url,
        tmp_path / "slow",
        "--start-users",
        "2",
        "--max-users",
        "2",
        "--step-duration",
        "3s",
        "--interval",
        "0.5s",
        "--no-refine",
    )
    # Answers slower than the pacing at no load: named, not blamed on the server (exit 4,
    # every file written; issue 24).
    assert result.returncode == 4, result.stderr
    assert "constant pacing needs every answer within the interval" in result.stderr
    summary = summary_of(tmp_path / "slow")
    assert summary["pacing"]["late_share"] > 0.5
    assert summary["pacing"]["slip_p50_ms"] > 200
    assert not summary["steps"][0]["passed"]
    assert any(r.startswith("lateness ") for r in summary["steps"][0]["reasons"])


def test_ctrl_c_stops_cleanly_and_writes_every_report(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    """SIGINT stops like the threshold does: in-flight requests finish, reports are written."""
    sim = start_simulator(slots=8, prefill_ms=100, per_token_ms=2, output_tokens=10)
    out = tmp_path / "run"
    proc = start_capdisc(
        "discover",
        "batch",
        "--host",
        sim.base_url,
        "--model",
        "sim-llm",
        "--start-users",
        "4",
        "--step-users",
        "4",
        "--max-users",
        "40",
        "--step-duration",
        "2s",
        "--interval",
        "0.5s",
        "--out",
        str(out),
        "--quiet",
    )
    # Ctrl+C once the second step runs: the first one has its verdict.
    wait_until(lambda: any(row["step"] == "2" for row in rows_so_far(out)), "a row of step 2", 90)
    proc.send_signal(signal.SIGINT)
    _stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    summary = summary_of(out)
    assert summary["stop_reason"] == "interrupted"
    assert summary["steps"] and (out / "locust.html").exists()
    # capdisc's own page too, after Ctrl+C, saying why the run stopped.
    assert summary["files"]["report_html"] == "report.html"
    assert "interrupted (Ctrl+C or a signal)" in (out / "report.html").read_text()
    rows = rows_of(out)
    assert len(rows) == summary["at_stop"]["total_requests"]
    assert len(rows) == sim.stats()["served"] - 1


def test_target_dies_mid_run(start_simulator: StartSimulator, tmp_path: Path) -> None:
    """A target that crashes trips the failure threshold; the data before the crash is kept."""
    sim = start_simulator(
        slots=8, prefill_ms=5, per_token_ms=1, output_tokens=5, faults={"crash_after": 60}
    )
    started = time.monotonic()
    result = batch(
        sim.base_url,
        tmp_path / "run",
        "--start-users",
        "4",
        "--max-users",
        "4",
        "--step-duration",
        "60s",
        "--interval",
        "0.25s",
        "--timeout",
        "2s",
    )
    assert time.monotonic() - started < 40
    summary = summary_of(tmp_path / "run")
    assert summary["stop_reason"] == "failure_threshold", result.stderr
    rows = rows_of(tmp_path / "run")
    assert sum(r["ok"] == "1" for r in rows) == 59  # 60 served, one was the preflight
    assert sum(r["ok"] == "0" for r in rows) >= 5


def test_hanging_target_is_caught_by_preflight(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    """A target that accepts and never answers is refused by preflight within --timeout."""
    hung = start_simulator(slots=8, faults={"hang": True})
    started = time.monotonic()
    result = batch(hung.base_url, tmp_path / "run", "--timeout", "1s")
    assert result.returncode == 3  # preflight already sees the hang: no load is sent
    assert "no answer within 1s" in result.stderr
    assert time.monotonic() - started < 20


def test_connection_limit_failures_are_counted(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    """Connections beyond the target's limit fail as requests; no user crashes."""
    sim = start_simulator(
        slots=8, prefill_ms=50, per_token_ms=1, output_tokens=5, faults={"max_connections": 3}
    )
    result = batch(
        sim.base_url,
        tmp_path / "run",
        "--start-users",
        "6",
        "--max-users",
        "6",
        "--step-duration",
        "3s",
        "--interval",
        "0.5s",
        "--failure-threshold",
        "0",
    )
    assert "Traceback" not in result.stderr
    rows = rows_of(tmp_path / "run")
    failed = [r for r in rows if r["ok"] == "0"]
    assert failed and all(r["status"] == "0" and r["error"] for r in failed)
    assert sum(r["ok"] == "1" for r in rows) == sim.stats()["served"] - 1


def test_second_ctrl_c_forces_the_stop(start_simulator: StartSimulator, tmp_path: Path) -> None:
    """A second SIGINT does not wait for slow requests in flight, and summary.json is written."""
    sim = start_simulator(slots=16, prefill_ms=8000, per_token_ms=1, output_tokens=2)
    out = tmp_path / "run"
    proc = start_capdisc(
        "discover",
        "batch",
        "--host",
        sim.base_url,
        "--model",
        "sim-llm",
        "--start-users",
        "4",
        "--max-users",
        "4",
        "--step-duration",
        "60s",
        "--interval",
        "1s",
        "--timeout",
        "30s",
        "--out",
        str(out),
        "--quiet",
    )
    wait_for_file(out / "requests.csv")
    wait_until(lambda: sim.stats()["in_flight"] >= 4, "every user's first request in flight")
    proc.send_signal(signal.SIGINT)
    stopped = time.monotonic()
    # Two signals sent at once may arrive as one: a user presses again until it stops.
    for _ in range(20):
        time.sleep(0.5)
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert time.monotonic() - stopped < 30  # it ends by itself (reports take a moment)
    assert "Traceback" not in stderr
    summary = summary_of(out)
    assert summary["stop_reason"] == "interrupted"
    assert "forced by a second signal" in summary["stop_detail"]
