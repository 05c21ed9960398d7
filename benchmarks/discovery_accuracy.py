"""Discovery accuracy: the capacity capdisc reports against U* on servers that misbehave.

Issue 11's matrix: each simulated server below has a capacity U* known from its
configuration; each run starts one simulator (seeded) on 127.0.0.1 and runs the real
command, ``python -m capdisc discover batch|tools --host URL ...``, in a subprocess,
then reads its ``summary.json``. Only the score uses U*; capdisc sees what a client sees.

Servers (P = pacing interval, S = service time of one request alone, k =
``slowdown_per_slot``); "capacity" is the most users whose load the server sustains
with no failure beyond the step's noise:

1. ``anchor``: 4 slots x 400 ms at P = 2 s, ±5% jitter. U* = slots x P / S = 20 users
   (10 req/s): the speed anchor of the issue.
2. ``long``: 4 slots x 5 s at P = 20 s, 60 s steps. U* = 4 x 20 / 5 = 16 users.
3. ``batching``: 4 slots, no prefill, 32 tokens x 12.5 ms = 0.4 s alone, k = 1/3 (the
   latency doubles from one busy slot to four), ±10% jitter, 6 s steps (30 requests at
   U*: three intervals, the fewest in which a noisy latency trend can be told from a
   climb; with two, every step was inconclusive and extended). Throughput busy / S(busy) is highest with every slot busy, so
   U* = slots x P / (S x (1 + k (slots - 1))) = 4 x 2 / 0.8 = 10 users.
4. ``jitter30``: the anchor with ±30% jitter per request (mean 1). U* = 20 users.
5. ``shed503``: the anchor with ``queue_limit`` 8: beyond 8 waiting requests it answers
   503 at once. It serves at most slots / S req/s and sheds the excess, so U* = 20
   users again; above it the queue fills (in 4 s at 24 users) and the excess gets 503s.
   A smaller queue sheds below U*: with ``queue_limit`` 4, the clusters in capdisc's
   user phases overflow it at 16 users (6% 503s, every interval, the same user).
6. ``slowfail``: fast (16 slots x 0.1 s, 160 users of slot capacity at P = 1 s) but
   once more than 19 requests arrive within 2 s (``overload_rps`` 9.5) every newcomer
   gets HTTP 500 after 12 s. U* = ceil(R x P) - 1 = 9 users (9 req/s), the most whose
   rate stays below R; 10 users fail. The issue's case 1 server.
7. ``tools``: ``discover tools --tools 2`` on the anchor's simulator at P = 3 s: a task
   is 3 model calls, U* = slots x P / (3 x S) = 4 x 3 / 1.2 = 10 users.
8. ``ollama``: the anchor over Ollama's ``/api/chat``. U* = 20 users.

Every run uses ``--failure-threshold 0``: the threshold is a safety stop, not a
measurement, and the default (5 failed requests) would end the 503 and slow-fail
servers' runs at their first overloaded step, before any refinement. ``--max-users``
is at most about 2.5 x U*. The simulator's seed is the run's seed, and so is
capdisc's ``--seed`` when ``discover`` has that flag.

Per run it prints U*, the reported capacity (``capacity.users``; any other field of
``capacity`` such as an interval or a ``confirmed`` flag as found), its error against
U*, the load time (``finished_at - started_at``) and that of a linear ramp, computed,
not run: steps of 1 user from 1 to floor(U*) + 1, each one settling interval plus the
same measured step length (no spawning, drains or refinement, so a lower bound).
Then per server and overall: the share of runs within 5% of U* (target >= 95%), runs
that report a confirmed level >= 1.05 x U* (target none; in schema 1 summaries a
level counts as confirmed when a passing "confirm" step ran at it), the median ratio
of load time to the linear ramp's (target <= 0.5), and the anchor's load time
(target < 90 s).

    .venv/bin/python benchmarks/discovery_accuracy.py --quick        # ~5 min
    .venv/bin/python benchmarks/discovery_accuracy.py --seeds 1      # every server once, ~20 min
    .venv/bin/python benchmarks/discovery_accuracy.py                # 8 x 5 runs, ~1.7 h
    .venv/bin/python benchmarks/discovery_accuracy.py --servers anchor,slowfail --seeds 3

    # the capdisc of a commit (its simulators stay this tree's, which has the faults):
    git archive HEAD src | tar -x -C /tmp/head
    .venv/bin/python benchmarks/discovery_accuracy.py --capdisc-src /tmp/head/src --seeds 1

Load goes to 127.0.0.1 only. Verdicts are printed, never asserted: the exit code is 0
unless a run produced no summary.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from capdisc.simulator.config import SimulatorConfig
from capdisc.simulator.process import EmbeddedSimulator

WITHIN = 0.05
MIN_WITHIN_SHARE = 0.95
MAX_TIME_RATIO = 0.5
ANCHOR_MAX_S = 90.0
QUICK_SERVERS = ("anchor", "batching", "slowfail")
# The capacity fields of schema 1: anything else in ``capacity`` is printed as found.
_SCHEMA1_CAPACITY = {"users", "rps", "p50_ms", "p95_ms", "failure_rate", "at_least", "goodput"}

_ANCHOR_SIM: dict[str, Any] = {
    "slots": 4,
    "prefill_ms": 40.0,
    "per_token_ms": 10.0,
    "output_tokens": 36,
    "jitter": 0.05,
}


@dataclass(frozen=True)
class Server:
    """One simulated server, the discovery settings used against it, and its U*."""

    name: str
    sim: dict[str, Any]
    interval: float
    step_s: float
    start: int
    step: int
    max_users: int
    formula: str
    command: str = "batch"
    api: str = "openai"
    timeout_s: float = 30.0
    extra: tuple[str, ...] = ()

    def config(self, seed: int) -> SimulatorConfig:
        return SimulatorConfig(**self.sim, seed=seed)

    @property
    def rounds(self) -> int:
        """Model calls per task: the tool rounds and the answer."""
        if self.command != "tools":
            return 1
        return int(self.extra[self.extra.index("--tools") + 1]) + 1

    @property
    def u_star(self) -> float:
        """The capacity in users, from the simulator's configuration (see the docstring)."""
        cfg = self.config(0)
        reasoning, content = cfg.answer_tokens(cfg.output_tokens)
        full = 1.0 + cfg.slowdown_per_slot * (cfg.slots - 1)
        service_s = (cfg.prefill_ms + (reasoning + content) * cfg.per_token_ms * full) / 1000
        users = cfg.slots * self.interval / (self.rounds * service_s)
        if cfg.faults.overload_rps is not None:
            users = min(users, math.ceil(cfg.faults.overload_rps * self.interval) - 1)
        return round(users, 9)  # 9.999999999999998 is 10

    def linear_s(self) -> float:
        """Load time of a linear ramp from 1 user to floor(U*) + 1 (computed, not run)."""
        return (math.floor(self.u_star + 1e-9) + 1) * (self.interval + self.step_s)


_LONG = {**_ANCHOR_SIM, "prefill_ms": 100.0, "per_token_ms": 100.0, "output_tokens": 49}
_BATCHING = {"slots": 4, "prefill_ms": 0.0, "per_token_ms": 12.5, "output_tokens": 32,
             "slowdown_per_slot": 1 / 3, "jitter": 0.10}  # fmt: skip
_SLOWFAIL = {"slots": 16, "prefill_ms": 20.0, "per_token_ms": 10.0, "output_tokens": 8,
             "jitter": 0.05, "faults": {"overload_rps": 9.5, "overload_window_s": 2.0,
                                        "overload_fail_after_s": 12.0}}  # fmt: skip
# name, simulator, interval s, step s, start users, step users, max users, U* formula
SERVERS: dict[str, Server] = {s.name: s for s in (
    Server("anchor", _ANCHOR_SIM, 2.0, 8.0, 4, 4, 40, "4 x 2 / 0.4"),
    Server("long", _LONG, 20.0, 60.0, 4, 4, 40, "4 x 20 / 5", timeout_s=60.0),
    Server("batching", _BATCHING, 2.0, 6.0, 2, 2, 24, "4 x 2 / (0.4 x (1 + 3/3))"),
    Server("jitter30", {**_ANCHOR_SIM, "jitter": 0.30}, 2.0, 8.0, 4, 4, 40, "4 x 2 / 0.4"),
    Server("shed503", {**_ANCHOR_SIM, "queue_limit": 8}, 2.0, 8.0, 4, 4, 40, "4 x 2 / 0.4"),
    Server("slowfail", _SLOWFAIL, 1.0, 10.0, 3, 3, 24, "ceil(9.5 x 1) - 1"),
    Server("tools", _ANCHOR_SIM, 3.0, 9.0, 2, 2, 24, "4 x 3 / (3 x 0.4)", command="tools",
           extra=("--tools", "2")),
    Server("ollama", _ANCHOR_SIM, 2.0, 8.0, 4, 4, 40, "4 x 2 / 0.4", api="ollama"),
)}  # fmt: skip


@dataclass
class Run:
    """What one discovery run reported, scored against U*."""

    server: Server
    seed: int
    exit_code: int = 0
    capacity: int | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    confirmed: bool = False
    load_s: float | None = None
    trail: str = ""
    failed_share: float | None = None  # failed requests / requests over the run's steps
    note: str = ""

    @property
    def error(self) -> float | None:
        if self.capacity is None:
            return None
        return (self.capacity - self.server.u_star) / self.server.u_star

    @property
    def within(self) -> bool:
        return self.error is not None and abs(self.error) <= WITHIN + 1e-9

    @property
    def over(self) -> bool:
        """A confirmed level at or above 1.05 x U*."""
        u = self.server.u_star
        return self.confirmed and self.capacity is not None and self.capacity >= 1.05 * u - 1e-9

    @property
    def ratio(self) -> float | None:
        return None if self.load_s is None else self.load_s / self.server.linear_s()


def capdisc_env(src: Path | None) -> dict[str, str]:
    """The environment of the capdisc subprocess: ``src`` first on its path if given."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(src.resolve()), env.get("PYTHONPATH", "")) if p
        )
    return env


def _seed_flag_supported(env: dict[str, str]) -> bool:
    """Whether ``discover batch`` takes ``--seed`` (it does once issue 11 lands)."""
    result = subprocess.run(
        [sys.executable, "-m", "capdisc", "discover", "batch", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    return "--seed" in result.stdout


def command(server: Server, base_url: str, out: Path, seed: int | None) -> list[str]:
    """The capdisc command line of one run."""
    tokens = server.config(0).output_tokens
    cmd = [
        sys.executable, "-m", "capdisc", "discover", server.command,
        "--host", base_url, "--api", server.api, "--model", "sim-llm",
        "--max-tokens", str(tokens), "--timeout", f"{server.timeout_s:g}s",
        "--start-users", str(server.start), "--step-users", str(server.step),
        "--max-users", str(server.max_users), "--step-duration", f"{server.step_s:g}s",
        "--interval", f"{server.interval:g}s", "--failure-threshold", "0",
        "--out", str(out), "--quiet", *server.extra,
    ]  # fmt: skip
    if seed is not None:
        cmd += ["--seed", str(seed)]
    return cmd


def _when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _step_mark(step: dict[str, Any]) -> str:
    """``12`` passed, ``12x`` failed, ``12?`` inconclusive; then r(efine) or c(onfirm)."""
    verdict = step.get("verdict")
    if verdict is None:
        verdict = "pass" if step.get("passed") else "fail"
    mark = {"pass": "", "fail": "x"}.get(str(verdict), "?")
    phase = str(step.get("phase", "ramp"))
    return f"{step.get('users')}{mark}{'' if phase == 'ramp' else phase[0]}"


def score(run: Run, summary: dict[str, Any]) -> None:
    """Fill ``run`` from a summary.json, reading every field defensively."""
    steps = [s for s in summary.get("steps") or [] if isinstance(s, dict)]
    run.trail = " ".join(_step_mark(s) for s in steps)
    requests = sum(int(s.get("requests") or 0) for s in steps)
    failures = sum(int(s.get("failures") or 0) for s in steps)
    run.failed_share = failures / requests if requests else None
    try:
        run.load_s = (_when(summary["finished_at"]) - _when(summary["started_at"])).total_seconds()
    except (KeyError, TypeError, ValueError):
        run.load_s = None
    cap = summary.get("capacity")
    if not isinstance(cap, dict):
        return
    users = cap.get("users")
    run.capacity = int(users) if isinstance(users, int | float) else None
    run.extras = {k: v for k, v in cap.items() if k not in _SCHEMA1_CAPACITY}
    if cap.get("at_least"):
        run.extras["at_least"] = True
    flag = cap.get("confirmed")
    if isinstance(flag, bool):
        run.confirmed = flag
    else:  # schema 1: a passing confirming step at the reported level
        run.confirmed = any(
            s.get("phase") == "confirm" and s.get("passed") and s.get("users") == users
            for s in steps
        )


def run_one(server: Server, seed: int, work: Path, seed_flag: bool, env: dict[str, str]) -> Run:
    """Start the server's simulator, run capdisc against it, score its summary."""
    run = Run(server=server, seed=seed)
    out = work / f"{server.name}-seed{seed}"
    with EmbeddedSimulator(server.config(seed)) as sim:
        cmd = command(server, sim.base_url, out, seed if seed_flag else None)
        budget = 40 * (server.interval + server.step_s) + 600
        try:
            result = subprocess.run(
                cmd, capture_output=True, text=True, timeout=budget, check=False, env=env
            )
        except subprocess.TimeoutExpired:
            run.exit_code, run.note = -1, f"no result within {budget:.0f} s"
            return run
        run.exit_code = result.returncode
        stats = sim.stats()
    summary_path = out / "summary.json"
    if not summary_path.exists():
        run.note = (result.stderr.strip().splitlines() or ["no summary.json"])[-1][:200]
        return run
    score(run, json.loads(summary_path.read_text(encoding="utf-8")))
    failed = stats.get("rejected", 0) + stats.get("overloaded", 0) + stats.get("errors", 0)
    if failed:
        run.note = f"server failed {failed} of {stats.get('requests', 0)}"
    return run


def _fmt(value: float | None, spec: str, none: str = "-") -> str:
    return none if value is None else format(value, spec)


def _extras(run: Run) -> str:
    parts = []
    for key, value in run.extras.items():
        if isinstance(value, dict):
            inner = ", ".join(f"{k}={v}" for k, v in value.items() if not isinstance(v, dict))
            parts.append(f"{key}={{{inner}}}")
        else:
            parts.append(f"{key}={value}")
    return "; ".join(parts) or "-"


HEADER = (
    "| server | seed | U* | capacity | interval, flags | error | failed | load | linear "
    "| ratio | steps (x failed, ? inconclusive, r refine, c confirm) |\n"
    "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---|"
)


def row(run: Run) -> str:
    s = run.server
    cap = "none" if run.capacity is None else str(run.capacity)
    if run.over:
        cap += " **OVER**"
    trail = run.trail + (f" ({run.note})" if run.note else "")
    if run.exit_code not in (0,):
        trail += f" [exit {run.exit_code}]"
    return (
        f"| {s.name} | {run.seed} | {s.u_star:g} | {cap} | {_extras(run)} "
        f"| {_fmt(run.error, '+.1%')} | {_fmt(run.failed_share, '.1%')} "
        f"| {_fmt(run.load_s, '.0f')} s | {s.linear_s():.0f} s | {_fmt(run.ratio, '.2f')} "
        f"| {trail} |"
    )


def aggregate(runs: list[Run]) -> tuple[str, bool]:
    """Per-server and overall lines, and whether every target is met."""
    lines = [
        "| server | U* (formula) | runs | within 5% | confirmed >= 1.05 U* "
        "| median load | median ratio |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    names = list(dict.fromkeys(r.server.name for r in runs))
    for name in [*names, "all"]:
        group = [r for r in runs if name in ("all", r.server.name)]
        loads = [r.load_s for r in group if r.load_s is not None]
        ratios = [r.ratio for r in group if r.ratio is not None]
        server = SERVERS.get(name)
        u = "" if server is None else f"{server.u_star:g} ({server.formula})"
        lines.append(
            f"| {name} | {u} | {len(group)} | {sum(r.within for r in group)}/{len(group)} "
            f"| {sum(r.over for r in group)} | {_fmt(statistics.median(loads) if loads else None, '.0f')} s "
            f"| {_fmt(statistics.median(ratios) if ratios else None, '.2f')} |"
        )
    within = sum(r.within for r in runs) / len(runs)
    over = sum(r.over for r in runs)
    ratios = [r.ratio for r in runs if r.ratio is not None]
    ratio = statistics.median(ratios) if ratios else math.inf
    anchor = [r.load_s for r in runs if r.server.name == "anchor" and r.load_s is not None]
    checks = [
        (f"within 5% of U* in >= 95% of runs: {within:.0%}", within >= MIN_WITHIN_SHARE),
        (f"no confirmed level >= 1.05 x U*: {over} run(s)", over == 0),
        (f"median load time <= 0.5 x linear ramp: {ratio:.2f}", ratio <= MAX_TIME_RATIO),
    ]
    if anchor:
        median = statistics.median(anchor)
        checks.append((f"anchor load time < 90 s: {median:.0f} s", median < ANCHOR_MAX_S))
    lines.append("")
    lines += [f"- {text}: {'PASS' if ok else 'FAIL'}" for text, ok in checks]
    return "\n".join(lines), all(ok for _, ok in checks)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--servers",
        help=f"comma-separated, of {', '.join(SERVERS)} (default: all; --quick: "
        f"{', '.join(QUICK_SERVERS)})",
    )
    parser.add_argument("--seeds", type=int, default=5, help="runs per server (seeds 1..N)")
    parser.add_argument(
        "--jobs", type=int, default=1, help="runs at once (2 cores: more starves them)"
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"one seed of {', '.join(QUICK_SERVERS)}"
    )
    parser.add_argument("--keep", type=Path, help="keep the run directories here")
    parser.add_argument(
        "--capdisc-src",
        type=Path,
        help="run the capdisc of this source tree (e.g. a 'git archive' export of a commit: "
        "its src/ directory) against this tree's simulators",
    )
    args = parser.parse_args()
    if args.servers is not None:
        names = [n.strip() for n in args.servers.split(",") if n.strip()]
    else:
        names = list(QUICK_SERVERS if args.quick else SERVERS)
    if args.quick:
        args.seeds = 1
    unknown = [n for n in names if n not in SERVERS]
    if unknown or not names:
        parser.error(f"unknown servers {unknown}; known: {', '.join(SERVERS)}")
    env = capdisc_env(args.capdisc_src)
    seed_flag = _seed_flag_supported(env)
    print(
        f"{len(names)} server(s) x {args.seeds} seed(s), {args.jobs} at a time; capdisc "
        f"--seed {'passed' if seed_flag else 'not supported (simulator seed only)'}; capdisc "
        f"from {args.capdisc_src or 'this environment'}"
    )
    for name in names:
        s = SERVERS[name]
        print(
            f"  {name}: U* = {s.formula} = {s.u_star:g} users at {s.interval:g} s pacing, "
            f"steps {s.start}+{s.step} up to {s.max_users}, {s.step_s:g} s each"
        )
    work = args.keep or Path(tempfile.mkdtemp(prefix="capdisc-accuracy-"))
    work.mkdir(parents=True, exist_ok=True)
    jobs = [(SERVERS[n], seed) for n in names for seed in range(1, args.seeds + 1)]
    started = time.monotonic()
    lock = threading.Lock()
    print(HEADER, flush=True)

    def one(job: tuple[Server, int]) -> Run:
        result = run_one(job[0], job[1], work, seed_flag, env)
        with lock:
            print(row(result), flush=True)
        return result

    try:
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            runs = list(pool.map(one, jobs))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n{len(runs)} runs in {time.monotonic() - started:.0f} s\n")
    table, _ = aggregate(runs)
    print(table)
    return 2 if any(r.load_s is None for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
