"""``discover batch`` end to end: the capacity found matches the simulator's U* = S * P / D.

Each test runs the real command in a subprocess against an embedded simulator
with a known capacity model, at short intervals and steps (seconds, not minutes).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.e2e.helpers import run_capdisc

pytestmark = pytest.mark.slow


def write_profile(
    tmp_path: Path,
    *,
    api: str,
    slots: int,
    prefill_ms: float,
    per_token_ms: float,
    tokens: int,
    ramp: str,
    extra_sim: str = "",
) -> Path:
    path = tmp_path / f"sim-{api}.toml"
    path.write_text(
        f"""
[target]
embedded = true
api = "{api}"
max_tokens = 256
timeout = "20s"

[simulator]
slots = {slots}
prefill_ms = {prefill_ms}
per_token_ms = {per_token_ms}
output_tokens = {tokens}
jitter = 0.05
seed = 3
{extra_sim}

[batch]
{ramp}

[tools]
{ramp}
"""
    )
    return path


def discover(
    profile: Path,
    out: Path,
    *extra: str,
    command: str = "batch",
    env: dict[str, str] | None = None,
    timeout: float = 240,
) -> tuple[int, dict, str]:
    result = run_capdisc(
        "discover",
        command,
        "--profile",
        str(profile),
        "--out",
        str(out),
        "--json",
        "--quiet",
        *extra,
        timeout=timeout,
        env={**(env or {})},
    )
    # --json prints summary.json; it is also on disk whatever the exit code.
    path = out / "summary.json"
    summary = json.loads(path.read_text()) if path.exists() else {}
    if result.stdout.strip():
        assert json.loads(result.stdout) == summary
    return result.returncode, summary, result.stderr


@pytest.mark.parametrize(
    ("api", "slots", "prefill_ms", "per_token_ms", "tokens", "interval", "ramp"),
    [
        # U* = 2 * 1.0 / 0.2 = 10 users
        (
            "openai",
            2,
            20,
            9,
            20,
            1.0,
            "start_users = 3\nstep_users = 3\nmax_users = 30\n"
            "step_duration = '4s'\ninterval = '1s'",
        ),
        # U* = 3 * 1.5 / 0.3 = 15 users
        (
            "ollama",
            3,
            30,
            10,
            27,
            1.5,
            "start_users = 4\nstep_users = 4\nmax_users = 40\n"
            "step_duration = '5s'\ninterval = '1.5s'",
        ),
    ],
)
def test_capacity_within_ten_percent_of_u_star(
    tmp_path: Path,
    api: str,
    slots: int,
    prefill_ms: float,
    per_token_ms: float,
    tokens: int,
    interval: float,
    ramp: str,
) -> None:
    """The reported capacity is within 10% of S * P / D, for both wire formats."""
    profile = write_profile(
        tmp_path,
        api=api,
        slots=slots,
        prefill_ms=prefill_ms,
        per_token_ms=per_token_ms,
        tokens=tokens,
        ramp=ramp,
    )
    u_star = slots * interval / ((prefill_ms + tokens * per_token_ms) / 1000)
    code, summary, stderr = discover(profile, tmp_path / "run")
    assert code == 0, stderr
    capacity = summary["capacity"]
    steps = [(s["users"], s["passed"], s["reasons"]) for s in summary["steps"]]
    assert capacity is not None, steps
    assert abs(capacity["users"] - u_star) <= 0.1 * u_star, (u_star, capacity, steps)
    assert summary["stop_reason"] == "slo"
    assert summary["target"]["api"] == api
    # Every output of the contract is there, and the raw records back the summary.
    run = tmp_path / "run"
    for name in ("summary.json", "requests.csv", "steps.csv", "locust.html", "capacity.png"):
        assert (run / name).stat().st_size > 0, name
    with (run / "requests.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == summary["at_stop"]["total_requests"]
    with (run / "steps.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == len(summary["steps"])


def test_reaching_max_users_reports_at_least(tmp_path: Path) -> None:
    """A target that passes every step up to --max-users is 'at least' that capacity."""
    profile = write_profile(
        tmp_path,
        api="openai",
        slots=8,
        prefill_ms=10,
        per_token_ms=2,
        tokens=10,
        ramp="start_users = 2\nstep_users = 2\nmax_users = 4\n"
        "step_duration = '2s'\ninterval = '1s'",
    )
    code, summary, stderr = discover(profile, tmp_path / "run")
    assert code == 0, stderr
    assert summary["stop_reason"] == "max_users"
    assert summary["capacity"]["users"] == 4 and summary["capacity"]["at_least"] is True


def test_failure_threshold_stops_the_run_and_keeps_the_data(tmp_path: Path) -> None:
    """At N failures the run stops at once; every report is written, exit 0."""
    profile = write_profile(
        tmp_path,
        api="openai",
        slots=4,
        prefill_ms=10,
        per_token_ms=2,
        tokens=10,
        ramp="start_users = 4\nstep_users = 4\nmax_users = 40\n"
        "step_duration = '30s'\ninterval = '1s'",
        extra_sim="[simulator.faults]\nerror_rate = 0.2",
    )
    code, summary, stderr = discover(profile, tmp_path / "run", "--failure-threshold", "3")
    assert summary["stop_reason"] == "failure_threshold", stderr
    assert summary["at_stop"]["total_requests"] > 0
    assert (tmp_path / "run" / "locust.html").exists()
    assert "the failure threshold stopped it" in (tmp_path / "run" / "report.html").read_text()
    assert code in (0, 4)  # 4 only when no step had completed yet
    with (tmp_path / "run" / "requests.csv").open() as handle:
        failures = sum(1 for row in csv.DictReader(handle) if row["ok"] == "0")
    assert failures >= 3


def test_threshold_from_environment(tmp_path: Path) -> None:
    """LOAD_TEST_FAILURE_THRESHOLD=1 stops at the first failure."""
    profile = write_profile(
        tmp_path,
        api="openai",
        slots=4,
        prefill_ms=10,
        per_token_ms=2,
        tokens=10,
        ramp="start_users = 2\nstep_users = 2\nmax_users = 4\n"
        "step_duration = '20s'\ninterval = '0.5s'",
        extra_sim="[simulator.faults]\nerror_rate = 0.3",
    )
    _, summary, stderr = discover(
        profile, tmp_path / "run", env={"LOAD_TEST_FAILURE_THRESHOLD": "1"}
    )
    assert summary["stop_reason"] == "failure_threshold", stderr
    assert summary["failure_threshold"] == 1


def test_the_readme_main_job_finds_the_demo_capacity(tmp_path: Path) -> None:
    """`capdisc discover batch` with no profile (demo) lands within 10% of its U* = 18.2."""
    from capdisc.profiles import load_profile

    demo = load_profile("demo")
    sim = demo.simulator_config
    u_star = sim.slots * demo.batch.interval / sim.service_time_s(demo.target.max_tokens)
    result = run_capdisc(
        "discover", "batch", "--out", str(tmp_path / "run"), "--json", "--quiet", timeout=300
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["target"]["profile"] == "demo"
    assert abs(summary["capacity"]["users"] - u_star) <= 0.1 * u_star, summary["steps"]
