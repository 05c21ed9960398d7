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
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import subprocess
import sys
import time
from typing import Any

import gevent
from locust.env import Environment

from capdisc.clients.prompts import DatasetEntry, PromptSource
from capdisc.errors import UsageError
from capdisc.loadgen.plan import Workload
from capdisc.loadgen.selfcheck import CLIENT_MESSAGE, Sampler
from capdisc.loadgen.users import PacedUser, SessionState, make_user_class
from capdisc.schema import ClientSample
from capdisc.settings import TargetConfig, TokenCount, ToolsSettings
from capdisc.target import Target, read_api_key

__all__ = [
    "HELLO_MESSAGE",
    "ROWS_MESSAGE",
    "WORKLOAD_MESSAGE",
    "parse_master",
    "run_worker",
    "start_local_workers",
    "workload_from_dict",
    "workload_to_dict",
]

# A worker asks for its workload once its handlers are in place (asking avoids a
# race with the master answering before the worker listens).
HELLO_MESSAGE = "capdisc_hello"
WORKLOAD_MESSAGE = "capdisc_workload"
ROWS_MESSAGE = "capdisc_rows"
FLUSH_EVERY_S = 0.25
# Users of worker k are numbered from k * USER_BLOCK, so numbers stay unique.
USER_BLOCK = 1_000_000
DEFAULT_MASTER_PORT = 5557


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
    target = Target(**target_data, config=config, api_key=read_api_key(config))
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
    """Start ``count`` worker processes on this machine, connected to a local master."""
    command = [sys.executable, "-m", "capdisc", "worker", "--master", f"127.0.0.1:{master_port}"]
    return [
        subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
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


def run_worker(master_host: str, master_port: int) -> None:
    """Serve as a Locust worker for capdisc masters until the master quits."""
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
    pending: list[Any] = []
    # This process's CPU and loop lag, once a second, for the master's self-check.
    samples: list[ClientSample] = []
    sampler = Sampler("worker", samples.append).start()

    def on_request(context: dict[str, Any], **_kw: Any) -> None:
        pending.append(context["row"])

    def flush(**_kw: Any) -> None:
        if pending:
            batch = pending[:]
            pending.clear()
            runner.send_message(ROWS_MESSAGE, batch)  # type: ignore[arg-type]  # any msgpack data
        if samples:
            sent = [list(sample) for sample in samples]
            samples.clear()
            runner.send_message(CLIENT_MESSAGE, sent)  # type: ignore[arg-type]

    def flusher() -> None:
        while True:
            gevent.sleep(FLUSH_EVERY_S)
            flush()

    def on_workload(environment: Any, msg: Any, **_kw: Any) -> None:
        workload = workload_from_dict(msg.data["workload"])
        user_class: type[PacedUser] = classes[workload.kind]
        user_class.workload = workload
        user_class.number_offset = int(msg.data["index"]) * USER_BLOCK
        sampler.process = f"worker {msg.data['index']}"
        # A new session: this worker's requests take their prompts from its own block.
        state.requests = itertools.count(int(msg.data["index"]) * USER_BLOCK)

    env.events.request.add_listener(on_request)
    env.events.test_stop.add_listener(flush)
    runner.register_message(WORKLOAD_MESSAGE, on_workload)
    runner.send_message(HELLO_MESSAGE)
    flushing = gevent.spawn(flusher)
    try:
        runner.greenlet.join()
    finally:
        flushing.kill(block=False)
        sampler.stop()
