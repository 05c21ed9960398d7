"""The master side of a distributed run: workers connected, told the workload, stopped.

capdisc stays the master of Locust's master/worker mode (see :mod:`.distributed` for
the worker side and the messages). These functions are called by the engine's
session when ``--workers`` or ``--expect-workers`` is given.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import gevent
from locust.env import Environment

from capdisc.loadgen.plan import ProgressSink, Workload
from capdisc.schema import RequestRecord

if TYPE_CHECKING:
    from capdisc.loadgen.engine import PlannedShape, RunControl

__all__ = ["notice_missing_workers", "start_master", "stop_master"]

_WORKER_WAIT_S = 60.0


def start_master(
    env: Environment,
    workload: Workload,
    shape: PlannedShape,
    on_row: Any,
    workers: int,
    expect_workers: int,
    control: RunControl,
    progress: ProgressSink | None,
) -> tuple[Any, list[Any]]:
    """A master runner with its workers connected and told the workload.

    If not all of them connect (Ctrl+C or SIGTERM meanwhile, a local worker process
    that exits first, or ``_WORKER_WAIT_S`` has passed), the run is stopped through
    ``control`` and the runner comes back already quit, with no worker processes:
    the session then ends at once without load, and the command still writes its
    outputs (no step completed: exit 4), as for any other interruption.
    """
    from capdisc.loadgen.distributed import (
        DEFAULT_MASTER_PORT,
        HELLO_MESSAGE,
        ROWS_MESSAGE,
        WORKLOAD_MESSAGE,
        start_local_workers,
        stop_local_workers,
        workload_to_dict,
    )

    remote = expect_workers > 0
    runner = env.create_master_runner(
        master_bind_host="*" if remote else "127.0.0.1",
        master_bind_port=DEFAULT_MASTER_PORT if remote else 0,
    )
    port = runner.server.port
    payload = workload_to_dict(workload)
    configured: list[str] = []

    def on_hello(environment: Any, msg: Any, **_kw: Any) -> None:
        if msg.node_id not in configured:
            configured.append(msg.node_id)
        data = {"workload": payload, "index": configured.index(msg.node_id) + 1}
        runner.send_message(WORKLOAD_MESSAGE, data, client_id=msg.node_id)

    def on_rows(environment: Any, msg: Any, **_kw: Any) -> None:
        for data in msg.data:
            row = RequestRecord(*data)
            on_row(row._replace(step=shape.step_at(row.ts_start)))

    runner.register_message(HELLO_MESSAGE, on_hello)
    runner.register_message(ROWS_MESSAGE, on_rows)
    processes = start_local_workers(workers, port)
    wanted = workers + expect_workers
    if progress is not None:
        progress.message(f"master on port {port}: waiting for {wanted} worker(s)")
    deadline = time.monotonic() + _WORKER_WAIT_S
    problem = ""
    while len(runner.clients.ready) < wanted or len(configured) < wanted:
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
        return runner, processes
    connected = min(len(runner.clients.ready), len(configured))
    note = f"only {connected} of {wanted} workers connected to port {port}"
    control.request_stop("interrupted", f"{note}: {problem}")  # first reason wins
    runner.quit()
    stop_local_workers(processes, grace_s=1.0)
    return runner, []


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


def notice_missing_workers(
    runner: Any,
    warnings: list[str],
    progress: ProgressSink | None,
    control: RunControl,
    *,
    running: bool,
) -> None:
    """Warn once about each worker that stopped responding; stop when none is left.

    ``running`` is true while the shape still wants users: a master whose every
    worker is gone stops on its own (Locust) and would otherwise wait forever.
    """
    from locust.runners import STATE_MISSING

    for client in runner.clients.values():
        if client.state == STATE_MISSING:
            note = f"worker {client.id} stopped responding: its users are gone, its rows so far are kept"
            if note not in warnings:
                warnings.append(note)
                if progress is not None:
                    progress.message(f"warning: {note}")
    if running and runner.worker_count == 0:
        control.request_stop(
            "interrupted", "no worker left: every worker stopped responding or quit"
        )
