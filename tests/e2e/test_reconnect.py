"""Servers that close connections: a reused connection found closed is retried once on a
new one, never counted as a failure; the time spent connecting is recorded apart.

Users overrun their interval on purpose, so each next request goes out the moment the
previous answer ends, on a connection the server is about to close (the simulator
closes ``close_delay_ms`` after the answer and drops what arrives meanwhile, as
llama.cpp's server does after every streamed answer).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import StartSimulator
from tests.e2e.helpers import rows_of, run_capdisc

pytestmark = pytest.mark.slow

# About 0.3 s per answer against 0.1 s pacing: every task starts late, back to back.
SLOW = {"slots": 8, "prefill_ms": 200, "per_token_ms": 5, "output_tokens": 20}


def _reconnects(rows: list[dict[str, str]]) -> int:
    return sum(int(r["reconnects"] or 0) for r in rows)


def test_close_after_every_stream(start_simulator: StartSimulator, tmp_path: Path) -> None:
    """llama.cpp's behaviour: no failed row, every request once, the retries counted."""
    sim = start_simulator(**SLOW, connections={"close_after_stream": True})
    out = tmp_path / "run"
    result = run_capdisc(
        "compare", "stream", sim.base_url, sim.base_url,
        "--model", "sim-llm", "--users", "4", "--interval", "0.1s", "--duration", "3s",
        "--blocks", "1", "--out", str(out), "--quiet",
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr
    rows = rows_of(out)
    stats = sim.stats()
    assert rows and all(r["ok"] == "1" for r in rows), {r["error"] for r in rows}
    assert len(rows) == stats["served"] - 2  # the two preflights
    assert _reconnects(rows) > 0
    assert _reconnects(rows) == stats["dropped"]  # each retry replaced one dropped request
    # A retried request paid for a new connection, and says so.
    assert all(float(r["connect_ms"]) > 0 for r in rows if int(r["reconnects"]))


def test_close_after_n_requests(start_simulator: StartSimulator, tmp_path: Path) -> None:
    """A server that closes after 3 answers on a connection: the 4th is retried, not failed."""
    sim = start_simulator(**SLOW, connections={"requests_per_connection": 3})
    out = tmp_path / "run"
    result = run_capdisc(
        "discover", "batch", "--host", sim.base_url, "--model", "sim-llm",
        "--start-users", "4", "--max-users", "4", "--step-duration", "3s",
        "--interval", "0.1s", "--out", str(out), "--quiet",
    )  # fmt: skip
    # Answers slower than the pacing: the run names it (exit 4) and writes every row.
    assert result.returncode == 4, result.stderr
    assert "constant pacing needs every answer within the interval" in result.stderr
    rows = rows_of(out)
    stats = sim.stats()
    assert rows and all(r["ok"] == "1" for r in rows), {r["error"] for r in rows}
    assert len(rows) == stats["served"] - 1
    assert _reconnects(rows) > 0 and _reconnects(rows) == stats["dropped"]


def test_idle_connections_closed_by_the_server(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    """Connections idle past the server's timeout: a new one each time, timed, no failure."""
    sim = start_simulator(
        slots=8, prefill_ms=20, per_token_ms=1, output_tokens=5,
        connections={"idle_timeout_ms": 50, "close_delay_ms": 0},
    )  # fmt: skip
    out = tmp_path / "run"
    result = run_capdisc(
        "discover", "batch", "--host", sim.base_url, "--model", "sim-llm",
        "--start-users", "3", "--max-users", "3", "--step-duration", "2s",
        "--interval", "0.4s", "--out", str(out), "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = rows_of(out)
    assert rows and all(r["ok"] == "1" for r in rows), {r["error"] for r in rows}
    assert len(rows) == sim.stats()["served"] - 1
    # Every request found its connection closed while idle: each one connected anew.
    assert all(float(r["connect_ms"]) > 0 for r in rows)
    assert sim.stats()["connections"] >= len(rows)


def test_a_kept_connection_costs_no_connect(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    """A server that keeps connections: one connect per user, then connect_ms is 0."""
    sim = start_simulator(slots=8, prefill_ms=20, per_token_ms=1, output_tokens=5)
    out = tmp_path / "run"
    result = run_capdisc(
        "discover", "batch", "--host", sim.base_url, "--model", "sim-llm",
        "--start-users", "3", "--max-users", "3", "--step-duration", "2s",
        "--interval", "0.3s", "--out", str(out), "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = rows_of(out)
    fresh = [r for r in rows if float(r["connect_ms"]) > 0]
    assert len(fresh) == 3  # each user's first request
    assert _reconnects(rows) == 0


def test_a_refused_fresh_connection_is_one_failure(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    """A failure on a new connection is a real failure: counted once, not retried."""
    sim = start_simulator(
        slots=8, prefill_ms=20, per_token_ms=1, output_tokens=5, faults={"max_connections": 2}
    )
    out = tmp_path / "run"
    result = run_capdisc(
        "discover", "batch", "--host", sim.base_url, "--model", "sim-llm",
        "--start-users", "4", "--max-users", "4", "--step-duration", "2s",
        "--interval", "0.5s", "--failure-threshold", "0", "--out", str(out), "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = rows_of(out)
    failed = [r for r in rows if r["ok"] == "0"]
    assert failed and all(r["status"] == "0" for r in failed)
    assert all(int(r["reconnects"] or 0) == 0 for r in failed)
    assert sum(r["ok"] == "1" for r in rows) == sim.stats()["served"] - 1
