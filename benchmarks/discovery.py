"""Discovery efficiency: capdisc's ramp with refinement against a plain linear ramp.

Both methods run ``discover batch``'s load (``run_session`` with a batch ``Workload``
and a :class:`~capdisc.strategies.ramp.RampPlanner`, each session on a fresh Locust
Environment) against one embedded simulator whose capacity is known from its config:
``U* = slots * interval / service_time``. The methods only see what a client sees
(their own request records); U* is used only to score them.

- capdisc: the usual ramp (start 4, +4 users per step) that stops at the first failing
  step, bisects between the last passing and the first failing level, and confirms.
- linear: the same judge and step length, from the same start, +1 user per step (the
  resolution capdisc's refinement reaches below 34 users), no refinement, stopping at
  the first failing step; its capacity is the last passing level.

For each run it prints the load time (the session's wall time: spawn, settle, measured
windows, drains), the number of steps, the capacity found and its error against U*,
then the ratio of load times. Target: capdisc lands within 10% of U* in at most half
the linear ramp's load time. With ``--rounds N`` the methods alternate
(capdisc, linear, capdisc, linear, ...) and the totals are compared.

    .venv/bin/python benchmarks/discovery.py                 # one round each, ~5 minutes
    .venv/bin/python benchmarks/discovery.py --rounds 2 --slots 4 --service-ms 300

Load goes to 127.0.0.1 only. Timings are printed with PASS/FAIL lines, never asserted:
the exit code is 0 unless a run fails to produce a result.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_ERROR = 0.10
# "Within 10%" is inclusive: 24 users against U* = 80/3 is exactly 10% off.
_ROUNDING = 1e-9
MAX_TIME_SHARE = 0.5
CAPDISC = "capdisc"
LINEAR = "linear"


@dataclass
class Outcome:
    """What one discovery run cost and found."""

    method: str
    load_s: float
    steps: int
    capacity: int | None
    trail: str


def run_method(
    method: str,
    *,
    target: Any,
    args: argparse.Namespace,
    out_dir: Path,
    run_no: int,
) -> Outcome:
    """One discovery session with the method's ramp; returns its cost and its answer."""
    from capdisc.loadgen.context import RunContext
    from capdisc.loadgen.contract import Workload
    from capdisc.settings import RampSettings
    from capdisc.strategies.ramp import RampPlanner

    linear = method == LINEAR
    settings = RampSettings(
        start_users=args.start_users,
        step_users=1 if linear else args.step_users,
        max_users=args.max_users,
        step_duration=args.step_duration,
        interval=args.interval,
        max_failure_rate=args.max_failure_rate,
        slo_p95=None,
        refine=not linear,
        failure_threshold=0,
    )
    planner = RampPlanner(settings)
    workload = Workload(kind="batch", target=target, interval_s=args.interval, version=method)
    with RunContext(
        out_dir,
        failure_threshold=0,
        users=args.max_users,
        stop_timeout=2.0,
        records_name=f"{run_no:02d}-{method}-requests.csv",
    ) as run:
        result = run.run(workload, planner)
    if result.stop_reason is not None:
        raise RuntimeError(f"{method}: the session stopped early: {result.stop_detail}")
    capacity = planner.capacity()
    trail = " ".join(
        f"{r.users}{'' if r.passed else 'x'}{'' if r.phase == 'ramp' else r.phase[0]}"
        for r in planner.results
    )
    return Outcome(
        method=method,
        load_s=result.finished_at - result.started_at,
        steps=len(planner.results),
        capacity=None if capacity is None else capacity.users,
        trail=trail,
    )


def _wait_idle(sim: Any, limit_s: float = 30.0) -> None:
    """Let a queue left by the last overloaded step drain before the next run (bounded)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if sim.stats()["in_flight"] == 0:
            return
        time.sleep(0.5)


def _error(found: int | None, u_star: float) -> float | None:
    return None if found is None else abs(found - u_star) / u_star


def main() -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    sim = parser.add_argument_group("simulator (U* = slots x interval / service time)")
    sim.add_argument("--slots", type=int, default=4, help="requests served at once")
    sim.add_argument("--service-ms", type=float, default=400.0, help="service time (ms)")
    sim.add_argument("--jitter", type=float, default=0.05, help="service time jitter (share)")
    ramp = parser.add_argument_group("ramp (both methods)")
    ramp.add_argument("--interval", type=float, default=2.0, help="pacing interval (s)")
    ramp.add_argument("--start-users", type=int, default=4, help="users of the first step")
    ramp.add_argument("--step-users", type=int, default=4, help="capdisc's users per step")
    ramp.add_argument("--max-users", type=int, default=80, help="never above this many")
    ramp.add_argument("--step-duration", type=float, default=8.0, help="measured s per step")
    ramp.add_argument(
        "--max-failure-rate", type=float, default=1.0, help="failure rate limit per step (%%)"
    )
    parser.add_argument("--rounds", type=int, default=1, help="runs per method, alternating")
    args = parser.parse_args()

    # The engine imports locust, which patches the standard library through gevent:
    # import it before anything opens a connection or starts a process.
    import capdisc.loadgen.engine  # noqa: F401
    from capdisc.settings import TargetConfig
    from capdisc.simulator.config import SimulatorConfig
    from capdisc.simulator.process import EmbeddedSimulator
    from capdisc.target import Target

    per_token_ms = 10.0
    prefill_ms = 40.0
    tokens = max(1, round((args.service_ms - prefill_ms) / per_token_ms))
    config = SimulatorConfig(
        slots=args.slots,
        prefill_ms=prefill_ms,
        per_token_ms=per_token_ms,
        output_tokens=tokens,
        jitter=args.jitter,
        seed=7,
    )
    service_s = config.service_time_s()
    u_star = args.slots * args.interval / service_s
    print(
        f"simulator: {args.slots} slots, service time {service_s * 1000:.0f} ms "
        f"(jitter {args.jitter:.0%}), pacing {args.interval:g} s -> U* = "
        f"{args.slots} x {args.interval:g} / {service_s:g} = {u_star:.1f} users"
    )
    print(
        f"ramp: start {args.start_users}, step {args.step_users} (capdisc) or 1 (linear), "
        f"{args.step_duration:g} s measured per step after {args.interval:g} s settle, "
        f"max failure rate {args.max_failure_rate:g}%"
    )
    outcomes: list[Outcome] = []
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="capdisc-bench-") as tmp,
        EmbeddedSimulator(config) as simulator,
    ):
        target = Target(
            base_url=simulator.base_url,
            config=TargetConfig(
                model="sim-llm",
                timeout=30.0,
                prompt="How much load does this server take?",
                max_tokens=tokens,
            ),
            label="bench",
        )
        run_no = 0
        for _ in range(args.rounds):
            for method in (CAPDISC, LINEAR):
                run_no += 1
                _wait_idle(simulator)
                try:
                    outcome = run_method(
                        method, target=target, args=args, out_dir=Path(tmp), run_no=run_no
                    )
                except RuntimeError as exc:
                    print(f"error: {exc}", file=sys.stderr)
                    return 2
                outcomes.append(outcome)
                err = _error(outcome.capacity, u_star)
                print(
                    f"  run {run_no} {method:7s}: load {outcome.load_s:6.1f} s, "
                    f"{outcome.steps:2d} steps, capacity {outcome.capacity} users"
                    + ("" if err is None else f" (error {err:.1%})")
                    + f"  [{outcome.trail}]",
                    flush=True,
                )
    print("(trail: users per step; x = failed, r = refine, c = confirm)")

    summary: dict[str, dict[str, float]] = {}
    for method in (CAPDISC, LINEAR):
        runs = [o for o in outcomes if o.method == method]
        errors = [_error(o.capacity, u_star) for o in runs]
        worst = max((e if e is not None else float("inf")) for e in errors)
        load = sum(o.load_s for o in runs)
        summary[method] = {"load": load, "worst": worst}
        found = ", ".join(str(o.capacity) for o in runs)
        print(
            f"{method:7s}: load time {load:6.1f} s in {len(runs)} run(s) "
            f"(mean {load / len(runs):.1f} s), steps {statistics.mean(o.steps for o in runs):.1f}"
            f" per run, capacity {found} (worst error {worst:.1%} of U* = {u_star:.1f})"
        )
    share = summary[CAPDISC]["load"] / summary[LINEAR]["load"]
    print(
        f"load time capdisc/linear: {share:.2f} (linear/capdisc {1 / share:.2f}); "
        f"{time.monotonic() - started:.0f} s in all"
    )
    ok = summary[CAPDISC]["worst"] <= MAX_ERROR + _ROUNDING and share <= MAX_TIME_SHARE
    print(
        f"target: within {MAX_ERROR:.0%} of U* in at most half the load time: "
        f"{'PASS' if ok else 'FAIL'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
