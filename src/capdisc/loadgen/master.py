"""The master side of a distributed run: workers connected, told the workload, stopped.

capdisc stays the master of Locust's master/worker mode (see :mod:`.distributed` for
the worker side and the messages). These functions are called by the engine's
session when ``--workers`` or ``--expect-workers`` is given.

The times a worker sends (its rows, what it has in flight, its self-check samples)
are its own ``time.time()``, while the steps' windows are the master's: when a
worker connects, :class:`WorkerClocks` measures how far its clock is from the
master's (a few ``capdisc_ping``/``capdisc_pong`` exchanges, the one with the
shortest round trip kept, as NTP does), and that offset is taken off every time the
worker sends before anything reads it. :func:`worker_clocks` gives each worker's
offset and round trip after the session; a worker that does not answer keeps offset
0 and a warning.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import gevent
from locust.env import Environment
from locust.exception import RPCError

from capdisc.errors import UsageError
from capdisc.loadgen.clocks import PONG_MESSAGE, ClockOffset, WorkerClocks, WorkerInbox
from capdisc.loadgen.contract import ProgressSink, Workload
from capdisc.loadgen.selfcheck import CLIENT_MESSAGE

if TYPE_CHECKING:
    from capdisc.loadgen.control import RunControl
    from capdisc.loadgen.shape import PlannedShape

__all__ = [
    "ClockOffset",
    "WorkerClocks",
    "WorkerInbox",
    "notice_missing_workers",
    "quit_master",
    "start_master",
    "stop_master",
    "worker_clocks",
]

_WORKER_WAIT_S = 60.0
# Workers told a workload by a master of this process (one run): a later session's
# master configures them as soon as they connect again.
_SERVED: set[str] = set()

_INBOX_ATTR = "capdisc_inbox"
# Smaller offsets are not worth a line on the console (they are in worker_clocks).
_NOTABLE_OFFSET_S = 0.01


def worker_clocks(env: Environment) -> list[ClockOffset]:
    """The clock offsets measured by the master of ``env`` (a session's
    ``SessionResult.locust_env``); empty for a run without workers."""
    inbox = getattr(env.runner, _INBOX_ATTR, None)
    return inbox.clocks.clocks() if isinstance(inbox, WorkerInbox) else []


def start_master(
    env: Environment,
    workload: Workload,
    shape: PlannedShape,
    on_row: Any,
    workers: int,
    expect_workers: int,
    control: RunControl,
    progress: ProgressSink | None,
    bind: str = "127.0.0.1:5557",
) -> tuple[Any, list[Any]]:
    """A master runner with its workers connected and told the workload.

    Local workers only: the master listens on a free loopback port. With
    ``expect_workers`` it listens on ``bind`` (HOST:PORT, loopback unless the user
    asked for more: Locust's master/worker protocol has no authentication).

    If not all of them connect (Ctrl+C or SIGTERM meanwhile, a local worker process
    that exits first, or ``_WORKER_WAIT_S`` has passed), the run is stopped through
    ``control`` and the runner comes back already quit, with no worker processes:
    the session then ends at once without load, and the command still writes its
    outputs (no step completed: exit 4), as for any other interruption.
    """
    from capdisc.loadgen.distributed import (
        HELLO_MESSAGE,
        IN_FLIGHT_MESSAGE,
        ROWS_MESSAGE,
        WORKLOAD_MESSAGE,
        start_local_workers,
        stop_local_workers,
        workload_to_dict,
    )

    remote = expect_workers > 0
    host, _, bind_port = bind.rpartition(":")
    host = host.strip("[]")
    try:
        runner = env.create_master_runner(
            master_bind_host=host if remote else "127.0.0.1",
            master_bind_port=int(bind_port) if remote else 0,
        )
    except RPCError as exc:
        raise UsageError(f"--master-bind {bind}: cannot listen there ({exc})") from None
    port = runner.server.port
    payload = workload_to_dict(workload)
    configured: list[str] = []
    inbox = WorkerInbox(runner, shape, on_row)
    clocks = inbox.clocks
    setattr(runner, _INBOX_ATTR, inbox)  # for worker_clocks(env) and notice_missing_workers

    def configure(node_id: str) -> None:
        if node_id not in configured:
            configured.append(node_id)
        data = {"workload": payload, "index": configured.index(node_id) + 1}
        runner.send_message(WORKLOAD_MESSAGE, data, client_id=node_id)
        _SERVED.add(node_id)
        clocks.probe(node_id, configured.index(node_id) + 1)

    def on_hello(environment: Any, msg: Any, **_kw: Any) -> None:
        configure(msg.node_id)

    def on_connect(client_id: str, **_kw: Any) -> None:
        # A worker that served an earlier session of this run stays connected and says
        # it is ready again after each stop (Locust), to whichever master listens on
        # the port: it has its handlers, so it is told the new workload at once.
        if client_id in _SERVED:
            configure(client_id)

    runner.register_message(HELLO_MESSAGE, on_hello)
    env.events.worker_connect.add_listener(on_connect)
    runner.register_message(ROWS_MESSAGE, inbox.rows)
    runner.register_message(IN_FLIGHT_MESSAGE, inbox.in_flight)
    runner.register_message(CLIENT_MESSAGE, inbox.client)
    runner.register_message(PONG_MESSAGE, inbox.pong)
    processes = start_local_workers(workers, port)
    wanted = workers + expect_workers
    if progress is not None:
        where = f"{host}:{port}" if remote else f"port {port}"
        progress.message(f"master on {where}: waiting for {wanted} worker(s)")
    deadline = time.monotonic() + _WORKER_WAIT_S
    problem = ""
    while (
        len(runner.clients.ready) < wanted
        or len(configured) < wanted
        or not clocks.settled(configured)
    ):
        exited = [proc.returncode for proc in processes if proc.poll() is not None]
        if control.event.is_set():
            problem = "stopped"
        elif exited:
            problem = f"a local worker process exited (code {exited[0]}) before connecting"
        elif time.monotonic() > deadline:
            problem = f"no more workers within {_WORKER_WAIT_S:g} s"
        if problem:
            break
        gevent.sleep(0.2)
    else:
        _tell_clocks(clocks, progress)
        return runner, processes
    connected = min(len(runner.clients.ready), len(configured))
    note = f"only {connected} of {wanted} workers connected to port {port}"
    control.request_stop("interrupted", f"{note}: {problem}")  # first reason wins
    runner.quit()
    stop_local_workers(processes, grace_s=1.0)
    return runner, []


def _tell_clocks(clocks: WorkerClocks, progress: ProgressSink | None) -> None:
    """Say which workers' clocks were off enough to matter, and that they are corrected."""
    if progress is None:
        return
    for clock in clocks.clocks():
        if clock.rtt_s is not None and abs(clock.offset_s) >= _NOTABLE_OFFSET_S:
            progress.message(
                f"worker {clock.worker}: clock {clock.offset_s:+.3f} s from the master's "
                f"(round trip {clock.rtt_s * 1000:.1f} ms), corrected on its rows"
            )


def stop_master(runner: Any, stop_timeout: float) -> None:
    """Stop the workers' users and wait until each has sent its last rows."""
    from locust.runners import STATE_INIT, STATE_STOPPED

    # A shape that has not ticked yet would still start users after a stop in
    # STATE_INIT (Locust ignores that stop): end it first.
    shape_greenlet = runner.shape_greenlet
    if shape_greenlet is not None and shape_greenlet is not gevent.getcurrent():
        shape_greenlet.kill(block=True)
        runner.shape_greenlet = None
    if runner.state in (STATE_INIT, STATE_STOPPED):
        return  # no user was ever started, or the master already stopped them
    runner.stop()
    deadline = time.monotonic() + stop_timeout + 10.0
    while runner.state != STATE_STOPPED and time.monotonic() < deadline:
        gevent.sleep(0.1)


def quit_master(runner: Any) -> None:
    """Quit the master and free its port for the run's next session.

    A run may be several sessions (every block of a comparison is one), each with its
    own master on the same port: ``--expect-workers`` binds 5557 every time.
    """
    runner.quit()
    runner.server.close(linger=0)


def notice_missing_workers(
    runner: Any,
    warnings: list[str],
    progress: ProgressSink | None,
    control: RunControl,
    *,
    running: bool,
) -> None:
    """Warn once about each worker that stopped responding or whose clock could not be
    measured; stop when no worker is left.

    ``running`` is true while the shape still wants users: a master whose every
    worker is gone stops on its own (Locust) and would otherwise wait forever.
    """
    from locust.runners import STATE_MISSING

    missing = {client.id for client in runner.clients.values() if client.state == STATE_MISSING}
    notes = [
        f"worker {node_id} stopped responding: its users are gone, its rows so far are kept"
        for node_id in sorted(missing)
    ]
    inbox = getattr(runner, _INBOX_ATTR, None)
    if isinstance(inbox, WorkerInbox):
        notes.extend(inbox.clocks.notes())
        inbox.forget_gone(node_id for node_id in runner.clients if node_id not in missing)
    for note in notes:
        if note not in warnings:
            warnings.append(note)
            if progress is not None:
                progress.message(f"warning: {note}")
    if running and runner.worker_count == 0:
        control.request_stop(
            "interrupted", "no worker left: every worker stopped responding or quit"
        )
