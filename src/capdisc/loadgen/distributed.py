"""Distributed runs on Locust's own master/worker mode.

capdisc is the master (the strategy's shape, the stop control and every output
stay there); workers are ``capdisc worker`` processes, local (``--workers N``) or
on other machines. A worker is generic: it learns what its users do from a
``capdisc_workload`` message the master sends when it connects (the API key is
never sent: each worker reads the variable the profile names from its own
environment). Request rows travel back in ``capdisc_rows`` messages every
quarter second, and once more when the worker stops its users, so the master
writes one ``requests.csv`` with nothing lost or doubled and counts failures for
the threshold within about a second (Locust's own worker reports come every 3 s).
Each worker's CPU and event-loop lag samples (:mod:`.selfcheck`) travel with them in
``capdisc_client`` messages, so the master sees whether a worker is at its limit.
A worker answers the master's ``capdisc_ping`` with its clock, so the master can put
the worker's times on its own clock (:class:`~capdisc.loadgen.master.WorkerClocks`).

A worker sends every row it holds before it goes: when its users stop (Locust's
``test_stop``), before its last report on the master's ``quit``, and when it is told
to stop by a signal, where it first lets its users finish (up to the stop timeout)
and only then tells the master it quits. Local workers run in their own session, so
a Ctrl+C in the terminal reaches only the master, which stops them in order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import signal
import subprocess
import sys
import time
from typing import Any

import gevent
from locust.env import Environment
from locust.exception import RPCError, RPCSendError
from locust.runners import STATE_CLEANUP, STATE_STOPPED, STATE_STOPPING, WorkerRunner

from capdisc.apis.prompts import DatasetEntry, PromptSource
from capdisc.errors import UsageError
from capdisc.loadgen.clocks import PING_MESSAGE, PONG_MESSAGE, shift_row
from capdisc.loadgen.contract import Workload
from capdisc.loadgen.selfcheck import CLIENT_MESSAGE, Sampler
from capdisc.loadgen.state import SessionState
from capdisc.loadgen.users import PacedUser, make_user_class
from capdisc.records import ClientSample, RequestRecord
from capdisc.settings import TargetConfig, TokenCount, ToolsSettings
from capdisc.target import Target, read_api_key, read_headers

__all__ = [
    "HELLO_MESSAGE",
    "IN_FLIGHT_MESSAGE",
    "ROWS_MESSAGE",
    "WORKLOAD_MESSAGE",
    "parse_master",
    "run_worker",
    "shift_row",
    "start_local_workers",
    "workload_from_dict",
    "workload_to_dict",
]

# A worker asks for its workload once its handlers are in place (asking avoids a
# race with the master answering before the worker listens).
HELLO_MESSAGE = "capdisc_hello"
WORKLOAD_MESSAGE = "capdisc_workload"
ROWS_MESSAGE = "capdisc_rows"
# After each batch of rows: what the worker still has in flight (it has sent every
# row before), so the master's steps know which requests to wait for.
IN_FLIGHT_MESSAGE = "capdisc_in_flight"
FLUSH_EVERY_S = 0.25
# Users of worker k are numbered from k * USER_BLOCK, so numbers stay unique.
USER_BLOCK = 1_000_000
DEFAULT_MASTER_PORT = 5557
# A worker told to stop by a signal waits this long past the stop timeout for its
# users before it quits anyway.
_QUIT_GRACE_S = 5.0
# What a send to a master that is gone (or not there yet) raises.
_SEND_ERRORS = (RPCError, RPCSendError)

# Test only (never set in use): this worker's clock reads this many seconds ahead as
# the master sees it (the times in its pongs, rows and samples), so the tests can show
# that the master puts a worker's rows on its own clock (tests/e2e/test_worker_clock.py).
_TEST_CLOCK_SKEW_S = float(os.environ.get("CAPDISC_TEST_WORKER_CLOCK_SKEW_S") or 0)


def workload_to_dict(workload: Workload) -> dict[str, Any]:
    """The workload as plain data for a worker, without the API key."""
    data = {f.name: getattr(workload, f.name) for f in dataclasses.fields(workload)}
    target = workload.target
    data["target"] = {
        "base_url": target.base_url,
        "config": target.config.model_dump(mode="json"),
        "label": target.label,
        "embedded": target.embedded,
    }
    data["tools"] = workload.tools.model_dump(mode="json") if workload.tools is not None else None
    data["prompts"] = dataclasses.asdict(workload.prompts) if workload.prompts is not None else None
    return data


def workload_from_dict(data: dict[str, Any]) -> Workload:
    """Rebuild a workload on a worker; the key comes from this machine's environment."""
    target_data = dict(data["target"])
    config = TargetConfig.model_validate(target_data.pop("config"))
    target = Target(
        **target_data, config=config, api_key=read_api_key(config), headers=read_headers(config)
    )
    tools = ToolsSettings.model_validate(data["tools"]) if data.get("tools") else None
    prompts = _prompts_from_dict(data["prompts"]) if data.get("prompts") else None
    return Workload(**{**data, "target": target, "tools": tools, "prompts": prompts})


def _prompts_from_dict(data: dict[str, Any]) -> PromptSource:
    counts = {
        name: TokenCount(*data[name]) if data.get(name) is not None else None
        for name in ("prompt_tokens", "output_tokens")
    }
    entries = tuple(
        DatasetEntry(tuple(e["messages"]), e.get("output_tokens")) for e in data.get("entries", ())
    )
    return PromptSource(
        **{**data, **counts, "entries": entries, "_order": tuple(data.get("_order", ()))}
    )


def parse_master(value: str) -> tuple[str, int]:
    """``HOST[:PORT]`` of a master; raise ``UsageError`` naming ``--master``."""
    host, _, port_text = value.rpartition(":") if ":" in value else (value, "", "")
    if not host:
        host, port_text = value, ""
    try:
        port = int(port_text) if port_text else DEFAULT_MASTER_PORT
    except ValueError:
        raise UsageError(f"--master: port must be a number, got {port_text!r}") from None
    if not 0 < port < 65536 or not host:
        raise UsageError(f"--master: expected HOST[:PORT], got {value!r}")
    return host, port


def start_local_workers(count: int, master_port: int) -> list[subprocess.Popen[bytes]]:
    """Start ``count`` worker processes on this machine, connected to a local master.

    Each in its own session: a Ctrl+C in the terminal goes to the master alone, which
    stops the workers' users and waits for their last rows (a worker that got the
    signal too would quit at the same time, cutting its requests short).
    """
    command = [sys.executable, "-m", "capdisc", "worker", "--master", f"127.0.0.1:{master_port}"]
    return [
        subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True
        )
        for _ in range(count)
    ]


def stop_local_workers(processes: list[subprocess.Popen[bytes]], grace_s: float = 5.0) -> None:
    """Make sure local workers are gone (they normally exit when the master quits).

    All of them share one grace period, then the ones left get SIGTERM and another
    grace period, then SIGKILL: stopping N workers takes at most about 2 x grace_s.
    """
    for signal_left in (subprocess.Popen.terminate, subprocess.Popen.kill, None):
        deadline = time.monotonic() + grace_s
        for proc in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        left = [proc for proc in processes if proc.poll() is None]
        if not left or signal_left is None:
            return
        for proc in left:
            signal_left(proc)


class _Outbox:
    """What a worker still has to send the master: its rows and self-check samples."""

    def __init__(self, runner: WorkerRunner, state: SessionState) -> None:
        self.runner = runner
        self.state = state
        self.rows: list[RequestRecord] = []
        self.samples: list[ClientSample] = []

    def on_request(self, context: dict[str, Any], **_kw: Any) -> None:
        self.rows.append(shift_row(context["row"], _TEST_CLOCK_SKEW_S))

    def on_sample(self, sample: ClientSample) -> None:
        self.samples.append(sample._replace(ts=round(sample.ts + _TEST_CLOCK_SKEW_S, 3)))

    def flush(self, **_kw: Any) -> None:
        """Send every row held, then what is still in flight, then the samples.

        The rows and the in-flight list are taken together (no yield between), so
        each request started is in one or the other: a row fired later was in flight.
        What cannot be sent now is kept for the next flush.
        """
        skew = _TEST_CLOCK_SKEW_S
        rows = self._take(self.rows)
        in_flight = {
            "at": time.time() + skew,
            "entries": [[u, round(ts + skew, 6)] for u, (ts, _) in self.state.in_flight.items()],
        }
        if not self._send(ROWS_MESSAGE, rows, self.rows):
            return
        self._send(IN_FLIGHT_MESSAGE, in_flight, None)
        self._send(CLIENT_MESSAGE, self._take(self.samples), self.samples)

    @staticmethod
    def _take(held: list[Any]) -> list[Any]:
        batch = held[:]
        del held[: len(batch)]  # what is added while a send yields stays held
        return batch

    def _send(self, kind: str, data: Any, back_to: list[Any] | None) -> bool:
        if not data:
            return True
        try:
            self.runner.send_message(kind, data)
        except _SEND_ERRORS:
            if back_to is not None:
                back_to[:0] = data
            return False
        return True


def _answer_pings(runner: WorkerRunner) -> None:
    """Answer the master's clock pings with this worker's clock (:mod:`.master`)."""

    def on_ping(environment: Any, msg: Any, **_kw: Any) -> None:
        clock = time.time() + _TEST_CLOCK_SKEW_S
        runner.send_message(PONG_MESSAGE, {"seq": msg.data["seq"], "clock": clock})

    runner.register_message(PING_MESSAGE, on_ping)


def _quit_on_signals(runner: WorkerRunner, outbox: _Outbox) -> list[Any]:
    """SIGINT or SIGTERM: stop the users, send every row, then tell the master we quit.

    In that order, so the master (which may end the run once its last worker is gone)
    has every row first. A second signal stops the users at once.
    """
    quitting: list[bool] = []
    handle = runner.handle_message

    def refuse_spawns(msg: Any) -> None:
        if not (quitting and msg.type == "spawn"):
            handle(msg)

    def quit_in_order() -> None:
        if runner.state in (STATE_CLEANUP, STATE_STOPPING):  # the master's stop, under way
            deadline = time.monotonic() + runner.environment.stop_timeout + _QUIT_GRACE_S
            while runner.state != STATE_STOPPED and time.monotonic() < deadline:
                gevent.sleep(0.1)
        else:
            runner.stop()  # waits up to the stop timeout; test_stop flushes
        outbox.flush()
        # Locust's worker tells the master "quit" on this event (fired by locust.main only).
        runner.environment.events.quitting.fire(environment=runner.environment)
        runner.greenlet.kill(block=True)

    def on_signal() -> None:
        if quitting:
            runner.user_greenlets.kill(block=False)
            return
        quitting.append(True)
        gevent.spawn(quit_in_order)

    setattr(runner, "handle_message", refuse_spawns)  # noqa: B010  # an instance hook
    return [gevent.signal_handler(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)]


def run_worker(master_host: str, master_port: int) -> None:
    """Serve as a Locust worker for capdisc masters until the master quits (or a signal)."""
    state = SessionState()
    placeholder = Workload(
        kind="batch",
        target=Target(base_url="http://127.0.0.1", config=TargetConfig(), label="-"),
        interval_s=1.0,
    )
    classes = {
        kind: make_user_class(dataclasses.replace(placeholder, kind=kind), state)
        for kind in ("batch", "stream", "tools")
    }
    env = Environment(user_classes=list(classes.values()))
    runner = env.create_worker_runner(master_host, master_port)
    outbox = _Outbox(runner, state)
    # This process's CPU and loop lag, once a second, for the master's self-check.
    sampler = Sampler("worker", outbox.on_sample).start()

    def flusher() -> None:
        while True:
            gevent.sleep(FLUSH_EVERY_S)
            outbox.flush()

    def on_workload(environment: Any, msg: Any, **_kw: Any) -> None:
        workload = workload_from_dict(msg.data["workload"])
        user_class: type[PacedUser] = classes[workload.kind]
        user_class.workload = workload
        user_class.number_offset = int(msg.data["index"]) * USER_BLOCK
        sampler.process = f"worker {msg.data['index']}"
        # A new session: this worker's requests take their prompts from its own block.
        state.requests = itertools.count(
            workload.first_request + int(msg.data["index"]) * USER_BLOCK
        )
        state.users = itertools.count(int(msg.data["index"]) * USER_BLOCK)

    env.events.request.add_listener(outbox.on_request)
    # Rows go out when the users stop, and again just before the last report on the
    # master's quit (Locust fires report_to_master there, and every 3 s).
    env.events.test_stop.add_listener(outbox.flush)
    env.events.report_to_master.add_listener(outbox.flush)
    runner.register_message(WORKLOAD_MESSAGE, on_workload)
    _answer_pings(runner)
    handlers = _quit_on_signals(runner, outbox)
    runner.send_message(HELLO_MESSAGE)
    flushing = gevent.spawn(flusher)
    try:
        runner.greenlet.join()
    finally:
        flushing.kill(block=False)
        sampler.stop()
        outbox.flush()
        for handler in handlers:
            handler.cancel()
