"""``compare stream`` end to end at small scale: verdicts, drift, overload and the gate.

Each version is an embedded simulator profile written to a temporary directory, or
one simulator started by the test and named by its URL on both sides (A/A); the
command runs in a subprocess, as a user would run it. Every comparison is 4 A B B A
block pairs of about a second each.
"""

from __future__ import annotations

import csv
import json
import shutil
import signal
from pathlib import Path

import pytest

from tests.conftest import StartSimulator
from tests.e2e.helpers import (
    rows_of,
    rows_so_far,
    run_capdisc,
    simulator_profile,
    start_capdisc,
    wait_until,
)

pytestmark = pytest.mark.slow

LOAD = ["--users", "12", "--interval", "0.5s", "--duration", "4s", "--blocks", "4"]


def profile(tmp_path: Path, name: str, per_token_ms: float, seed: int) -> Path:
    return simulator_profile(
        tmp_path,
        name,
        f"slots = 16\nprefill_ms = 20\nper_token_ms = {per_token_ms}\noutput_tokens = 20\n"
        f"jitter = 0.1\nseed = {seed}",
    )


def compare(a: str, b: str, out: Path, *extra: str) -> tuple[int, dict, str]:
    """Run a comparison; once more if capdisc found itself the limit (a client-bound block:
    a test machine too busy to measure anything, which capdisc rightly refuses to judge)."""
    for _attempt in range(2):
        shutil.rmtree(out, ignore_errors=True)
        result = run_capdisc(
            "compare", "stream", a, b, *LOAD, "--out", str(out), "--quiet", *extra, timeout=240
        )
        path = out / "summary.json"
        summary = json.loads(path.read_text()) if path.exists() else {}
        if not (summary.get("client") or {}).get("bound"):
            break
    return result.returncode, summary, result.stdout + result.stderr


def test_faster_b_is_found_and_every_output_written(tmp_path: Path) -> None:
    """B with 30% less time per token is b_faster, from 4 pairs run A B B A A B B A.

    With a TPOT limit between the two versions' time per token, B's goodput is higher.
    """
    a = profile(tmp_path, "slow", per_token_ms=10, seed=1)
    b = profile(tmp_path, "fast", per_token_ms=7, seed=2)
    code, summary, output = compare(str(a), str(b), tmp_path / "run", "--slo-tpot", "8.5ms")
    assert code == 0, output
    assert summary["slo"]["tpot_ms"] == pytest.approx(8.5)
    good_a, good_b = summary["a"]["goodput"], summary["b"]["goodput"]
    assert good_a["requests"] == summary["a"]["requests"]
    assert good_b["pct"] > 90 > 10 > good_a["pct"], (good_a, good_b)
    assert "SLO: TPOT <= 8.5 ms at p95" in output
    assert summary["schema"] == 3
    assert summary["verdict"] == "b_faster", summary["diff"]
    metrics = summary["diff"]["metrics"]
    assert metrics["tpot_p50"]["verdict"] == "faster" and metrics["tpot_p50"]["judged"]
    assert metrics["output_tokens"]["verdict"] in ("equivalent", "inconclusive")
    assert metrics[summary["decided_by"]]["verdict"] == "faster"
    assert [b["block"] for b in summary["a"]["blocks"]] == [1, 2, 3, 4]
    # Healthy servers: no queue, and what was in flight at each window's start counted
    # (a window set a tick late once counted none, and every block "built a queue").
    assert summary["overloaded"] == []
    assert all(b["in_flight_start"] > 0 for s in "ab" for b in summary[s]["blocks"])
    assert "B vs A per metric" in output
    diff = summary["diff"]
    lo, hi = diff["p50_ci95_pct"]
    assert lo < hi < 0 and diff["design"] == "paired" and diff["pairs"] == 4
    assert diff["mde_pct"] > 0 and diff["margin_pct"] == 2
    assert summary["load_reasons"] == []
    assert summary["a"]["label"] == "slow" and summary["b"]["label"] == "fast"
    assert summary["a"]["chunks_p50"] > 2 and summary["a"]["ttft_p50_ms"] is not None
    assert summary["load"]["users"] == 12 and summary["load"]["order"] == "abba"
    run = tmp_path / "run"
    for name in (
        "summary.json",
        "requests.csv",
        "compare.png",
        "compare.md",
        "locust-a.html",
        "locust-b.html",
    ):
        assert (run / name).stat().st_size > 0, name
    with (run / "requests.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    # Blocks ran A B | B A | A B | B A: the first request of each block, in time order.
    firsts: dict[tuple[str, str], float] = {}
    for row in rows:
        key = (row["version"], row["step"])
        firsts[key] = min(firsts.get(key, float("inf")), float(row["ts_start"]))
    order = [key for key, _ in sorted(firsts.items(), key=lambda item: item[1])]
    assert " ".join("".join(key).upper() for key in order) == "A1 B1 B2 A2 A3 B3 B4 A4"
    markdown = (run / "compare.md").read_text()
    assert "**Verdict: B is faster: " in markdown and "minimum detectable effect" in markdown
    assert "| metric (* decides) |" in markdown
    assert "| goodput |" in markdown


def test_same_target_twice_is_never_a_difference(tmp_path: Path) -> None:
    """A/A: the same configuration on both sides is equivalent within 10% (or inconclusive)."""
    a = profile(tmp_path, "same", per_token_ms=8, seed=5)
    code, summary, output = compare(str(a), str(a), tmp_path / "run", "--margin", "10")
    assert code == 0, output
    assert summary["verdict"] in ("equivalent", "inconclusive"), summary["diff"]


def test_drift_is_no_difference(start_simulator: StartSimulator, tmp_path: Path) -> None:
    """A/A on one server slowing down +200% a minute.

    In A B A B order B always ran later and was called slower; in A B B A pairs the
    drift cancels and only widens the interval.
    """
    sim = start_simulator(
        slots=16, prefill_ms=20, per_token_ms=8, output_tokens=20, jitter=0.1, drift_per_min=2.0
    )
    code, summary, output = compare(sim.base_url, sim.base_url, tmp_path / "run")
    assert code == 0, output
    assert summary["verdict"] not in ("b_faster", "b_slower"), summary["diff"]
    a, b = summary["a"]["p50_ms"], summary["b"]["p50_ms"]
    assert abs(b - a) / a < 0.05  # each side saw the drift alike


def test_overload_gives_no_verdict_and_the_gate_says_inconclusive(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    """a server that cannot keep up on both sides (A/A).

    8 users every 0.5 s offer 16 req/s to one slot of 100 ms (10 req/s): each side
    achieves about 10 and starts its tasks late. No verdict, the reason says why, and
    --fail-on-regression exits 5 instead of judging a load that was not the one asked.
    """
    sim = start_simulator(slots=1, prefill_ms=20, per_token_ms=4, output_tokens=20)
    result = run_capdisc(
        "compare",
        "stream",
        sim.base_url,
        sim.base_url,
        *("--users", "8", "--interval", "0.5s", "--duration", "8s", "--blocks", "2"),
        *("--fail-on-regression", "5", "--out", str(tmp_path / "run"), "--quiet"),
        timeout=240,
    )
    assert result.returncode == 5, result.stdout + result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["verdict"] == "inconclusive"
    assert summary["gate"] == "inconclusive" and summary["regression"] is False
    assert summary["verdict_reason"].startswith("unequal load:")
    reasons = " ".join(summary["load_reasons"])
    assert "A achieved" in reasons and "B achieved" in reasons and "late" in reasons
    assert summary["a"]["achieved_rps"] < 0.9 * summary["a"]["offered_rps"]
    assert "Inconclusive (exit 5): the load was unequal" in result.stdout


def test_regression_gate_and_saved_run_reuse(tmp_path: Path) -> None:
    """A saved run is reused as A without rerunning it; a slower B beyond the limit exits 1.

    A saved side has no pairs: its blocks and B's compare as two groups, with a warning.
    Saved before TTFT meant the first token (no ``ttfb_ms`` column: its ``ttft_ms`` was
    the first byte), its TTFT is named in a warning and not compared, never mixed with a
    live run's first token.
    """
    fast = profile(tmp_path, "fast", per_token_ms=7, seed=2)
    slow = profile(tmp_path, "slow", per_token_ms=10, seed=1)
    code, first, output = compare(str(fast), str(fast), tmp_path / "first")
    assert code == 0, output
    saved = tmp_path / "first" / "requests.csv"
    with saved.open(newline="") as handle:
        rows = list(csv.reader(handle))
    drop = rows[0].index("ttfb_ms")
    with saved.open("w", newline="") as handle:
        csv.writer(handle).writerows([r[:drop] + r[drop + 1 :] for r in rows])
    code, second, output = compare(
        str(tmp_path / "first"), str(slow), tmp_path / "second", "--fail-on-regression", "5"
    )
    assert code == 1, output
    assert second["verdict"] == "b_slower" and second["regression"] is True
    assert second["gate"] == "regression" and second["diff"]["design"] == "unpaired"
    assert any("not measured in alternating pairs" in w for w in second["warnings"])
    assert second["a"]["requests"] == first["a"]["requests"]
    assert second["a"]["run_dir"] == str(tmp_path / "first")
    # A's saved rows are in this run's requests.csv, written by the run's own writer.
    copied = [r for r in rows_of(tmp_path / "second") if r["version"] == "a"]
    assert len(copied) == second["a"]["requests"] + second["a"]["censored"]
    assert all(r["ts_end"] and r["ok"] in ("0", "1") for r in copied)
    ttft = second["diff"]["metrics"]["ttft_p50"]
    assert ttft["judged"] is False and ttft["change"] is None and "first byte" in ttft["note"]
    assert any("TTFT is not compared" in w for w in second["warnings"])


def test_requests_cut_by_ctrl_c_are_censored_not_failures(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    """Ctrl+C with 9 s streams in flight in A's first block: the cut requests started in
    its window are counted as censored, not as failures of A, and out of the figures."""
    sim = start_simulator(slots=16, prefill_ms=9000, per_token_ms=1, output_tokens=4)
    out = tmp_path / "run"
    proc = start_capdisc(
        "compare", "stream", sim.base_url, sim.base_url,
        "--users", "3", "--interval", "1s", "--duration", "120s", "--blocks", "1",
        "--out", str(out), "--quiet",
    )  # fmt: skip

    # Each user's first stream starts in the ramp-up; its second, late, in the window.
    def second_streams_in_flight() -> bool:
        return len(rows_so_far(out)) >= 3 and sim.stats()["in_flight"] >= 3

    wait_until(second_streams_in_flight, "every user's second stream", 40)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert "Traceback" not in stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stop_reason"] == "interrupted"
    a = summary["a"]
    assert a["censored"] >= 3 and a["failures"] == 0, a
    rows = rows_of(out)
    assert sum(r["error"] == "stopped in flight" for r in rows) >= a["censored"]
    assert any("cut in flight by the stop" in w for w in summary["warnings"])
