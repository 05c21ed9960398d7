"""The server's own view end to end: ``--server-metrics`` against the simulator's
``/metrics`` (vLLM's names), in ``steps.csv``, ``summary.json``, ``server.csv`` and the
terminal, its cross-checks against capdisc's rows, and the two warnings they give when
another client shares the server."""

from __future__ import annotations

import csv
import threading
import time
from itertools import pairwise
from pathlib import Path

import httpx
import pytest

from tests.conftest import StartSimulator
from tests.e2e.helpers import rows_of, run_capdisc, summary_of

pytestmark = pytest.mark.slow


def _steps(run: Path) -> list[dict[str, str]]:
    with (run / "steps.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_every_step_carries_the_servers_figures_and_its_counts_match(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    """2 slots of 0.2 s at 0.5 s pacing (U* = 5): 2 users pass, 6 queue; the server's own
    running, waiting, KV and token figures are in every output, and its counters equal
    capdisc's answers (and the simulator's ground truth)."""
    sim = start_simulator(slots=2, prefill_ms=20, per_token_ms=20, output_tokens=10)
    out = tmp_path / "run"
    result = run_capdisc(
        "discover", "batch", "--host", sim.base_url, "--model", "sim-llm",
        "--start-users", "2", "--step-users", "4", "--max-users", "6", "--step-duration", "2s",
        "--interval", "0.5s", "--no-refine", "--failure-threshold", "0", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "server metrics: vLLM names at" in result.stderr
    steps = _steps(out)
    assert [s["users"] for s in steps] == ["2", "6"]
    for step in steps:
        assert float(step["server_running_max"]) <= 2.0  # never more than its slots
        assert 0.0 <= float(step["server_kv_cache_max"]) <= 1.0
        assert float(step["server_tokens_per_s"]) > 0
        assert step["server_preemptions"] == "0"
    # 2 users keep a slot busy 44% of the time: two scrapes may both find it idle. 6
    # users keep both busy: every scrape sees the KV cache (its slots) full.
    assert float(steps[1]["server_kv_cache_max"]) == 1.0
    assert float(steps[0]["server_waiting_max"]) <= 1.0
    assert float(steps[1]["server_waiting_max"]) >= 2.0  # 6 users queue on 2 slots
    summary = summary_of(out)
    for step in summary["steps"]:
        assert step["server"]["family"] == "vllm" and step["server"]["samples"] >= 2
    (server,) = summary["servers"]
    assert server["url"] == sim.base_url + "/metrics" and server["label"] == "vLLM"
    checks = {c["quantity"]: c for c in server["checks"]}
    rows = rows_of(out)
    answered = sum(r["status"] == "200" for r in rows)
    tokens = sum(int(r["output_tokens"]) for r in rows if r["status"] == "200")
    assert checks["requests"]["server"] == checks["requests"]["capdisc"] == answered
    assert checks["output_tokens"]["server"] == checks["output_tokens"]["capdisc"] == tokens
    assert checks["requests"]["ok"] and checks["output_tokens"]["ok"]
    stats = sim.stats()
    assert stats["served"] == answered + 1  # and the preflight request, before the first scrape
    assert server["excess_scrapes"] == 0
    assert not [w for w in summary["warnings"] if "the server at" in w]
    assert "Server (vLLM): at capacity (2 users) it ran" in result.stdout
    assert "at 6 users its queue reached" in result.stdout
    with (out / "server.csv").open() as handle:
        scrapes = list(csv.DictReader(handle))
    assert len(scrapes) == server["scrapes"] >= 5
    assert summary["files"]["server_csv"] == "server.csv"


def test_gauges_are_time_averages_even_when_users_repeat_whole_seconds(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    """4 users of 250 ms requests every 1 s keep 1.0 in flight on average. A scraper on a
    fixed second sees each user at the same point of its cycle every time (a constant
    count, 0 to 4: on a real server, short requests read as never running); random gaps
    between scrapes read the time average, as capdisc's own rows count it."""
    sim = start_simulator(slots=8, prefill_ms=0, per_token_ms=25, output_tokens=10)
    out = tmp_path / "run"
    result = run_capdisc(
        "discover", "batch", "--host", sim.base_url, "--model", "sim-llm",
        "--start-users", "4", "--max-users", "4", "--step-duration", "15s",
        "--interval", "1s", "--out", str(out), "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (step,) = summary_of(out)["steps"]
    start, end = step["window_start"], step["window_end"]
    rows = [r for r in rows_of(out) if float(r["ts_end"]) > start and float(r["ts_start"]) < end]
    ours = sum(min(float(r["ts_end"]), end) - max(float(r["ts_start"]), start) for r in rows) / (
        end - start
    )
    assert abs(step["server"]["running_mean"] - ours) < 0.6, (step["server"], ours)
    with (out / "server.csv").open() as handle:
        scrapes = [row for row in csv.DictReader(handle) if start <= float(row["ts"]) <= end]
    assert len({row["running"] for row in scrapes}) > 1  # not one phase of every cycle
    times = [float(row["sent"]) for row in scrapes]
    gaps = [b - a for a, b in pairwise(times)]
    assert max(gaps) - min(gaps) > 0.3 and 0.7 < sum(gaps) / len(gaps) < 1.3


def test_another_client_on_the_same_server_is_a_warning_twice(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    """Two requests of someone else always in flight: the server holds more than capdisc
    has in flight, and finishes more than capdisc's answers."""
    sim = start_simulator(slots=8, prefill_ms=20, per_token_ms=10, output_tokens=10)
    stop = threading.Event()

    def other_client() -> None:
        body = {"model": "sim-llm", "messages": [{"role": "user", "content": "someone else"}]}
        deadline = time.monotonic() + 120  # bounded, whatever happens to the test
        with httpx.Client(timeout=10.0, trust_env=False) as client:
            while not stop.is_set() and time.monotonic() < deadline:
                client.post(sim.base_url + "/v1/chat/completions", json=body)

    others = [threading.Thread(target=other_client, daemon=True) for _ in range(2)]
    for thread in others:
        thread.start()
    try:
        out = tmp_path / "run"
        result = run_capdisc(
            "discover", "batch", "--host", sim.base_url, "--model", "sim-llm",
            "--start-users", "2", "--max-users", "2", "--step-duration", "3s",
            "--interval", "0.5s", "--out", str(out), "--quiet",
        )  # fmt: skip
    finally:
        stop.set()
        for thread in others:
            thread.join(timeout=15)
    assert result.returncode == 0, result.stderr
    summary = summary_of(out)
    warnings = " | ".join(summary["warnings"])
    assert "other traffic shares this server" in warnings
    assert "another client loads this server" in warnings
    assert "other traffic shares this server" in result.stderr
    (server,) = summary["servers"]
    checks = {c["quantity"]: c for c in server["checks"]}
    assert checks["requests"]["server"] > checks["requests"]["capdisc"] * 1.01
    assert server["excess_scrapes"] >= 3


def test_a_comparison_carries_them_per_block_and_version(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    """A/A on one simulator: one page read for both versions, figures per block and
    version, and the server's counts equal both versions' answers together."""
    sim = start_simulator(slots=16, prefill_ms=20, per_token_ms=5, output_tokens=20)
    out = tmp_path / "run"
    result = run_capdisc(
        "compare", "stream", sim.base_url, sim.base_url, "--model", "sim-llm",
        "--users", "8", "--interval", "0.5s", "--duration", "2s", "--blocks", "2",
        "--out", str(out), "--quiet", timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = summary_of(out)
    (server,) = summary["servers"]
    assert server["versions"] == ["a", "b"]
    for side in ("a", "b"):
        version = summary[side]
        assert version["server"]["family"] == "vllm"
        assert 0 < version["server"]["running_max"] <= 16
        assert all(block["server"]["samples"] >= 1 for block in version["blocks"])
    checks = {c["quantity"]: c for c in server["checks"]}
    answered = sum(r["status"] == "200" for r in rows_of(out))
    assert checks["requests"]["server"] == checks["requests"]["capdisc"] == answered
    assert "Server (vLLM): A ran" in result.stdout and "; B ran" in result.stdout
    assert "Server (vLLM): A ran" in (out / "compare.md").read_text()


def test_off_reads_nothing_and_an_unreadable_url_stops_before_any_load(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    sim = start_simulator(slots=8, prefill_ms=5, per_token_ms=1, output_tokens=5)
    common = ["--host", sim.base_url, "--model", "sim-llm", "--max-users", "2",
              "--start-users", "2", "--step-duration", "1s", "--interval", "0.5s"]  # fmt: skip
    out = tmp_path / "off"
    result = run_capdisc("discover", "batch", *common, "--server-metrics", "off", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert not (out / "server.csv").exists()
    summary = summary_of(out)
    assert summary["servers"] == [] and all(s["server"] is None for s in summary["steps"])
    assert "Server (" not in result.stdout
    bad = run_capdisc(
        "discover", "batch", *common, "--server-metrics", sim.base_url + "/nope",
        "--out", str(tmp_path / "bad"),
    )  # fmt: skip
    assert bad.returncode == 3
    assert f"--server-metrics {sim.base_url}/nope: HTTP 404" in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "bad").exists()
    usage = run_capdisc("discover", "batch", *common, "--server-metrics", "sometimes")
    assert usage.returncode == 2 and "--server-metrics" in usage.stderr
    assert "Traceback" not in usage.stderr
