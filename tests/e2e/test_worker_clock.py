"""Distributed runs: worker clocks put on the master's, and every row sent before a worker goes.

``CAPDISC_TEST_WORKER_CLOCK_SKEW_S`` (test only, read by ``capdisc worker``) makes a
worker's clock read N seconds ahead as the master sees it: the times in its clock
pongs, its rows and its self-check samples. The test process shares the master's
clock, so a row cannot have ended after the moment the test first read it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import StartSimulator
from tests.e2e.helpers import CAPDISC, rows_of, rows_so_far, summary_of, wait_until

RUN_TIMEOUT_S = 240
SKEW_S = 2.0
SKEW = {"CAPDISC_TEST_WORKER_CLOCK_SKEW_S": f"{SKEW_S:g}"}


def start(log: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``capdisc ARGS`` in its own process group (a terminal's Ctrl+C is sent to a group)."""
    with log.open("wb") as handle:
        return subprocess.Popen(
            [*CAPDISC, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=handle,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )


def finish(proc: subprocess.Popen[bytes], log: Path, timeout: float = RUN_TIMEOUT_S) -> str:
    """Wait for a run to end by itself (killed, and the test failed, if it hangs)."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"capdisc did not end:\n{log.read_text()}")
    return log.read_text()


def batch_args(sim_url: str, out: Path, *extra: str) -> list[str]:
    return [
        "discover",
        "batch",
        *("--host", sim_url, "--model", "sim-llm"),
        *("--start-users", "4", "--max-users", "4"),
        *("--out", str(out)),
        *extra,
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def row_key(row: dict[str, str]) -> tuple[str, ...]:
    return tuple(row.values())


def unix(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


# -- real runs --------------------------------------------------------------------


@pytest.mark.slow
def test_rows_of_a_worker_whose_clock_is_ahead_are_on_the_masters_clock(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    """a worker 2 s ahead; its rows still end before they are read.

    Without the correction every row would be 2 s in the future when requests.csv
    shows it (rows reach the file within about a second of their end).
    """
    sim = start_simulator(slots=8, prefill_ms=5, per_token_ms=2, output_tokens=10)
    out, log = tmp_path / "run", tmp_path / "stderr.txt"
    args = batch_args(
        sim.base_url, out, "--step-duration", "4s", "--interval", "0.5s", "--workers", "1"
    )
    proc = start(log, *args, env=SKEW)
    seen: dict[tuple[str, ...], float] = {}
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            rows = rows_so_far(out)
            now = time.time()
            for row in rows:
                seen.setdefault(row_key(row), now)
            time.sleep(0.05)
        stderr = finish(proc, log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    rows = rows_of(out)
    assert len(rows) == sim.stats()["served"] - 1
    assert len(seen) >= 10, "too few rows read while the run went on"
    ahead = [float(r["ts_end"]) - seen[row_key(r)] for r in rows if row_key(r) in seen]
    assert max(ahead) < 0.1, f"rows ended up to {max(ahead):.3f} s after they were read"
    summary = summary_of(out)  # its times are whole seconds
    started, finished = unix(summary["started_at"]), unix(summary["finished_at"]) + 1
    assert all(started <= float(r["ts_start"]) <= finished for r in rows)
    measured = re.search(r"worker 1: clock ([+-][0-9.]+) s from the master's", stderr)
    assert measured is not None, stderr
    assert abs(float(measured.group(1)) - SKEW_S) < 0.05


@pytest.mark.slow
@pytest.mark.parametrize(
    ("service_ms", "cut"),
    [(1500, False), (8000, True)],
    ids=["finishing-within-stop-timeout", "cut-at-stop-timeout"],
)
def test_ctrl_c_in_the_terminal_keeps_the_rows_of_requests_in_flight(
    start_simulator: StartSimulator, tmp_path: Path, service_ms: int, cut: bool
) -> None:
    """Ctrl+C reaches the terminal's whole process group: the local workers do not die
    with their requests in flight; each request the target got is one row, those
    that outlast the stop timeout (5 s) as ``stopped in flight``."""
    sim = start_simulator(slots=16, prefill_ms=service_ms, per_token_ms=1, output_tokens=5)
    out, log = tmp_path / "run", tmp_path / "stderr.txt"
    args = batch_args(
        sim.base_url, out, "--step-duration", "60s", "--interval", "1s", "--workers", "1"
    )
    proc = start(log, *args)
    workers: list[int] = []
    try:
        wait_until(lambda: sim.stats()["in_flight"] >= 3, "requests in flight", timeout=120)
        workers = children(proc.pid)
        signalled = time.time()
        os.killpg(proc.pid, signal.SIGINT)
        stderr = finish(proc, log)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in workers:  # in their own sessions: not reached by killpg
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert "Traceback" not in stderr
    stats = sim.stats()
    rows = rows_of(out)
    assert len(rows) == stats["requests"] - 1, stderr  # the preflight has no row
    in_flight = [r for r in rows if float(r["ts_start"]) < signalled < float(r["ts_end"])]
    assert len(in_flight) >= 3
    stopped = [r for r in rows if r["error"] == "stopped in flight"]
    if cut:
        assert len(stopped) >= 3
        assert all(r["status"] == "0" and r["ok"] == "0" for r in stopped)
    else:
        assert stats["cancelled"] == 0 and not stopped, stderr


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (Linux)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


@pytest.mark.slow
def test_a_worker_stopped_by_a_signal_sends_its_rows_before_it_quits(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    """``capdisc worker`` gets SIGINT mid-step: its users finish their requests, their
    rows reach the master, then it quits, and the master ends the run (no worker left)."""
    sim = start_simulator(slots=16, prefill_ms=1500, per_token_ms=1, output_tokens=5)
    out, log, worker_log = tmp_path / "run", tmp_path / "stderr.txt", tmp_path / "worker.txt"
    port = free_port()
    worker = start(worker_log, "worker", "--master", f"127.0.0.1:{port}", env=SKEW)
    args = batch_args(
        sim.base_url,
        out,
        *("--step-duration", "60s", "--interval", "1s"),
        *("--expect-workers", "1", "--master-bind", f"127.0.0.1:{port}"),
    )
    proc = start(log, *args)
    try:
        wait_until(lambda: sim.stats()["in_flight"] >= 3, "requests in flight", timeout=120)
        signalled = time.time()
        worker.send_signal(signal.SIGINT)
        worker_stderr = finish(worker, worker_log, timeout=60)
        stderr = finish(proc, log)
    finally:
        for running in (worker, proc):
            if running.poll() is None:
                running.kill()
                running.wait()
    assert "Traceback" not in stderr + worker_stderr
    summary = summary_of(out)
    assert "no worker left" in summary["stop_detail"], stderr
    stats = sim.stats()
    rows = rows_of(out)
    assert stats["cancelled"] == 0, stderr
    assert len(rows) == stats["requests"] - 1, stderr
    # On the test's (the master's) clock, though the worker's is 2 s ahead: uncorrected,
    # the requests in flight at the signal (1.5 s long) would seem to start after it.
    in_flight = [r for r in rows if float(r["ts_start"]) < signalled < float(r["ts_end"])]
    assert len(in_flight) >= 3
