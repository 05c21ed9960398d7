"""``compare stream`` end to end: what stops it, which prompts it sends, what it refuses to judge.

- A version that fails a tenth of its requests stops the run through the failure
  threshold (its latest 100 requests) and is the slower one: exit 1 under the gate,
  every file written (it was exit 4, "no result", which a CI let through).
- No prompt is sent twice: pairs get new prompts, and the two versions of a pair get
  prompts of the same lengths with different first tokens, so one backend's prompt cache
  serves none of them (every block replayed prompt 0, 1, 2, ... before).
- Both versions a little past their capacity build a queue within their blocks: no
  latency verdict (a verdict that grew with --duration before).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import StartSimulator
from tests.e2e.helpers import rows_of, run_capdisc, simulator_profile

pytestmark = pytest.mark.slow


def test_a_version_failing_a_tenth_stops_the_run_and_is_slower(tmp_path: Path) -> None:
    healthy = simulator_profile(
        tmp_path, "healthy", "slots = 16\nper_token_ms = 2\noutput_tokens = 20"
    )
    failing = simulator_profile(
        tmp_path,
        "failing",
        "slots = 16\nper_token_ms = 2\noutput_tokens = 20\n[simulator.faults]\nerror_rate = 0.1",
    )
    out = tmp_path / "run"
    result = run_capdisc(
        "compare", "stream", str(healthy), str(failing),
        "--users", "12", "--interval", "0.5s", "--duration", "8s", "--blocks", "2",
        "--fail-on-regression", "5", "--out", str(out), "--quiet",
        timeout=240,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stop_reason"] == "failure_threshold"
    assert summary["stop_detail"].startswith("B failed 5 of its latest")
    assert summary["broken"] == "b" and summary["verdict"] == "b_slower"
    assert summary["gate"] == "regression" and summary["decided_by"] == "broken"
    assert "Verdict: B is slower: B is broken: B failed 5 of its latest" in result.stdout
    assert summary["verdict_reason"].startswith("B is broken: B failed 5 of its latest")
    assert "Regression (exit 1): B is broken" in result.stdout
    for name in ("requests.csv", "compare.md", "compare.png", "locust-a.html"):
        assert (out / name).stat().st_size > 0, name
    b_rows = [r for r in rows_of(out) if r["version"] == "b"]
    assert sum(r["ok"] != "1" and r["error"] != "stopped in flight" for r in b_rows) >= 5
    # Stopped in B's ramp-up (no block) or in its window: then the block ends where
    # the stop was asked for, not after the wait for what was in flight.
    for block in summary["b"]["blocks"]:
        assert block["cut"] is True
        assert block["end"] <= max(float(r["ts_start"]) for r in b_rows) + 0.6


def test_no_prompt_is_sent_twice(start_simulator: StartSimulator, tmp_path: Path) -> None:
    """A/A on one caching backend: 2 pairs of synthetic prompts, no cache hit."""
    sim = start_simulator(
        slots=16, per_token_ms=2, output_tokens=8, prompt_cache=True, prefill_per_token_ms=1
    )
    out = tmp_path / "run"
    result = run_capdisc(
        "compare", "stream", sim.base_url, sim.base_url,
        "--users", "6", "--interval", "0.5s", "--duration", "3s", "--blocks", "2",
        "--prompt-tokens", "32", "--out", str(out), "--quiet",
        timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    stats = sim.stats()
    # The one hit: the second side's preflight sends the profile's prompt again.
    assert stats["served"] >= 4 * 6 and stats["prompt_cache_hits"] <= 1, stats


def test_both_versions_building_a_queue_get_no_latency_verdict(tmp_path: Path) -> None:
    """One slot of about 100 ms (A) or 90 ms (B) at 12 req/s: both are past capacity and
    queue slowly (latency stays within the 4 s pacing, so no start is late and the load
    check passes); by latency alone B was faster."""
    slot = "slots = 1\nprefill_ms = 20\noutput_tokens = 20\njitter = 0.05\nseed = 3\n"
    a = simulator_profile(tmp_path, "a", slot + "per_token_ms = 4")
    b = simulator_profile(tmp_path, "b", slot + "per_token_ms = 3.5")
    out = tmp_path / "run"
    result = run_capdisc(
        "compare", "stream", str(a), str(b),
        "--users", "48", "--interval", "4s", "--duration", "12s", "--blocks", "1",
        "--fail-on-regression", "5", "--out", str(out), "--quiet",
        timeout=300,
    )  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["load_reasons"] == [], summary["load_reasons"]  # the old check passed
    assert summary["overloaded"] == ["a", "b"], [summary[s]["blocks"] for s in "ab"]
    assert summary["verdict"] == "inconclusive" and summary["decided_by"] == "overload"
    assert "both versions build a queue" in summary["verdict_reason"]
    assert result.returncode == 5, result.stdout + result.stderr
    for side in "ab":
        block = summary[side]["blocks"][0]
        assert block["overload"] == "fail" and block["overload_reasons"], block
