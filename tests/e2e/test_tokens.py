"""Token-level truth against the simulator: first token apart from first byte, reasoning
first, token counts from usage for streams, batch and tools."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from tests.conftest import StartSimulator
from tests.e2e.helpers import rows_of, run_capdisc, summary_of

pytestmark = pytest.mark.slow


def _compare(url: str, out: Path, *extra: str) -> None:
    result = run_capdisc(
        "compare", "stream", url, url, "--model", "sim-llm", "--users", "3",
        "--interval", "1s", "--duration", "4s", "--blocks", "1", "--out", str(out), "--quiet",
        *extra,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr


def test_an_early_role_event_is_not_the_first_token(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    """A gateway that sends the role event at once and the first token 500 ms later:
    ttfb is the role event, ttft the token (capdisc used to call the role event ttft)."""
    sim = start_simulator(
        slots=8, prefill_ms=500, per_token_ms=2, output_tokens=8, early_role_event=True
    )
    out = tmp_path / "run"
    _compare(sim.base_url, out)
    rows = rows_of(out)
    assert rows and all(r["ok"] == "1" for r in rows)
    assert all(float(r["ttft_ms"]) >= 500 for r in rows)
    assert statistics.median(float(r["ttft_ms"]) - float(r["ttfb_ms"]) for r in rows) >= 250
    summary = summary_of(out)
    assert summary["a"]["ttft_p50_ms"] >= 500
    assert summary["a"]["tokens"]["ttfb"]["p50_ms"] < summary["a"]["ttft_p50_ms"]


def test_reasoning_is_the_first_token_and_counts_as_output(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    """Reasoning tokens come first: they are tokens (ttft, output tokens), the usage says so."""
    sim = start_simulator(
        slots=8, prefill_ms=50, per_token_ms=60, output_tokens=6, reasoning_tokens=4
    )
    out = tmp_path / "run"
    _compare(sim.base_url, out)
    rows = rows_of(out)
    assert rows and all(r["ok"] == "1" for r in rows)
    # 4 reasoning events + 6 content events, and the usage's 10 output tokens.
    assert {(r["chunks"], r["output_tokens"], r["tokens_estimated"]) for r in rows} == {
        ("10", "10", "0")
    }
    # The first token is the first reasoning token: about the prefill, 9 tokens (540 ms)
    # before the end. Medians: a client starved of CPU may read a request's events at once.
    ttft = statistics.median(float(r["ttft_ms"]) for r in rows)
    assert ttft < statistics.median(float(r["duration_ms"]) for r in rows) - 300
    summary = summary_of(out)
    measured = summary["a"]["tokens"]
    assert measured["requests"] > 0 and measured["output_tokens"] == 10 * measured["requests"]
    assert summary["a"]["tokens"]["output_tokens_per_s"] > 0
    assert summary["diff"]["tpot_p50_pct"] is not None


def test_batch_and_tool_rows_carry_the_usage(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    """Non-streamed answers: output and input tokens from their usage, per round and task."""
    sim = start_simulator(slots=8, prefill_ms=10, per_token_ms=1, output_tokens=7)
    batch = tmp_path / "batch"
    result = run_capdisc(
        "discover", "batch", "--host", sim.base_url, "--model", "sim-llm",
        "--start-users", "2", "--max-users", "2", "--step-duration", "2s",
        "--interval", "0.5s", "--out", str(batch), "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = rows_of(batch)
    assert rows and {r["output_tokens"] for r in rows} == {"7"}
    assert all(int(r["input_tokens"]) > 0 and r["tokens_estimated"] == "0" for r in rows)
    assert summary_of(batch)["steps"][0]["tokens"]["output_tokens"] > 0
    tools = tmp_path / "tools"
    result = run_capdisc(
        "discover", "tools", "--tools", "1", "--host", sim.base_url, "--model", "sim-llm",
        "--start-users", "2", "--max-users", "2", "--step-duration", "2s",
        "--interval", "1s", "--out", str(tools), "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = rows_of(tools)
    tasks = [r for r in rows if r["name"] == "tools"]
    rounds = [r for r in rows if r["name"].startswith("round ")]
    assert tasks and rounds
    by_task = sum(int(r["output_tokens"]) for r in tasks if r["ok"] == "1")
    assert by_task > 0 and all(r["output_tokens"] for r in rounds)
