"""``compare stream`` end to end at small scale: a faster B is found, A/A is not a difference.

Each version is an embedded simulator profile written to a temporary directory;
the command runs in a subprocess, as a user would run it.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.e2e.helpers import run_capdisc

pytestmark = pytest.mark.slow

LOAD = ["--users", "12", "--interval", "0.5s", "--duration", "8s", "--blocks", "2"]


def profile(tmp_path: Path, name: str, per_token_ms: float, seed: int) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f"""
[target]
embedded = true
max_tokens = 64
timeout = "10s"

[simulator]
slots = 16
prefill_ms = 20
per_token_ms = {per_token_ms}
output_tokens = 20
jitter = 0.1
seed = {seed}
"""
    )
    return path


def compare(a: str, b: str, out: Path, *extra: str) -> tuple[int, dict, str]:
    result = run_capdisc(
        "compare", "stream", a, b, *LOAD, "--out", str(out), "--quiet", *extra, timeout=240
    )
    path = out / "summary.json"
    return result.returncode, json.loads(path.read_text()) if path.exists() else {}, result.stderr


def test_faster_b_is_found_and_every_output_written(tmp_path: Path) -> None:
    """B with 30% less time per token is b_faster, with a CI below zero."""
    a = profile(tmp_path, "slow", per_token_ms=10, seed=1)
    b = profile(tmp_path, "fast", per_token_ms=7, seed=2)
    code, summary, stderr = compare(str(a), str(b), tmp_path / "run")
    assert code == 0, stderr
    assert summary["verdict"] == "b_faster", summary["diff"]
    lo, hi = summary["diff"]["p50_ci95_pct"]
    assert lo < hi < 0 and summary["diff"]["p_value"] < 0.05
    assert summary["a"]["label"] == "slow" and summary["b"]["label"] == "fast"
    assert summary["a"]["chunks_p50"] > 2 and summary["a"]["ttft_p50_ms"] is not None
    assert summary["load"]["users"] == 12 and summary["load"]["blocks"] == 2
    run = tmp_path / "run"
    for name in (
        "summary.json",
        "requests.csv",
        "compare.png",
        "compare.md",
        "report-a.html",
        "report-b.html",
    ):
        assert (run / name).stat().st_size > 0, name
    with (run / "requests.csv").open() as handle:
        versions = {row["version"] for row in csv.DictReader(handle)}
    assert versions == {"a", "b"}
    assert (
        "B is faster" in (run / "compare.md").read_text()
        or "faster" in (run / "compare.md").read_text()
    )


def test_same_target_twice_is_no_difference(tmp_path: Path) -> None:
    """A/A: the same configuration on both sides gives no_difference."""
    a = profile(tmp_path, "same", per_token_ms=8, seed=5)
    code, summary, stderr = compare(str(a), str(a), tmp_path / "run")
    assert code == 0, stderr
    assert summary["verdict"] == "no_difference", summary["diff"]


def test_regression_gate_and_saved_run_reuse(tmp_path: Path) -> None:
    """A saved run is reused as A without rerunning it; a slower B beyond the limit exits 1."""
    fast = profile(tmp_path, "fast", per_token_ms=7, seed=2)
    slow = profile(tmp_path, "slow", per_token_ms=10, seed=1)
    code, first, stderr = compare(str(fast), str(fast), tmp_path / "first")
    assert code == 0, stderr
    code, second, stderr = compare(
        str(tmp_path / "first"), str(slow), tmp_path / "second", "--fail-on-regression", "5"
    )
    assert code == 1, stderr
    assert second["verdict"] == "b_slower" and second["regression"] is True
    assert second["a"]["requests"] == first["a"]["requests"]
    assert second["a"]["run_dir"] == str(tmp_path / "first")
