"""Distributed runs: Locust master in capdisc, users on worker processes.

The ground truth of each command with two workers is in ``test_ground_truth.py``
(beside the same checks in-process); here, what only a distributed run has: expected
workers, the failure threshold across workers, a worker dying or every one lost.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import StartSimulator
from tests.e2e.helpers import CAPDISC, rows_of, rows_so_far, run_capdisc, summary_of, wait_until

pytestmark = pytest.mark.slow


# A run with --workers starts capdisc, two worker processes and reports: on a busy
# 2-core machine each can take many seconds, so the runs get generous time limits
# and the tests wait for states (with deadlines), never for fixed times.
RUN_TIMEOUT_S = 240


def worker_of(row: dict[str, str]) -> int:
    return int(row["user"]) // 1_000_000


def workers_seen(rows: list[dict[str, str]]) -> set[int]:
    return {worker_of(r) for r in rows}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_compare_on_expected_workers_runs_every_block_on_them(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    """--expect-workers: workers started by hand serve every block of a comparison.

    Each block is a session with its own master on the same port; the workers stay
    connected and are told the next block's workload when they are ready again.
    """
    sim = start_simulator(slots=16, prefill_ms=10, per_token_ms=2, output_tokens=10)
    port = free_port()
    workers = [
        start_logged(tmp_path / f"worker{i}.txt", "worker", "--master", f"127.0.0.1:{port}")
        for i in (1, 2)
    ]
    try:
        result = run_capdisc(
            "compare",
            "stream",
            sim.base_url,
            sim.base_url,
            *("--users", "4", "--interval", "0.5s", "--duration", "2s", "--blocks", "1"),
            *("--expect-workers", "2", "--master-bind", f"127.0.0.1:{port}"),
            *("--quiet", "--out", str(tmp_path / "s")),
            timeout=RUN_TIMEOUT_S,
        )
    finally:
        for proc in workers:
            proc.kill()
            proc.wait()
    assert result.returncode == 0, result.stderr
    rows = rows_of(tmp_path / "s")
    for version in ("a", "b"):
        assert workers_seen([r for r in rows if r["version"] == version]) == {1, 2}, version
    # Each block's workers' clocks against the master's (one machine: within a second).
    clocks = summary_of(tmp_path / "s")["client"]["clocks"]
    assert {(c["block"], c["worker"]) for c in clocks} == {
        (block, worker) for block in ("a1", "b1") for worker in (1, 2)
    }, clocks
    assert all(c["offset_s"] is not None and abs(c["offset_s"]) < 1 for c in clocks), clocks


def test_threshold_counts_failures_across_workers(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    """Failures on any worker count toward one threshold, which stops the run quickly."""
    sim = start_simulator(
        slots=8, prefill_ms=5, per_token_ms=1, output_tokens=5, faults={"error_rate": 0.2}, seed=11
    )
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
        timeout=RUN_TIMEOUT_S,
    )
    ended = time.time()
    summary = summary_of(tmp_path / "run")
    assert summary["stop_reason"] == "failure_threshold", result.stderr
    # A normal result, or exit 4 when the threshold came before the step's window began.
    assert result.returncode == (0 if summary["steps"] else 4), result.stderr
    rows = rows_of(tmp_path / "run")
    failures = sum(r["ok"] == "0" for r in rows)
    # 16 req/s with 20% errors: reacting within about a second keeps the overshoot small.
    assert 5 <= failures <= 15
    # The 60 s step ended seconds after the first request (measured on the rows, so the
    # time workers take to start on a busy machine does not count), and the command
    # did not linger once the load had stopped.
    starts = [float(r["ts_start"]) for r in rows]
    assert max(starts) - min(starts) < 15, result.stderr
    assert ended - max(float(r["ts_end"]) for r in rows) < 45, result.stderr


def worker_pids(pid: int) -> list[int]:
    """Processes started by ``pid`` as ``capdisc worker`` (argument ``worker`` exactly)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid and b"worker" in argv:
                found.append(int(entry.name))
    return sorted(found)


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def start_logged(log: Path, *args: str) -> subprocess.Popen[bytes]:
    """``capdisc ARGS`` in the background, stderr to ``log`` (read while it runs)."""
    with log.open("wb") as handle:
        return subprocess.Popen(
            [*CAPDISC, *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=handle
        )


def batch_on_two_workers(sim_url: str, out: Path, log: Path) -> subprocess.Popen[bytes]:
    """A discovery whose one step (4 users, 60 s) outlasts the test: it ends by signal."""
    return start_logged(
        log,
        "discover",
        "batch",
        "--host",
        sim_url,
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


def rows_from_both_workers(out: Path) -> list[dict[str, str]]:
    """Wait until requests.csv holds rows of both workers (each flushes every 0.25 s)."""
    seen: list[dict[str, str]] = []

    def both() -> bool:
        seen[:] = rows_so_far(out)
        return workers_seen(seen) == {1, 2}

    wait_until(both, "rows from both workers in requests.csv", timeout=120)
    return seen


def key(row: dict[str, str]) -> tuple[str, ...]:
    return tuple(row.values())


def finish(proc: subprocess.Popen[bytes], log: Path) -> tuple[int, str]:
    """The exit code and stderr of a run that is ending; killed if it hangs."""
    try:
        code = proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"capdisc did not end:\n{log.read_text()}")
    return code, log.read_text()


def test_a_dying_worker_is_noticed_and_data_kept(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    """A worker killed mid-run: the master says so, keeps its rows, and still writes reports."""
    sim = start_simulator(slots=8, prefill_ms=5, per_token_ms=1, output_tokens=5)
    out, log = tmp_path / "run", tmp_path / "stderr.txt"
    proc = batch_on_two_workers(sim.base_url, out, log)
    try:
        wait_until(lambda: len(worker_pids(proc.pid)) == 2, "two worker processes", timeout=60)
        workers = worker_pids(proc.pid)
        # Kill a worker only once both have sent rows: what the master got must stay.
        before = rows_from_both_workers(out)
        os.kill(workers[0], signal.SIGKILL)
        killed_at = time.time()
        wait_until(lambda: "stopped responding" in log.read_text(), "the warning", timeout=60)
        noticed_at = time.time()
        wait_until(
            lambda: any(float(r["ts_start"]) > noticed_at for r in rows_so_far(out)),
            "rows from the remaining worker after the warning",
            timeout=60,
        )
        proc.send_signal(signal.SIGINT)
        code, stderr = finish(proc, log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in stderr
    summary = summary_of(out)
    assert summary["stop_reason"] == "interrupted"
    assert any("stopped responding" in w for w in summary["warnings"]), stderr
    assert code == (0 if summary["steps"] else 4), stderr
    rows = rows_of(out)
    assert workers_seen(rows) == {1, 2}
    # Nothing the master had written before the kill was lost (or rewritten) since.
    assert not Counter(map(key, before)) - Counter(map(key, rows))
    # The killed worker sent nothing more; the other one went on.
    assert len({worker_of(r) for r in rows if float(r["ts_start"]) > killed_at}) == 1
    # Every request served is one row, except the few the killed worker had in
    # flight or not yet flushed (2 users, one flush every 0.25 s).
    missing = sim.stats()["served"] - 1 - len(rows)
    assert 0 <= missing <= 10, missing


def test_ctrl_c_while_workers_start_still_writes_the_reports(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    """Ctrl+C before the workers connect: no load, but summary.json and exit 4, no traceback."""
    sim = start_simulator(slots=8, prefill_ms=5, per_token_ms=1, output_tokens=5)
    out, log = tmp_path / "run", tmp_path / "stderr.txt"
    proc = batch_on_two_workers(sim.base_url, out, log)
    try:
        # Printed right after the worker processes start (they need seconds to connect).
        wait_until(lambda: "waiting for 2 worker(s)" in log.read_text(), "the master", timeout=60)
        workers = worker_pids(proc.pid)
        proc.send_signal(signal.SIGINT)
        code, stderr = finish(proc, log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in stderr
    assert code == 4, stderr
    assert "no step completed" in stderr
    summary = summary_of(out)
    assert summary["stop_reason"] == "interrupted"
    assert summary["stop_detail"] == "SIGINT received"
    assert summary["capacity"] is None
    assert summary["steps"] == []
    assert (out / "requests.csv").exists()
    assert not [pid for pid in workers if alive(pid)]


def test_losing_every_worker_ends_the_run_with_its_reports(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    """With no worker left the run cannot go on: it stops by itself and writes everything."""
    sim = start_simulator(slots=8, prefill_ms=5, per_token_ms=1, output_tokens=5)
    out, log = tmp_path / "run", tmp_path / "stderr.txt"
    proc = batch_on_two_workers(sim.base_url, out, log)
    try:
        wait_until(lambda: len(worker_pids(proc.pid)) == 2, "two worker processes", timeout=60)
        workers = worker_pids(proc.pid)
        before = rows_from_both_workers(out)
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        code, stderr = finish(proc, log)  # no signal to capdisc: it must end by itself
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in stderr
    summary = summary_of(out)
    assert summary["stop_reason"] == "interrupted"
    assert "no worker left" in summary["stop_detail"]
    assert sum("stopped responding" in w for w in summary["warnings"]) == 2, stderr
    assert code == (0 if summary["steps"] else 4), stderr
    rows = rows_of(out)
    assert not Counter(map(key, before)) - Counter(map(key, rows))
