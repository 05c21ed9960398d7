"""The load engine's cost and memory: CPU per streamed chunk, and RSS over a long run.

Part ``cpu``: capdisc's streaming user (``run_session`` with a stream ``Workload`` and
the ``compare stream`` hold planner, exactly the code a comparison runs) against the
least a Locust user can do with a stream: a bare ``FastHttpUser`` that posts the same
request with ``stream=True`` and only counts ``data:`` events in the raw bytes of
``iter_content(decode_content=False)``. Both drive the same simulator subprocess (tiny
per-token time, many slots, so the server is not the bottleneck) with the same users
and the same constant pacing. Each client runs in its own subprocess, rounds alternate
capdisc / bare / capdisc / bare, and each process's CPU time (user + sys, from
``getrusage`` around the load) is divided by the chunks it received (capdisc: the sum
of the ``chunks`` column of its ``requests.csv``; bare: its own counter).
Target: capdisc costs at most 1.3x the bare user per chunk.

Part ``http``: the same measure for the ``api = "http"`` client with ``chunk_rule =
"any"`` on plain text events (``data: word\r\n\r\n``, as a gateway's sse-starlette
``EventSourceResponse`` sends them), served by ``benchmarks/plain_events.py`` (a FastAPI
gateway would be the bottleneck); the bare user counts the same events (``data:`` in the
raw bytes, less the ``[DONE]``). Target: at most 1.3x.

Part ``memory``: one capdisc worker holds 200 streaming users at constant pacing for
several minutes (default: 1 s interval for 3 minutes, more requests than the real
``compare stream`` default of 20 s x 8 min; ``--mem-interval 20 --mem-duration 480``
runs that one) and samples its own RSS (``/proc/self/status`` VmRSS) every few
seconds. Targets: peak RSS < 400 MB, and the RSS of the last minute of the hold no
higher than that of the first minute (growth ~0; the verdict allows 5 MB of allocator
noise and also prints the growth per request).

    .venv/bin/python benchmarks/loadgen.py                 # all three parts, ~9 minutes
    .venv/bin/python benchmarks/loadgen.py --part cpu --rounds 5 --hold 30
    .venv/bin/python benchmarks/loadgen.py --part http
    .venv/bin/python benchmarks/loadgen.py --part memory --mem-interval 20 --mem-duration 480

Linux only (/proc). Load goes to 127.0.0.1 only. Timings are printed with PASS/FAIL
lines, never asserted: the exit code is 0 unless a worker fails to produce a result.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# The workers' side (the script re-invokes itself with --worker).
from loadgen_workers import BARE, CAPDISC, RESULT_PREFIX

TARGET_RATIO = 1.3
TARGET_PEAK_MB = 400.0
GROWTH_ALLOWANCE_MB = 5.0
# The real run the memory part stands for: compare stream's defaults.
FULL_RUN_USERS = 200
FULL_RUN_INTERVAL_S = 20.0
FULL_RUN_S = 480.0

# --- helpers ---------------------------------------------------------------------------


def _proc_cpu_s(pid: int) -> float:
    """utime + stime of another process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- parent ---------------------------------------------------------------------------


def _spawn_worker(
    kind: str,
    url: str,
    *,
    users: int,
    interval: float,
    hold: float,
    tokens: int,
    args: argparse.Namespace,
    rss_every: float = 0.0,
    pin_cpu: int | None = None,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="capdisc-bench-") as out_dir:
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--worker",
            kind,
            "--url",
            url,
            "--users",
            str(users),
            "--interval",
            str(interval),
            "--hold",
            str(hold),
            "--tokens",
            str(tokens),
            "--chunk-size",
            str(args.chunk_size),
            "--out-dir",
            out_dir,
            "--rss-every",
            str(rss_every),
            "--api",
            args.api,
        ]
        if args.no_progress:
            cmd.append("--no-progress")
        if pin_cpu is not None:
            cmd += ["--pin-cpu", str(pin_cpu)]
        # Bounded: spawn + settle + hold + stop, with a generous margin.
        limit = users / 100 + interval + hold + 120
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            data: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return data
    raise RuntimeError(
        f"{kind} worker failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}"
    )


def _placement(args: argparse.Namespace, sim_pid: int) -> int | None:
    """Simulator on the first CPU, the worker on the last: the same for both clients."""
    if args.no_pin or not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    os.sched_setaffinity(sim_pid, set(cpus[:-1]))
    return cpus[-1]


def part_cpu(args: argparse.Namespace, sim: Any, pin: int | None) -> bool:
    what = 'api "http", chunk_rule "any", plain text events' if args.api == "http" else "OpenAI SSE"
    print(
        f"\n== CPU per chunk ({what}): {args.users} users, {args.interval:g} s pacing, "
        f"{args.tokens} tokens/stream, {args.hold:g} s hold, {args.rounds} rounds each"
    )
    totals = {k: {"cpu_s": 0.0, "chunks": 0} for k in (CAPDISC, BARE)}
    pair_ratios: list[float] = []
    for round_no in range(1, args.rounds + 1):
        per_chunk: dict[str, float] = {}
        for kind in (CAPDISC, BARE):
            sim_cpu0 = _proc_cpu_s(sim.pid)
            sim_chunks0 = sim.stats()["chunks_sent"]
            r = _spawn_worker(
                kind,
                sim.base_url,
                users=args.users,
                interval=args.interval,
                hold=args.hold,
                tokens=args.tokens,
                args=args,
                pin_cpu=pin,
            )
            sim_cpu = _proc_cpu_s(sim.pid) - sim_cpu0
            sim_chunks = sim.stats()["chunks_sent"] - sim_chunks0
            if r["chunks"] == 0:
                raise RuntimeError(f"{kind} worker received no chunk: {r}")
            per_chunk[kind] = r["cpu_s"] / r["chunks"] * 1e6
            totals[kind]["cpu_s"] += r["cpu_s"]
            totals[kind]["chunks"] += r["chunks"]
            print(
                f"  round {round_no} {kind:7s}: {per_chunk[kind]:6.2f} us CPU/chunk  "
                f"({r['chunks']} chunks, {r['requests']} requests, {r['failures']} failed, "
                f"{r['late']} late; {r['cpu_s']:.2f} s CPU over {r['wall_s']:.1f} s = "
                f"{r['cpu_s'] / r['wall_s']:.0%} of a core; simulator {sim_cpu / r['wall_s']:.0%}"
                f" of a core, {sim_chunks} content chunks sent)",
                flush=True,
            )
        pair_ratios.append(per_chunk[CAPDISC] / per_chunk[BARE])
    cost = {k: v["cpu_s"] / v["chunks"] * 1e6 for k, v in totals.items()}
    ratio = statistics.median(pair_ratios)
    pooled = cost[CAPDISC] / cost[BARE]
    print(f"capdisc StreamUser     {cost[CAPDISC]:6.2f} us CPU/chunk (all rounds)")
    print(f"bare FastHttpUser      {cost[BARE]:6.2f} us CPU/chunk (all rounds)")
    print(
        f"ratio capdisc/bare: {ratio:.2f} (median of {len(pair_ratios)} rounds: "
        + ", ".join(f"{x:.2f}" for x in pair_ratios)
        + f"; pooled {pooled:.2f})"
    )
    ok = ratio <= TARGET_RATIO
    print(f"target <= {TARGET_RATIO}: {'PASS' if ok else 'FAIL'}")
    return ok


def _median_in(samples: list[tuple[float, float]], lo: float, hi: float) -> float | None:
    values = [rss for ts, rss in samples if lo <= ts < hi]
    return statistics.median(values) if values else None


def part_memory(args: argparse.Namespace, sim: Any, pin: int | None) -> bool:
    print(
        f"\n== Memory: {args.mem_users} users, {args.mem_interval:g} s pacing, "
        f"{args.mem_duration:g} s hold, {args.tokens} tokens/stream, RSS every "
        f"{args.rss_every:g} s"
    )
    r = _spawn_worker(
        CAPDISC,
        sim.base_url,
        users=args.mem_users,
        interval=args.mem_interval,
        hold=args.mem_duration,
        tokens=args.tokens,
        args=args,
        rss_every=args.rss_every,
        pin_cpu=pin,
    )
    samples = [(float(t), float(m)) for t, m in r["samples"]]
    if not samples or not r["window"]:
        raise RuntimeError("memory worker returned no RSS samples or no measured window")
    start, end = r["window"]
    span = min(60.0, (end - start) / 3)
    first = _median_in(samples, start, start + span)
    last = _median_in(samples, end - span, end + 0.001)
    peak = max(max(m for _, m in samples), float(r["hwm_mb"]))
    t0 = samples[0][0]
    print(
        f"  {r['requests']} requests ({r['failures']} failed, {r['late']} late), "
        f"{r['chunks']} chunks, {r['cpu_s'] / r['wall_s']:.0%} of a core, stop: {r['stop_reason']}"
    )
    trace = ", ".join(f"{ts - t0:.0f}s {m:.0f}" for ts, m in samples[:: max(1, len(samples) // 12)])
    print(f"  RSS MB over time: {trace}")
    ok_peak = peak < TARGET_PEAK_MB
    print(
        f"peak RSS {peak:.1f} MB (VmHWM); target < {TARGET_PEAK_MB:g} MB: {'PASS' if ok_peak else 'FAIL'}"
    )
    if first is None or last is None:
        print("RSS growth: not enough samples in the window")
        return ok_peak
    growth = last - first
    in_between = r["requests"] * (end - start - span) / max(1.0, r["wall_s"])
    per_request = growth * 1024 * 1024 / max(1.0, in_between)
    ok_growth = growth <= GROWTH_ALLOWANCE_MB
    full = FULL_RUN_USERS * FULL_RUN_S / FULL_RUN_INTERVAL_S
    print(
        f"RSS first {span:.0f} s of the hold {first:.1f} MB, last {span:.0f} s {last:.1f} MB: "
        f"growth {growth:+.1f} MB (~{per_request:+.0f} B per request); "
        f"target ~0 (<= {GROWTH_ALLOWANCE_MB:g} MB): {'PASS' if ok_growth else 'FAIL'}"
    )
    print(
        f"  at that rate the contract's default compare stream ({FULL_RUN_USERS} users, "
        f"{FULL_RUN_INTERVAL_S:g} s, {FULL_RUN_S / 60:g} min: {full:.0f} requests) grows "
        f"~{per_request * full / 1024 / 1024:.1f} MB"
    )
    return ok_peak and ok_growth


def run_parent(args: argparse.Namespace) -> int:
    if not Path("/proc/self/status").exists():
        raise SystemExit("this benchmark reads /proc: Linux only")
    from capdisc.simulator.config import SimulatorConfig
    from capdisc.simulator.process import EmbeddedSimulator

    config = SimulatorConfig(
        slots=1024,
        queue_limit=4096,
        prefill_ms=args.prefill_ms,
        per_token_ms=args.per_token_ms,
        output_tokens=args.tokens,
        jitter=0.0,
    )
    started = time.monotonic()
    print(
        f"simulator: {config.slots} slots, prefill {config.prefill_ms:g} ms, "
        f"{config.per_token_ms:g} ms/token, {config.output_tokens} tokens; "
        f"bare reads with iter_content({args.chunk_size}); "
        f"progress sink: {'off' if args.no_progress else 'no-op (as the CLI)'}"
    )
    results: list[bool] = []
    if args.part in ("cpu", "memory", "both", "all"):
        with EmbeddedSimulator(config) as sim:
            assert sim.pid is not None
            pin = _placement(args, sim.pid)
            if pin is not None:
                print(f"pinned: simulator on the other CPUs, each worker on CPU {pin}")
            if args.part in ("cpu", "both", "all"):
                results.append(part_cpu(args, sim, pin))
            if args.part in ("memory", "both", "all"):
                results.append(part_memory(args, sim, pin))
    if args.part in ("http", "all"):
        from plain_events import PlainEventsProcess

        with PlainEventsProcess(args.tokens, args.per_token_ms, args.prefill_ms) as server:
            pin = _placement(args, server.pid)
            args.api = "http"
            results.append(part_cpu(args, server, pin))
    print(
        f"\n{time.monotonic() - started:.0f} s in all; {'all PASS' if all(results) else 'some FAIL'}"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--part",
        choices=("cpu", "http", "memory", "both", "all"),
        default="all",
        help="cpu: the OpenAI stream client; http: api http, chunk_rule any, plain text "
        "events; memory; both: cpu and memory; all: the three",
    )
    cpu = parser.add_argument_group("cpu part")
    cpu.add_argument("--users", type=int, default=100, help="users of each CPU round")
    cpu.add_argument("--interval", type=float, default=1.0, help="pacing interval (s)")
    cpu.add_argument("--hold", type=float, default=20.0, help="seconds held per round")
    cpu.add_argument("--rounds", type=int, default=3, help="rounds per client (A B A B ...)")
    cpu.add_argument(
        "--chunk-size", type=int, default=4096, help="iter_content chunk size of the bare user"
    )
    mem = parser.add_argument_group("memory part")
    mem.add_argument("--mem-users", type=int, default=200, help="users held")
    mem.add_argument("--mem-interval", type=float, default=1.0, help="pacing interval (s)")
    mem.add_argument("--mem-duration", type=float, default=180.0, help="seconds held")
    mem.add_argument("--rss-every", type=float, default=2.0, help="RSS sampling period (s)")
    sim = parser.add_argument_group("simulator")
    sim.add_argument("--tokens", type=int, default=200, help="output tokens per stream")
    sim.add_argument("--per-token-ms", type=float, default=1.0, help="simulated time per token")
    sim.add_argument("--prefill-ms", type=float, default=5.0, help="simulated time to first token")
    parser.add_argument("--no-pin", action="store_true", help="do not pin simulator and worker")
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="run capdisc without a progress sink (the CLI always has one)",
    )
    # Internal: the script re-invokes itself as a worker.
    parser.add_argument("--worker", choices=(CAPDISC, BARE), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", help=argparse.SUPPRESS)
    parser.add_argument("--pin-cpu", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--api", default="openai", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        from loadgen_workers import run_worker

        return run_worker(args)
    try:
        return run_parent(args)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
