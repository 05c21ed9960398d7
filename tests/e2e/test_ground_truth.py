"""Every request the target served is one row of ``requests.csv``, none lost or doubled,
whether the users run in capdisc itself or on two worker processes.

The simulator runs outside capdisc (``--host``) so its ``/stats`` ground truth can be
checked after each run; capdisc itself never reads it. With workers, users are
numbered from 1,000,000 x the worker's index, so a row tells which worker sent it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import StartSimulator
from tests.e2e.helpers import rows_of, run_capdisc, summary_of

pytestmark = pytest.mark.slow

# A run with workers starts capdisc, two worker processes and reports: on a busy 2-core
# machine each can take many seconds, so the runs get generous time limits.
RUN_TIMEOUT_S = 240
WHERE = pytest.mark.parametrize("workers", [0, 2], ids=["in-process", "two-workers"])


def workers_seen(rows: list[dict[str, str]]) -> set[int]:
    return {int(r["user"]) // 1_000_000 for r in rows}


def expected_workers(workers: int) -> set[int]:
    """The worker indexes the rows come from (0: capdisc's own users)."""
    return set(range(1, workers + 1)) if workers else {0}


def discover(kind: str, url: str, out: Path, workers: int, *extra: str) -> None:
    result = run_capdisc(
        "discover", kind, *extra, "--host", url, "--model", "sim-llm",
        "--start-users", "6", "--max-users", "6", "--step-duration", "3s",
        "--interval", "0.5s", "--workers", str(workers), "--quiet", "--out", str(out),
        timeout=RUN_TIMEOUT_S,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


@WHERE
def test_batch_rows_equal_requests_served(
    start_simulator: StartSimulator, tmp_path: Path, workers: int
) -> None:
    sim = start_simulator(slots=8, prefill_ms=5, per_token_ms=2, output_tokens=10)
    discover("batch", sim.base_url, tmp_path / "run", workers)
    rows = rows_of(tmp_path / "run")
    assert len(rows) == sim.stats()["served"] - 1  # the preflight request is not load
    assert all(r["ok"] == "1" and r["status"] == "200" for r in rows)
    assert workers_seen(rows) == expected_workers(workers)
    assert summary_of(tmp_path / "run")["steps"][0]["requests"] > 0


@WHERE
def test_tool_rounds_equal_requests_served(
    start_simulator: StartSimulator, tmp_path: Path, workers: int
) -> None:
    sim = start_simulator(slots=8, prefill_ms=5, per_token_ms=2, output_tokens=10)
    discover("tools", sim.base_url, tmp_path / "run", workers, "--tools", "2")
    rows = rows_of(tmp_path / "run")
    rounds = [r for r in rows if r["name"].startswith("round ")]
    tasks = [r for r in rows if r["name"] == "tools"]
    stats = sim.stats()
    assert len(rounds) == stats["served"] - 1
    assert stats["tool_calls"] == 2 * len(tasks)
    assert workers_seen(rows) == expected_workers(workers)


@WHERE
def test_stream_rows_chunks_and_token_figures(
    start_simulator: StartSimulator, tmp_path: Path, workers: int
) -> None:
    """A comparison's streams: one row per request, content events counted on bytes,
    token figures in order, and both versions' users on every load process."""
    sim = start_simulator(slots=16, prefill_ms=30, per_token_ms=3, output_tokens=12)
    out = tmp_path / "run"
    result = run_capdisc(
        "compare", "stream", sim.base_url, sim.base_url, "--users", "6",
        "--interval", "0.5s", "--duration", "4s", "--blocks", "1",
        "--workers", str(workers), "--out", str(out), "--quiet",
        timeout=RUN_TIMEOUT_S,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = rows_of(out)
    assert len(rows) == sim.stats()["served"] - 2  # two preflights, one per side
    # Content events only (not the role, finish and usage events nor [DONE]), and the
    # server's own token counts from the usage event.
    assert {int(r["chunks"]) for r in rows} == {12}
    assert {int(r["output_tokens"]) for r in rows} == {12}
    assert {r["tokens_estimated"] for r in rows} == {"0"}
    assert all(int(r["input_tokens"]) > 0 for r in rows)
    for r in rows:
        assert float(r["ttfb_ms"]) <= float(r["ttft_ms"]) < float(r["duration_ms"])
        assert float(r["ttft_ms"]) >= 30
        # A busy client may read every token at once: gaps can be 0, never negative.
        assert float(r["tpot_ms"]) >= 0
        assert 0 <= float(r["itl_mean_ms"]) <= float(r["itl_max_ms"])
    for version in ("a", "b"):
        mine = [r for r in rows if r["version"] == version]
        assert workers_seen(mine) == expected_workers(workers), version
