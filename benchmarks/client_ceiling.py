"""The client ceiling: what one capdisc process drives, beside one bare Locust process.

For two workloads, small batch requests (16 tokens, requests/s) and streams (64 content
events each, chunks/s), one capdisc process (``RunContext`` + ``run_session`` with its
``BatchUser`` / ``StreamUser``, the code a run uses, ``requests.csv`` and ``client.csv``
written as the run goes) and one bare Locust ``FastHttpUser`` process (post, read,
count: for streams only ``data:`` events in the raw bytes, as ``benchmarks/loadgen.py``
does) each hold the same users with the same constant pacing and seeded phases against
the same simulator with no service time and slots to spare: by default 200 users every
20 ms, 10,000 tasks/s offered, more than one process drives. Each client runs in its own
subprocess pinned to one CPU, the simulator on the other; rounds alternate
capdisc / bare.

What one process *drives* is measured over the hold window: the items it completed
(requests, or content chunks) and the CPU time it used (``getrusage``, sampled every
0.1 s and interpolated at the window's edges). Both are printed: the rate it drove, at
the share of a core it used, and that rate per CPU-second, what it drives with one
whole core (as ``capdisc calibrate`` reports it). The target compares the latter,
which stays fair when a client stopped short of a whole core because the offered load
or the simulator on its one core ran out first: capdisc at least 0.8 x bare (median
of the per-round ratios).

    .venv/bin/python benchmarks/client_ceiling.py                 # ~2 minutes
    .venv/bin/python benchmarks/client_ceiling.py --rounds 5 --hold 8 --users 300

Linux (CPU pinning). Load goes to 127.0.0.1 only. Figures are printed with PASS/FAIL
lines, never asserted: the exit code is 0 unless a worker fails to produce a result.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TARGET_RATIO = 0.8
RESULT_PREFIX = "RESULT "
CAPDISC = "capdisc"
BARE = "bare"
TOKENS = {"batch": 16, "stream": 64}
UNITS = {"batch": "req/s", "stream": "chunks/s"}
PROMPT = "Explain how a load test finds the capacity of a server."


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cpu_sampler(samples: list[tuple[float, float]]) -> Any:
    """A greenlet recording (time, CPU seconds) every 0.1 s."""
    import gevent

    def sample() -> None:
        for _ in range(1_000_000):  # bounded: the session ends long before
            samples.append((time.time(), _cpu_s()))
            gevent.sleep(0.1)

    return gevent.spawn(sample)


def _cpu_at(samples: Sequence[tuple[float, float]], ts: float) -> float:
    """CPU seconds at ``ts``, interpolated between the samples around it."""
    before = max((s for s in samples if s[0] <= ts), default=samples[0])
    after = min((s for s in samples if s[0] >= ts), default=samples[-1])
    if after[0] == before[0]:
        return before[1]
    share = (ts - before[0]) / (after[0] - before[0])
    return before[1] + share * (after[1] - before[1])


def _window_figures(
    ends: Sequence[tuple[float, int]],
    samples: Sequence[tuple[float, float]],
    start: float,
    end: float,
) -> dict[str, float]:
    """Items completed in [start, end) and the CPU used meanwhile."""
    items = sum(n for ts, n in ends if start <= ts < end)
    cpu = _cpu_at(samples, end) - _cpu_at(samples, start)
    return {"items": items, "window_s": end - start, "cpu_s": cpu}


# --- worker: capdisc ---------------------------------------------------------------------


def worker_capdisc(args: argparse.Namespace) -> dict[str, float]:
    from capdisc.loadgen.context import RunContext  # imports locust first: it patches
    from capdisc.loadgen.contract import Step, Workload
    from capdisc.settings import TargetConfig
    from capdisc.target import Target

    class Hold:
        """One step of ``users`` held for ``hold`` seconds after ``settle``."""

        needs_rows = False

        def __init__(self) -> None:
            self.step = Step(index=1, users=args.users, hold_s=args.hold, settle_s=args.settle)
            self.window: tuple[float, float] | None = None

        def first_step(self) -> Step:
            return self.step

        def next_step(self, finished: Step, rows: object) -> None:
            assert finished.window_start is not None and finished.window_end is not None
            self.window = (finished.window_start, finished.window_end)

        def abandon_step(self, step: Step, rows: object, stopped_at: float, why: str) -> None:
            pass

        def describe(self) -> str:
            return "bench"

    target = Target(
        base_url=args.url,
        config=TargetConfig(max_tokens=TOKENS[args.workload], timeout=30.0, prompt=PROMPT),
        label="bench",
    )
    workload = Workload(kind=args.workload, target=target, interval_s=args.interval)
    planner = Hold()
    samples: list[tuple[float, float]] = []
    sampler = _cpu_sampler(samples)
    out = Path(args.out_dir)
    with RunContext(out, failure_threshold=0, users=args.users, stop_timeout=2.0) as run:
        run.run(workload, planner)
    sampler.kill()
    if planner.window is None:
        raise RuntimeError("the capdisc session measured no window")
    ends: list[tuple[float, int]] = []
    failures = 0
    with (out / "requests.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            failures += row["ok"] != "1"
            count = int(row["chunks"] or 0) if args.workload == "stream" else 1
            ends.append((float(row["ts_end"]), count))
    return {**_window_figures(ends, samples, *planner.window), "failures": failures}


# --- worker: the bare Locust FastHttpUser ---------------------------------------------


def worker_bare(args: argparse.Namespace) -> dict[str, float]:
    import gevent
    import locust  # patches the standard library (gevent alone does not)
    from locust import FastHttpUser, task
    from locust.env import Environment

    from capdisc.apis.wire import wire_format

    _ = locust
    fmt = wire_format("openai")
    stream = args.workload == "stream"
    payload = fmt.encode(
        fmt.body(
            model="sim-llm",
            messages=[{"role": "user", "content": PROMPT}],
            max_tokens=TOKENS[args.workload],
            temperature=0.0,
            stream=stream,
            seed=0,
        )
    )
    headers = {"Content-Type": "application/json"}
    interval = args.interval
    numbers = itertools.count(1)
    ends: list[tuple[float, int]] = []
    failures = [0]

    class BareUser(FastHttpUser):
        host = args.url
        network_timeout = 30.0
        connection_timeout = 10.0

        def on_start(self) -> None:
            # capdisc's pacing, phases included (seeded per user, within one interval).
            rng = random.Random(next(numbers))
            self._next = time.time() + rng.uniform(0.0, interval)
            self._first = True

        def wait_time(self) -> float:
            return max(0.0, self._next - time.time())

        @task
        def one(self) -> None:
            if self._first:
                self._first = False
                self.wait()
            self._next = time.time() + interval
            if not stream:
                response = self.client.post(fmt.chat_path, data=payload, headers=headers)
                failures[0] += response.status_code != 200
                ends.append((time.time(), 1))
                return
            response = self.client.post(fmt.chat_path, data=payload, headers=headers, stream=True)
            n, tail = 0, b""
            try:
                for piece in response.iter_content(4096, decode_content=False):
                    n += piece.count(b"data:")
                    if tail:  # an event split between two reads
                        n += (tail + piece[:4]).count(b"data:")
                    tail = piece[-4:]
            except Exception:
                failures[0] += 1
            # capdisc counts content events; the bare user counts every data: event
            # (role, finish, usage and [DONE] too): take those 4 off to compare alike.
            ends.append((time.time(), max(0, n - 4)))

    spawned: list[float] = []
    env = Environment(user_classes=[BareUser], host=args.url, stop_timeout=2.0)
    env.events.spawning_complete.add_listener(lambda user_count: spawned.append(time.time()))
    runner = env.create_local_runner()
    samples: list[tuple[float, float]] = []
    sampler = _cpu_sampler(samples)
    runner.start(args.users, spawn_rate=float(min(args.users, 100)))
    deadline = time.time() + 60
    while not spawned and time.time() < deadline:
        gevent.sleep(0.05)
    start = (spawned[0] if spawned else time.time()) + args.settle
    gevent.sleep(max(0.0, start + args.hold - time.time()) + 0.2)
    runner.quit()
    runner.greenlet.join(timeout=10)
    sampler.kill()
    return {**_window_figures(ends, samples, start, start + args.hold), "failures": failures[0]}


def run_worker(args: argparse.Namespace) -> int:
    if args.pin_cpu is not None:
        os.sched_setaffinity(0, {args.pin_cpu})
    result = worker_capdisc(args) if args.worker == CAPDISC else worker_bare(args)
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


# --- parent ---------------------------------------------------------------------------


def _spawn(
    kind: str, workload: str, url: str, args: argparse.Namespace, pin: int | None
) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="capdisc-ceiling-") as out_dir:
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--worker",
            kind,
            "--workload",
            workload,
            "--url",
            url,
            "--users",
            str(args.users),
            "--interval",
            str(args.interval),
            "--hold",
            str(args.hold),
            "--settle",
            str(args.settle),
            "--out-dir",
            out_dir,
        ]
        if pin is not None:
            cmd += ["--pin-cpu", str(pin)]
        limit = args.users / 100 + args.settle + args.hold + 120
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            data: dict[str, float] = json.loads(line[len(RESULT_PREFIX) :])
            return data
    raise RuntimeError(f"{kind} worker failed (exit {proc.returncode}): {proc.stderr[-2000:]}")


def _proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_parent(args: argparse.Namespace) -> int:
    from capdisc.simulator.config import SimulatorConfig
    from capdisc.simulator.process import EmbeddedSimulator

    config = SimulatorConfig(
        slots=4096, queue_limit=8192, prefill_ms=0, per_token_ms=0, output_tokens=64, jitter=0
    )
    began = time.monotonic()
    print(
        f"simulator: no service time, {config.slots} slots; clients: {args.users} users every "
        f"{args.interval:g} s ({args.users / args.interval:,.0f} tasks/s offered), "
        f"{args.settle:g} s settle, {args.hold:g} s measured, {args.rounds} rounds"
    )
    per_core: dict[tuple[str, str], list[float]] = {}
    drove: dict[tuple[str, str], list[tuple[float, float]]] = {}
    with EmbeddedSimulator(config) as sim:
        assert sim.pid is not None
        pin = None
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) >= 2 and not args.no_pin:
            os.sched_setaffinity(sim.pid, set(cpus[:-1]))
            pin = cpus[-1]
            print(f"pinned: simulator on CPUs {cpus[:-1]}, each client on CPU {pin}")
        for round_no in range(1, args.rounds + 1):
            for workload in ("batch", "stream"):
                for kind in (CAPDISC, BARE):
                    sim_cpu0 = _proc_cpu_s(sim.pid)
                    r = _spawn(kind, workload, sim.base_url, args, pin)
                    sim_cpu = _proc_cpu_s(sim.pid) - sim_cpu0
                    rate = r["items"] / r["window_s"]
                    share = r["cpu_s"] / r["window_s"]
                    core = r["items"] / r["cpu_s"] if r["cpu_s"] > 0 else float("nan")
                    per_core.setdefault((workload, kind), []).append(core)
                    drove.setdefault((workload, kind), []).append((rate, share))
                    print(
                        f"  round {round_no} {workload:6s} {kind:7s}: drove {rate:9,.0f} "
                        f"{UNITS[workload]} at {share:4.0%} of a core = {core:9,.0f} per "
                        f"CPU-second ({int(r['failures'])} failed; simulator used "
                        f"{sim_cpu:.1f} CPU-s over the whole worker run)",
                        flush=True,
                    )
    print()
    print(
        "| workload | capdisc drove (its CPU) | bare drove (its CPU) | capdisc per CPU-second "
        "| bare per CPU-second | capdisc / bare (per CPU-second) |"
    )
    print("|---|---|---|---|---|---|")
    ok = True
    for workload in ("batch", "stream"):
        unit = UNITS[workload]
        mine, bare = per_core[(workload, CAPDISC)], per_core[(workload, BARE)]
        ratios = [a / b for a, b in zip(mine, bare, strict=True)]
        ratio = statistics.median(ratios)
        ok = ok and ratio >= TARGET_RATIO
        cells = []
        for kind in (CAPDISC, BARE):
            rate = statistics.median(r for r, _ in drove[(workload, kind)])
            share = statistics.median(c for _, c in drove[(workload, kind)])
            cells.append(f"{rate:,.0f} {unit} ({share:.0%})")
        print(
            f"| {workload} | {cells[0]} | {cells[1]} | {statistics.median(mine):,.0f} "
            f"| {statistics.median(bare):,.0f} | {ratio:.2f} "
            f"({', '.join(f'{x:.2f}' for x in ratios)}) |"
        )
    print(f"\ntarget capdisc >= {TARGET_RATIO} x bare: {'PASS' if ok else 'FAIL'}")
    print(f"{time.monotonic() - began:.0f} s in all")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds (capdisc, bare) per workload")
    parser.add_argument("--users", type=int, default=200, help="users of each client")
    parser.add_argument("--interval", type=float, default=0.02, help="pacing interval (s)")
    parser.add_argument(
        "--settle", type=float, default=1.0, help="seconds after spawn, not measured"
    )
    parser.add_argument("--hold", type=float, default=5.0, help="seconds measured")
    parser.add_argument("--no-pin", action="store_true", help="do not pin simulator and clients")
    # Internal: the script re-invokes itself as a worker.
    parser.add_argument("--worker", choices=(CAPDISC, BARE), help=argparse.SUPPRESS)
    parser.add_argument("--workload", choices=tuple(TOKENS), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", help=argparse.SUPPRESS)
    parser.add_argument("--pin-cpu", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return run_worker(args)
    try:
        return run_parent(args)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
