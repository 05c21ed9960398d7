"""Which requests a step is judged on: exactly its users, every request it started, none lost.

The engine runs in a subprocess (``drive``, below) with a scripted planner, against a
real simulator on loopback: the planner writes down every step as the engine handed it
over (window, censored ages, in-flight counts, rows), and the simulator's ``/stats``
says how many requests it received.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StartSimulator
from tests.e2e.helpers import rows_of, wait_for_file, wait_until

pytestmark = pytest.mark.slow

STOPPED = "stopped in flight"
REPO = Path(__file__).resolve().parents[2]


# --- the driver (runs in its own process: locust patches the standard library) -----------


def drive(spec_path: str) -> None:
    """Run one session of scripted steps; write what the planner saw to ``steps.json``."""
    from capdisc.loadgen.context import RunContext  # imports locust first
    from capdisc.loadgen.contract import Step, Workload
    from capdisc.records import RequestRecord
    from capdisc.settings import TargetConfig
    from capdisc.target import Target

    spec = json.loads(Path(spec_path).read_text())
    out = Path(spec["out"])
    seen: list[dict[str, Any]] = []
    asked: list[dict[str, Any]] = []

    def record(step: Step, rows: Sequence[RequestRecord], how: str) -> None:
        fields = ("applied_at", "window_start", "window_end", "closed_at", "censored_ms")
        fields += ("in_flight_at_start", "in_flight_at_end")
        entry = {name: getattr(step, name, None) for name in fields}
        entry.update(index=step.index, users=step.users, how=how)
        entry["rows"] = [r._asdict() for r in rows if not r.name.startswith("round ")]
        seen.append(entry)
        (out / "steps.json").write_text(json.dumps(seen))

    class Script:
        needs_rows = True

        def __init__(self) -> None:
            self.steps = [Step(index=i + 1, **s) for i, s in enumerate(spec["steps"])]

        def first_step(self) -> Step:
            return self.steps[0]

        def next_step(self, finished: Step, rows: Sequence[RequestRecord]) -> Step | None:
            record(finished, rows, "finished")
            return self.steps[finished.index] if finished.index < len(self.steps) else None

        def abandon_step(
            self, step: Step, rows: Sequence[RequestRecord], stopped_at: float, why: str
        ) -> None:
            record(step, rows, "abandoned")

        def decided_early(
            self, step: Step, rows: Sequence[RequestRecord], remaining_s: float
        ) -> bool:
            asked.append({"index": step.index, "censored": len(step.censored_ms)})
            (out / "asked.json").write_text(json.dumps(asked))
            return step.index in spec.get("decided_early", [])

        def describe(self) -> str:
            return "script"

    class Marker:
        """Progress sink that says, as a file, when the first window has started."""

        def __init__(self, script: Script) -> None:
            self.script = script

        def update(self, snapshot: object) -> None:
            start = self.script.steps[0].window_start
            if start is not None and time.time() > start:
                (out / "window-started").touch()

        def message(self, text: str) -> None:
            pass

    script = Script()
    config = TargetConfig(timeout=spec["timeout"], max_tokens=4)
    target = Target(base_url=spec["url"], config=config, label="sim")
    workload = Workload(kind=spec["kind"], target=target, interval_s=spec["interval"])
    users = max(s["users"] for s in spec["steps"])
    with RunContext(
        out,
        failure_threshold=spec["failure_threshold"],
        users=users,
        stop_timeout=spec["stop_timeout"],
        progress=Marker(script),
    ) as run:
        result = run.run(workload, script)
    (out / "session.json").write_text(
        json.dumps(
            {
                "warnings": result.warnings,
                "stop_reason": result.stop_reason,
                "failures": result.failures,
                "cut": result.cut,
            }
        )
    )


def start_drive(
    tmp_path: Path,
    url: str,
    steps: list[dict[str, Any]],
    *,
    interval: float = 1.0,
    timeout: float = 20.0,
    stop_timeout: float = 5.0,
    kind: str = "batch",
    failure_threshold: int = 0,
    decided_early: Sequence[int] = (),
) -> tuple[subprocess.Popen[str], Path]:
    out = tmp_path / "run"
    out.mkdir()
    spec = {
        "url": url,
        "out": str(out),
        "steps": steps,
        "interval": interval,
        "timeout": timeout,
        "stop_timeout": stop_timeout,
        "kind": kind,
        "failure_threshold": failure_threshold,
        "decided_early": list(decided_early),
    }
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    code = (
        "import capdisc.loadgen.context\n"  # locust patches before anything else loads
        "from tests.e2e.test_step_membership import drive\n"
        f"drive({str(spec_path)!r})\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,  # where ``tests`` imports from
    )
    return proc, out


def run_drive(
    tmp_path: Path, url: str, steps: list[dict[str, Any]], **kw: Any
) -> tuple[list[dict[str, Any]], Path]:
    proc, out = start_drive(tmp_path, url, steps, **kw)
    _, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
    return json.loads((out / "steps.json").read_text()), out


def session_of(out: Path) -> dict[str, Any]:
    return json.loads((out / "session.json").read_text())


def started_in(rows: list[dict[str, Any]], start: float, end: float) -> list[dict[str, Any]]:
    return [r for r in rows if start <= float(r["ts_start"]) < end]


# --- a step measures only once exactly its users are running ------------------------


def test_a_step_after_a_drain_runs_exactly_its_users(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    """10 users busy with 2.5 s answers, then 7 after a 1 s drain: 7 fresh users, all working.

    Before the fix the 10 users still finishing a request counted as running, the new
    level spawned nobody, and the 7-user window saw no task start at all.
    """
    sim = start_simulator(slots=64, prefill_ms=2500, per_token_ms=0, output_tokens=1)
    steps, out = run_drive(
        tmp_path,
        sim.base_url,
        [
            {"users": 10, "hold_s": 1.0, "settle_s": 1.0},
            {"users": 7, "hold_s": 3.0, "settle_s": 1.0, "drain_s": 1.0},
        ],
    )
    first, second = steps
    assert (first["users"], second["users"]) == (10, 7)
    rows = rows_of(out)
    first_users = {r["user"] for r in rows if float(r["ts_start"]) < second["applied_at"]}
    assert len(first_users) == 10
    window = started_in(rows, second["window_start"], second["window_end"])
    window_users = {r["user"] for r in window}
    assert len(window_users) == 7, window
    assert not window_users & first_users  # the old users are gone
    # The drain lasted until nothing of ours was in flight: no request of step 1 ended
    # after the new users started.
    spawned = min(float(r["ts_start"]) for r in rows if r["user"] in window_users)
    assert all(float(r["ts_end"]) <= spawned for r in rows if r["user"] in first_users)
    assert second["in_flight_at_start"] == 7  # 2.5 s answers at 1 s pacing: always busy
    assert {r["step"] for r in window} == {"2"}
    assert session_of(out)["warnings"] == []


# --- every request belongs to the step in which it started -------------------------


def test_requests_belong_to_the_step_they_started_in(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    """Slow answers that end after the window are in the planner's rows; past the bound, censored."""
    sim = start_simulator(slots=64, prefill_ms=1500, per_token_ms=0, output_tokens=1)
    steps, out = run_drive(
        tmp_path,
        sim.base_url,
        [
            {"users": 4, "hold_s": 2.0, "settle_s": 1.0},
            {"users": 4, "hold_s": 2.0, "settle_s": 0.0, "await_s": 0.2},
        ],
        interval=1.0,
    )
    rows = rows_of(out)
    first, second = steps
    # Every request started in the first window reached the planner, with those that
    # ended after the window (awaited, within the 20 s timeout): nothing censored.
    expected = started_in(rows, first["window_start"], first["window_end"])
    seen = started_in(first["rows"], first["window_start"], first["window_end"])
    assert len(expected) >= 4
    assert sorted(float(r["ts_start"]) for r in seen) == sorted(
        float(r["ts_start"]) for r in expected
    )
    assert any(float(r["ts_end"]) > first["window_end"] for r in seen)
    assert first["censored_ms"] == []
    assert first["in_flight_at_end"] >= 1
    # The second step awaited only 0.2 s: what was still in flight then is censored,
    # with its age (a lower bound on its 1.5 s duration), and is not among the rows.
    censored = second["censored_ms"]
    assert censored, second
    assert all(150 <= age <= 1500 for age in censored), censored
    window = started_in(rows, second["window_start"], second["window_end"])
    passed = started_in(second["rows"], second["window_start"], second["window_end"])
    assert len(passed) + len(censored) == len(window)
    assert session_of(out)["warnings"] == []


def test_a_step_decided_early_is_closed_at_once_its_requests_censored(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    """The planner says the first step's verdict is decided while its 3 s answers are
    awaited: the step closes at once (not after 3 s), those answers are censored at
    their ages, and each still gets its row (in the next step's rows)."""
    sim = start_simulator(slots=64, prefill_ms=3000, per_token_ms=0, output_tokens=1)
    steps, out = run_drive(
        tmp_path,
        sim.base_url,
        [
            {"users": 4, "hold_s": 2.0, "settle_s": 0.0},
            {"users": 4, "hold_s": 1.0, "settle_s": 0.0},
        ],
        interval=1.0,
        decided_early=[1],
    )
    first, second = steps
    asked = json.loads((out / "asked.json").read_text())
    assert asked[0] == {"index": 1, "censored": len(first["censored_ms"])}
    # Asked once the window ended, answered at once: well before the 3 s answers end.
    assert first["closed_at"] - first["window_end"] < 2.0
    window = started_in(rows_of(out), first["window_start"], first["window_end"])
    assert len(window) >= 4 and len(first["censored_ms"]) == len(window)
    assert all(0 < age < 3000 for age in first["censored_ms"])
    later = started_in(second["rows"], first["window_start"], first["window_end"])
    assert len(later) == len(window)  # every censored request has its row
    # The second step was awaited: asked, never decided early.
    assert {a["index"] for a in asked} <= {1, 2}
    assert second["censored_ms"] == []


# --- requests cut at stop get a row -------------------------------------------------


def test_requests_cut_at_stop_have_rows(start_simulator: StartSimulator, tmp_path: Path) -> None:
    """Ctrl+C with 6 s answers in flight and 1 s to finish: each cut request has its row."""
    sim = start_simulator(slots=64, prefill_ms=6000, per_token_ms=0, output_tokens=1)
    proc, out = start_drive(
        tmp_path,
        sim.base_url,
        [{"users": 4, "hold_s": 60.0, "settle_s": 0.0}],
        stop_timeout=1.0,
    )
    wait_for_file(out / "window-started")
    wait_until(lambda: sim.stats()["in_flight"] >= 4, "every user's first request in flight")
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    rows = rows_of(out)
    assert len(rows) == sim.stats()["requests"] >= 4
    cut = [r for r in rows if r["error"] == STOPPED]
    assert len(cut) == len(rows)  # none of the 6 s answers could finish
    for r in cut:
        assert (r["status"], r["ok"]) == ("0", "0")
        duration_s = float(r["duration_ms"]) / 1000
        assert 0.9 < duration_s < 6
        assert abs(float(r["ts_end"]) - float(r["ts_start"]) - duration_s) < 0.01
    # The planner's last look at the step includes them, and they did not end the run
    # as failures of the target.
    (abandoned,) = json.loads((out / "steps.json").read_text())
    assert abandoned["how"] == "abandoned"
    assert sum(r["error"] == STOPPED for r in abandoned["rows"]) == len(cut)
    assert session_of(out)["stop_reason"] == "interrupted"


def test_requests_cut_when_the_planner_ends_are_not_failures(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    """The planner ends with 6 s answers in flight: censored for it, cut rows, no threshold.

    The cut rows come after the planner ended the session: with a threshold of 1 they
    must not turn its end into a failure-threshold stop.
    """
    sim = start_simulator(slots=64, prefill_ms=6000, per_token_ms=0, output_tokens=1)
    steps, out = run_drive(
        tmp_path,
        sim.base_url,
        [{"users": 3, "hold_s": 1.0, "settle_s": 0.0, "await_s": 0.0}],
        stop_timeout=1.0,
        failure_threshold=1,
    )
    (step,) = steps
    rows = rows_of(out)
    assert len(rows) == sim.stats()["requests"] >= 3
    assert all(r["error"] == STOPPED for r in rows)
    assert step["rows"] == []  # nothing had ended when the planner looked
    window = started_in(rows, step["window_start"], step["window_end"])
    assert window and len(step["censored_ms"]) == len(window)
    session = session_of(out)
    assert session["stop_reason"] is None  # the planner ended it, not the threshold
    assert (session["failures"], session["cut"]) == (0, len(rows))
