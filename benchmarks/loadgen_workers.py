"""The two sides of ``benchmarks/loadgen.py``'s CPU and memory parts, each run in its own
subprocess: capdisc's streaming user through ``run_session`` (exactly the code a
comparison runs), and the least a Locust user can do with a stream (a bare
``FastHttpUser`` counting events in the raw bytes). ``loadgen.py`` re-invokes itself
with ``--worker capdisc|bare``, which lands here; each prints one ``RESULT {json}`` line.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import random
import resource
import time
from pathlib import Path
from typing import Any

PROMPT = "Explain how a load test finds the capacity of a server."
# The http part: a gateway's own path and body.
HTTP_PATH = "/chat/stream"
HTTP_BODY = '{"question": "{prompt}", "max_tokens": {max_tokens}}'
RESULT_PREFIX = "RESULT "
CAPDISC = "capdisc"
BARE = "bare"


def _cpu_self_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss_mb(pid: int | str = "self") -> float:
    """VmRSS of a process in MB (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def _hwm_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


# --- worker: capdisc's own streaming user ---------------------------------------------


def worker_capdisc(args: argparse.Namespace) -> dict[str, Any]:
    """Run one hold session of capdisc's StreamUser; return CPU, chunks and RSS samples."""
    # The engine imports locust, which patches the standard library: it comes before
    # anything else that could open a connection (importing gevent alone patches nothing).
    import gevent

    from capdisc.loadgen.context import RunContext
    from capdisc.loadgen.contract import ProgressSnapshot, Workload
    from capdisc.settings import TargetConfig
    from capdisc.strategies.compare_stream import HoldPlanner
    from capdisc.target import Target

    class NullProgress:
        """What the CLI's live line costs the engine (snapshot, p95), minus the rendering."""

        def update(self, snapshot: ProgressSnapshot) -> None:
            pass

        def message(self, text: str) -> None:
            pass

    http = (
        {"api": "http", "path": HTTP_PATH, "body": HTTP_BODY, "chunk_rule": "any"}
        if args.api == "http"
        else {}
    )
    config = TargetConfig.model_validate(
        {"model": "sim-llm", "timeout": 30.0, "prompt": PROMPT, "max_tokens": args.tokens, **http}
    )
    target = Target(base_url=args.url, config=config, label="bench")
    workload = Workload(kind="stream", target=target, interval_s=args.interval, version="bench")
    planner = HoldPlanner(1, args.users, args.hold, args.interval, "bench")
    out = Path(args.out_dir)
    samples: list[tuple[float, float]] = []

    def sample_rss() -> None:
        for _ in range(100_000):  # bounded: the session ends long before
            samples.append((time.time(), _rss_mb()))
            gevent.sleep(args.rss_every)

    sampler = gevent.spawn(sample_rss) if args.rss_every > 0 else None
    cpu0, wall0 = _cpu_self_s(), time.time()
    with RunContext(
        out,
        failure_threshold=0,
        users=args.users,
        stop_timeout=2.0,
        progress=None if args.no_progress else NullProgress(),
    ) as run:
        result = run.run(workload, planner)
    cpu1, wall1 = _cpu_self_s(), time.time()
    if sampler is not None:
        sampler.kill()
        samples.append((time.time(), _rss_mb()))
    requests = failures = chunks = late = 0
    with (out / "requests.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            requests += 1
            failures += row["ok"] != "1"
            chunks += int(row["chunks"] or 0)
            late += float(row["ts_start"]) - float(row["ts_scheduled"]) > 0.1 * args.interval
    return {
        "cpu_s": cpu1 - cpu0,
        "wall_s": wall1 - wall0,
        "requests": requests,
        "failures": failures,
        "chunks": chunks,
        "late": late,
        "stop_reason": result.stop_reason,
        "window": list(planner.window) if planner.window else None,
        "samples": samples,
        "hwm_mb": _hwm_mb(),
    }


# --- worker: the bare Locust FastHttpUser baseline ------------------------------------


def worker_bare(args: argparse.Namespace) -> dict[str, Any]:
    """Hold the same users with a FastHttpUser that only counts ``data:`` events."""
    import gevent
    import locust  # patches the standard library (gevent alone does not)
    from locust import FastHttpUser, task
    from locust.env import Environment

    from capdisc.apis.wire import wire_format

    _ = locust
    fmt = wire_format("openai")
    path = fmt.chat_path
    payload = fmt.encode(
        fmt.body(
            model="sim-llm",
            messages=[{"role": "user", "content": PROMPT}],
            max_tokens=args.tokens,
            temperature=0.0,
            stream=True,
            seed=0,
        )
    )
    # The http part: plain text events end with one "data: [DONE]", not counted.
    done_events = 0
    if args.api == "http":
        path = HTTP_PATH
        payload = json.dumps({"question": PROMPT, "max_tokens": args.tokens}).encode()
        done_events = 1
    headers = {"Content-Type": "application/json"}
    counts = {"requests": 0, "failures": 0, "chunks": 0, "late": 0}
    interval = args.interval
    chunk_size = args.chunk_size
    numbers = itertools.count(1)

    class BareStreamUser(FastHttpUser):
        host = args.url
        network_timeout = 30.0
        connection_timeout = 10.0

        def on_start(self) -> None:
            # The same pacing as capdisc, phases included: user N waits the same seeded
            # random phase (seed 0) before its first task, then starts one per interval.
            # (Starting at spawn time instead lines every stream up on the server's
            # emission grid and roughly halves any client's CPU per chunk.)
            rng = random.Random(next(numbers))
            self._next = time.time() + rng.uniform(0.0, interval)
            self._first = True

        def wait_time(self) -> float:
            return max(0.0, self._next - time.time())

        @task
        def stream(self) -> None:
            if self._first:
                self._first = False
                self.wait()
            started = time.time()
            if started - self._next > 0.1 * interval:
                counts["late"] += 1
            self._next = started + interval
            counts["requests"] += 1
            response = self.client.post(path, data=payload, headers=headers, stream=True)
            if response.status_code != 200:
                counts["failures"] += 1
                return
            n = 0
            tail = b""
            try:
                for piece in response.iter_content(chunk_size, decode_content=False):
                    n += piece.count(b"data:")
                    if tail:  # an event split between two reads
                        n += (tail + piece[:4]).count(b"data:")
                    tail = piece[-4:]
            except Exception:
                counts["failures"] += 1
            counts["chunks"] += max(0, n - done_events)

    env = Environment(user_classes=[BareStreamUser], host=args.url, stop_timeout=2.0)
    runner = env.create_local_runner()
    rate = float(min(args.users, 100))
    cpu0, wall0 = _cpu_self_s(), time.time()
    runner.start(args.users, spawn_rate=rate)
    # As long as capdisc's session: the spawn, one interval to settle, the hold.
    gevent.sleep(args.users / rate + args.interval + args.hold)
    runner.quit()
    runner.greenlet.join(timeout=10)
    cpu1, wall1 = _cpu_self_s(), time.time()
    return {"cpu_s": cpu1 - cpu0, "wall_s": wall1 - wall0, **counts, "hwm_mb": _hwm_mb()}


def run_worker(args: argparse.Namespace) -> int:
    if args.pin_cpu is not None:
        os.sched_setaffinity(0, {args.pin_cpu})
    result = worker_capdisc(args) if args.worker == CAPDISC else worker_bare(args)
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0
