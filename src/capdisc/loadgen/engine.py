"""Drive embedded Locust through the steps a strategy plans, and stop it cleanly.

One *session* is one Locust Environment against one target: the strategy's
:class:`~capdisc.loadgen.contract.StepPlanner` is wrapped in a ``LoadTestShape``, every
request's row goes to ``requests.csv`` as it happens, and the session ends when the
planner is done, the failure threshold is reached, or the user presses Ctrl+C (or
sends SIGTERM). In every case requests in flight get ``stop_timeout`` seconds to
finish; those still in flight then are cut and recorded as ``stopped in flight``
(never counted as failures of the target), and Locust's HTML report is written.
How a step is measured (drain, exact users, window, await) is :mod:`.shape`'s.
"""

from __future__ import annotations

# locust must be imported before anything that pulls in requests/urllib3 (it
# monkey-patches the standard library through gevent).
import locust

import locust.stats  # isort: skip

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import gevent
import gevent.event
from locust.env import Environment
from locust.html import get_html_report

from capdisc.loadgen.contract import (
    ProgressSink,
    ProgressSnapshot,
    SessionResult,
    StepPlanner,
    Workload,
)
from capdisc.loadgen.control import RunControl
from capdisc.loadgen.outcome import STOPPED_IN_FLIGHT
from capdisc.loadgen.scraper import ServerScraper
from capdisc.loadgen.selfcheck import SelfCheck
from capdisc.loadgen.shape import PlannedShape
from capdisc.loadgen.state import SessionState, nearest_rank
from capdisc.loadgen.users import make_user_class
from capdisc.records import RequestRecord, is_round
from capdisc.rundir import RecordWriter
from capdisc.schema import WorkerClock

__all__ = [
    "await_bound",
    "ensure_file_limit",
    "html_report",
    "run_session",
]

_ = locust  # imported for its side effect (patching) before the rest

# Past the request timeout, so that a request timing out at the bound has its row.
_AWAIT_SLACK_S = 1.0


def ensure_file_limit(users: int) -> str | None:
    """Raise the soft open-files limit for ``users``; a warning when the hard limit is too low.

    Windows has no such limit (its sockets are bounded by the system's free ports and
    memory, not by a per-process count), so there this does nothing.
    """
    try:
        import resource
    except ImportError:  # Windows
        return None
    needed = users * 2 + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed or soft == resource.RLIM_INFINITY:
        return None
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        target = soft
    if target < needed:
        return (
            f"open-files limit is {target} (hard limit {hard}) but {users} users need about "
            f"{needed}; requests may fail with 'Too many open files' (raise it with ulimit -n)"
        )
    return None


def await_bound(workload: Workload) -> float:
    """How long a step's end waits for its requests by default: the request timeout
    (times the rounds of a client-side tool task), plus a second."""
    rounds = 1
    tools = workload.tools
    if workload.kind == "tools" and tools is not None and tools.orchestration != "server":
        rounds = tools.tools + 1
    return workload.target.timeout_s * rounds + _AWAIT_SLACK_S


class _Progress:
    """Rolling figures for the live line, over the last few seconds (bounded memory)."""

    def __init__(self, window_s: float = 10.0) -> None:
        self.window_s = window_s
        self.recent: deque[tuple[float, float, bool]] = deque(maxlen=50_000)

    def add(self, ts_end: float, duration_ms: float, ok: bool) -> None:
        self.recent.append((ts_end, duration_ms, ok))

    def _trim(self, now: float) -> None:
        while self.recent and self.recent[0][0] < now - self.window_s:
            self.recent.popleft()

    def rps(self, now: float) -> float:
        self._trim(now)
        return len(self.recent) / self.window_s

    def p95(self, now: float) -> float | None:
        self._trim(now)
        values = sorted(d for _, d, ok in self.recent if ok)
        if not values:
            return None
        return nearest_rank(values, 0.95)


def run_session(
    workload: Workload,
    planner: StepPlanner,
    *,
    writer: RecordWriter,
    control: RunControl,
    progress: ProgressSink | None,
    workers: int = 0,
    expect_workers: int = 0,
    selfcheck: SelfCheck | None = None,
    master_bind: str = "127.0.0.1:5557",
    sink: Callable[[RequestRecord], None] | None = None,
    server: ServerScraper | None = None,
) -> SessionResult:
    """Run one Locust session until the planner, the threshold or a signal ends it.

    With ``workers`` (local processes) or ``expect_workers`` (``capdisc worker`` on
    other machines), this process is a Locust master and the users run on workers.
    Each step reaches the planner with capdisc's own load in ``step.client``, and with
    the server's own figures in ``step.server`` when ``server`` reads its metrics.
    ``sink`` receives every row as it is written (a command that keeps its rows).
    """
    logging.getLogger("locust").setLevel(logging.ERROR)
    state = SessionState(first_request=workload.first_request)
    rows: list[RequestRecord] = []
    distributed = workers > 0 or expect_workers > 0
    shape = PlannedShape(
        planner,
        state,
        rows,
        await_s=await_bound(workload),
        stop_timeout=control.stop_timeout,
        distributed=distributed,
    )
    shape.selfcheck = selfcheck or shape.selfcheck
    shape.server = server
    user_class = make_user_class(workload, state)
    env = Environment(
        user_classes=[user_class],
        shape_class=shape,
        host=workload.target.base_url,
        stop_timeout=control.stop_timeout,
    )
    rolling = _Progress()
    counts = {"requests": 0, "failures": 0, "cut": 0}

    keep_rows = planner.needs_rows

    def on_row(row: RequestRecord) -> None:
        writer.write(row)
        if sink is not None:
            sink(row)
        if keep_rows:
            rows.append(row)
        if is_round(row.name):
            return
        counts["requests"] += 1
        shape.note_row(row)
        if row.error == STOPPED_IN_FLIGHT:
            # capdisc cut it (a stop, a drain past its bound), not the target: no
            # failure, and no threshold that would rewrite why the session stopped.
            counts["cut"] += 1
            return
        ok = row.ok == 1
        rolling.add(row.ts_end, row.duration_ms, ok)
        if not ok:
            counts["failures"] += 1
        reached = control.threshold.note(row.version, ok)
        if reached is not None:
            control.request_stop("failure_threshold", reached)

    env.events.spawning_complete.add_listener(shape.mark_spawned)
    shape.rows_delay_s = 0.5 if distributed else 0.0  # workers send rows every 0.25 s
    if distributed:
        from capdisc.loadgen.master import (
            notice_missing_workers,
            quit_master,
            start_master,
            stop_master,
        )
    worker_processes: list[Any] = []
    warnings: list[str] = []
    runner: Any
    if distributed:
        runner, worker_processes = start_master(
            env, workload, shape, on_row, workers, expect_workers, control, progress, master_bind
        )
        control.force_stop = lambda: gevent.spawn(runner.quit)
    else:
        runner = env.create_local_runner()
        env.events.request.add_listener(lambda context, **_kw: on_row(context["row"]))
        control.force_stop = lambda: runner.user_greenlets.kill(block=False)
    history = gevent.spawn(locust.stats.stats_history, runner)
    sampler = shape.selfcheck.sampler("master" if distributed else "capdisc").start()
    started = time.time()
    if not (distributed and control.event.is_set()):  # stopped while workers connected
        runner.start_shape()
    try:
        while not control.event.wait(timeout=0.5):
            writer.flush()
            if writer.error is not None:
                control.request_stop(
                    "interrupted", f"cannot write {writer.path}: {writer.error.strerror}"
                )
                break
            if shape.done and runner.shape_greenlet is None:
                break
            if distributed:
                notice_missing_workers(runner, warnings, progress, control, running=not shape.done)
            if progress is not None:
                progress.update(
                    ProgressSnapshot(
                        label=planner.describe(),
                        users=0 if shape.draining else shape.last_users,
                        rps=rolling.rps(time.time()),
                        requests=counts["requests"],
                        failures=control.failures,
                        failure_threshold=control.failure_threshold,
                        p95_ms=rolling.p95(time.time()),
                        elapsed_s=time.time() - started,
                        remaining_s=shape.remaining_in_step(),
                        threshold_note=control.threshold.note_for(workload.version),
                    )
                )
    finally:
        users_at_stop = shape.last_users
        shape.restore_stop_timeout()  # a stop during a drain cuts at the usual timeout
        if control.reason is not None and progress is not None:
            progress.message(f"stopping: {control.detail}; letting requests in flight finish")
        if distributed:
            stop_master(runner, control.stop_timeout)
            notice_missing_workers(runner, warnings, progress, control, running=False)
        if distributed:
            quit_master(runner)
        else:
            runner.quit()
        history.kill(block=False)
        sampler.stop()
        if worker_processes:
            from capdisc.loadgen.distributed import stop_local_workers

            stop_local_workers(worker_processes)
        step = shape.current
        if control.reason is not None and step is not None and step.window_start is not None:
            # The step ends where the stop was asked for (the wait for what was in
            # flight after it is no measured time).
            stopped_at = min(time.time(), control.requested_at or math.inf)
            if stopped_at > step.window_start:
                shape.close_step(step, stopped_at)
                step.stopped_by = control.reason
                planner.abandon_step(step, list(rows), stopped_at, control.detail)
        control.force_stop = None
        writer.flush()
    finished = time.time()
    clocks: list[WorkerClock] = []
    if distributed:
        from capdisc.loadgen.master import worker_clocks

        clocks = [
            WorkerClock(
                worker=c.worker,
                offset_s=c.offset_s if c.rtt_s is not None else None,
                rtt_s=c.rtt_s,
            )
            for c in worker_clocks(env)
        ]
    return SessionResult(
        stop_reason=control.reason,
        stop_detail=control.detail + ("; forced by a second signal" if control.forced else ""),
        started_at=started,
        finished_at=finished,
        requests=counts["requests"],
        failures=counts["failures"],
        users_at_stop=users_at_stop,
        locust_env=env,
        warnings=[*warnings, *shape.warnings],
        cut=counts["cut"],
        worker_clocks=clocks,
    )


def html_report(sessions: Sequence[SessionResult]) -> str | None:
    """Locust's HTML report of one or several sessions (a version's blocks merged into one)."""
    envs = [s.locust_env for s in sessions if isinstance(s.locust_env, Environment)]
    if not envs:
        return None
    if len(envs) == 1:
        return str(get_html_report(envs[0], show_download_link=False))
    merged = locust.stats.RequestStats()
    for env in envs:
        stats = env.stats
        for (name, method), entry in stats.entries.items():
            merged.get(name, method).extend(entry)
        for key, error in stats.errors.items():
            if key in merged.errors:
                merged.errors[key].occurrences += error.occurrences
            else:
                merged.errors[key] = error
        merged.total.extend(stats.total)
        merged.history.extend(stats.history)
    base = envs[-1]
    base.stats = merged
    return str(get_html_report(base, show_download_link=False))
