"""``discover tools``: exactly N tool calls per task, checked against the simulator's counters.

The simulator runs outside capdisc (``--host``), so after the run its ``/stats``
ground truth can be compared with what capdisc recorded; the method itself never
reads it. U* = S * P / ((N + 1) * D).
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import StartSimulator
from tests.e2e.helpers import run_capdisc

pytestmark = pytest.mark.slow

SERVICE_S = 0.1  # 10 ms prefill + 9 tokens x 10 ms


def run_tools(
    url: str, out: Path, tools: int, interval: float, *extra: str
) -> tuple[int, dict, str]:
    result = run_capdisc(
        "discover",
        "tools",
        "--host",
        url,
        "--model",
        "sim-llm",
        "--tools",
        str(tools),
        "--interval",
        f"{interval}s",
        "--start-users",
        "3",
        "--step-users",
        "3",
        "--max-users",
        "30",
        "--step-duration",
        f"{max(4.0, 4 * interval)}s",
        "--out",
        str(out),
        "--quiet",
        "--json",
        *extra,
        timeout=300,
    )
    path = out / "summary.json"
    return result.returncode, json.loads(path.read_text()) if path.exists() else {}, result.stderr


# Slots and pacing chosen so that U* = 10 users for every N: no tool call, the
# command's own example (2), and a longer chain (3).
@pytest.mark.parametrize(("tools", "slots", "interval"), [(0, 2, 0.5), (2, 4, 0.75), (3, 4, 1.0)])
def test_exactly_n_tool_calls_and_capacity(
    start_simulator: StartSimulator, tmp_path: Path, tools: int, slots: int, interval: float
) -> None:
    """Every task makes N calls (ground truth agrees) and capacity is within 10% of U*."""
    sim = start_simulator(
        slots=slots, prefill_ms=10, per_token_ms=10, output_tokens=9, jitter=0.05, seed=tools
    )
    for _attempt in range(2):
        sim.reset_stats()
        shutil.rmtree(tmp_path / "run", ignore_errors=True)
        code, summary, stderr = run_tools(sim.base_url, tmp_path / "run", tools, interval)
        # Once more when capdisc found itself the limit (a machine too busy to measure:
        # capdisc rightly reports no capacity then).
        if not any(s.get("client_bound") for s in summary.get("steps", [])):
            break
    assert code == 0, stderr
    info = summary["tools"]
    assert info["per_task"] == tools and info["wrong_count"] == 0
    with (tmp_path / "run" / "requests.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    tasks = [r for r in rows if r["name"] == "tools"]
    rounds = [r for r in rows if r["name"].startswith("round ")]
    assert len(tasks) == info["tasks"] > 0
    assert all(r["ok"] == "1" and r["tool_calls"] == str(tools) for r in tasks)
    assert len(rounds) == (tools + 1) * len(tasks)
    stats = sim.stats()
    assert stats["tool_calls"] == tools * len(tasks)
    assert stats["served"] == len(rounds) + 1  # + the preflight request
    u_star = slots * interval / ((tools + 1) * SERVICE_S)
    capacity = summary["capacity"]
    steps = [(s["users"], s["passed"], s["reasons"]) for s in summary["steps"]]
    assert capacity is not None and abs(capacity["users"] - u_star) <= 0.1 * u_star, (u_star, steps)
    assert len(summary["steps"][0]["round_p50_ms"]) == tools + 1
    assert info["duration_cv"] is not None and info["deterministic"] is True
    # capdisc's own page of the run, with its capacity (opened in a browser for the other
    # commands by test_report_html.py: the same discovery page).
    assert summary["files"]["report_html"] == "report.html"
    page = (tmp_path / "run" / "report.html").read_text()
    assert f"Capacity: {capacity['users']} users" in page


def test_wrong_count_fails_the_task(start_simulator: StartSimulator, tmp_path: Path) -> None:
    """A server-orchestrated target that makes another count fails every task, by name."""
    sim = start_simulator(slots=4, prefill_ms=5, per_token_ms=1, output_tokens=5)
    profile = tmp_path / "agent.toml"
    profile.write_text(
        f"""
[target]
host = "{sim.base_url}"
model = "sim-llm"
[tools]
orchestration = "server"
# The template asks for one call more than the task expects.
server_body = '{{"model": "{{model}}", "prompt": "{{prompt}}", "tool_calls": 3}}'
"""
    )
    result = run_capdisc(
        "discover",
        "tools",
        "--profile",
        str(profile),
        "--tools",
        "2",
        "--start-users",
        "2",
        "--max-users",
        "2",
        "--step-duration",
        "2s",
        "--interval",
        "0.5s",
        "--failure-threshold",
        "3",
        "--out",
        str(tmp_path / "run"),
        "--quiet",
        timeout=120,
    )
    assert result.returncode in (0, 4), result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["stop_reason"] == "failure_threshold"
    assert summary["tools"]["wrong_count"] >= 3
    with (tmp_path / "run" / "requests.csv").open() as handle:
        errors = {r["error"] for r in csv.DictReader(handle) if r["ok"] == "0"}
    assert errors == {"expected 2 tool calls, got 3"}


def test_server_orchestrated_task_counts_match(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    """Server-orchestrated: one request per task, the count read back and checked."""
    sim = start_simulator(slots=4, prefill_ms=5, per_token_ms=1, output_tokens=5)
    profile = tmp_path / "agent.toml"
    profile.write_text(
        f'[target]\nhost = "{sim.base_url}"\nmodel = "sim-llm"\n[tools]\norchestration = "server"\n'
    )
    result = run_capdisc(
        "discover",
        "tools",
        "--profile",
        str(profile),
        "--tools",
        "2",
        "--start-users",
        "2",
        "--max-users",
        "2",
        "--step-duration",
        "2s",
        "--interval",
        "0.5s",
        "--out",
        str(tmp_path / "run"),
        "--quiet",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["tools"]["orchestration"] == "server"
    assert summary["tools"]["wrong_count"] == 0 and summary["tools"]["tasks"] > 0
    assert sim.stats()["tool_calls"] == 2 * summary["tools"]["tasks"]
