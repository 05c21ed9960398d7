"""Distributed runs: Locust master in capdisc, users on worker processes.

Ground truth from the simulator's /stats: with --workers 2, requests.csv holds
exactly the requests the target served (minus preflight), for batch, stream and
tools, with users from both workers.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import StartSimulator
from tests.e2e.helpers import rows_of, run_capdisc, start_capdisc

pytestmark = pytest.mark.slow


def workers_seen(rows: list[dict[str, str]]) -> set[int]:
    return {int(r["user"]) // 1_000_000 for r in rows}


def test_batch_and_tools_with_two_workers_match_ground_truth(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    """Rows from both workers are merged once each: rows = served - preflight."""
    sim = start_simulator(slots=8, prefill_ms=5, per_token_ms=2, output_tokens=10)
    common = [
        "--host",
        sim.base_url,
        "--model",
        "sim-llm",
        "--start-users",
        "6",
        "--max-users",
        "6",
        "--step-duration",
        "3s",
        "--interval",
        "0.5s",
        "--workers",
        "2",
        "--quiet",
    ]
    result = run_capdisc("discover", "batch", *common, "--out", str(tmp_path / "b"), timeout=120)
    assert result.returncode == 0, result.stderr
    rows = rows_of(tmp_path / "b")
    assert len(rows) == sim.stats()["served"] - 1
    assert workers_seen(rows) == {1, 2}
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["steps"] and summary["steps"][0]["requests"] > 0

    sim.reset_stats()
    result = run_capdisc(
        "discover", "tools", "--tools", "2", *common, "--out", str(tmp_path / "t"), timeout=120
    )
    assert result.returncode == 0, result.stderr
    rows = rows_of(tmp_path / "t")
    rounds = [r for r in rows if r["name"].startswith("round ")]
    tasks = [r for r in rows if r["name"] == "tools"]
    stats = sim.stats()
    assert len(rounds) == stats["served"] - 1
    assert stats["tool_calls"] == 2 * len(tasks)
    assert workers_seen(rows) == {1, 2}


def test_stream_with_two_workers_matches_ground_truth(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    """A comparison on workers: every stream the target served is one row."""
    sim = start_simulator(slots=16, prefill_ms=10, per_token_ms=2, output_tokens=10)
    result = run_capdisc(
        "compare",
        "stream",
        sim.base_url,
        sim.base_url,
        "--users",
        "6",
        "--interval",
        "0.5s",
        "--duration",
        "3s",
        "--blocks",
        "1",
        "--workers",
        "2",
        "--quiet",
        "--out",
        str(tmp_path / "s"),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    rows = rows_of(tmp_path / "s")
    assert len(rows) == sim.stats()["served"] - 2
    assert all(int(r["chunks"]) > 2 for r in rows)


def test_threshold_counts_failures_across_workers(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    """Failures on any worker count toward one threshold, which stops the run quickly."""
    sim = start_simulator(
        slots=8, prefill_ms=5, per_token_ms=1, output_tokens=5, faults={"error_rate": 0.2}, seed=11
    )
    started = time.monotonic()
    result = run_capdisc(
        "discover",
        "batch",
        "--host",
        sim.base_url,
        "--model",
        "sim-llm",
        "--start-users",
        "8",
        "--max-users",
        "8",
        "--step-duration",
        "60s",
        "--interval",
        "0.5s",
        "--workers",
        "2",
        "--failure-threshold",
        "5",
        "--quiet",
        "--out",
        str(tmp_path / "run"),
        timeout=120,
    )
    assert time.monotonic() - started < 45, result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["stop_reason"] == "failure_threshold"
    failures = sum(r["ok"] == "0" for r in rows_of(tmp_path / "run"))
    # 16 req/s with 20% errors: reacting within about a second keeps the overshoot small.
    assert 5 <= failures <= 15


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid and b"worker" in cmdline:
                found.append(int(entry.name))
    return found


def test_a_dying_worker_is_noticed_and_data_kept(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    """A worker killed mid-run: the master says so, keeps its rows, and still writes reports."""
    sim = start_simulator(slots=8, prefill_ms=5, per_token_ms=1, output_tokens=5)
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
        "0.5s",
        "--workers",
        "2",
        "--out",
        str(out),
    )
    deadline = time.monotonic() + 30
    workers: list[int] = []
    while time.monotonic() < deadline and len(workers) < 2:
        time.sleep(0.5)
        workers = _children(proc.pid)
    assert len(workers) == 2
    time.sleep(4)
    os.kill(workers[0], signal.SIGKILL)
    time.sleep(8)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert "Traceback" not in stderr
    summary = json.loads((out / "summary.json").read_text())
    assert any("stopped responding" in w for w in summary["warnings"]), stderr
    rows = rows_of(out)
    assert workers_seen(rows) == {1, 2}
    assert summary["stop_reason"] == "interrupted"
