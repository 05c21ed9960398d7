"""Worker clock offsets measured by ping/pong, and what a worker sends put on the
master's clock: :mod:`capdisc.loadgen.clocks` alone, no Locust.

The same behaviour in real distributed runs is in ``tests/e2e/test_worker_clock.py``.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest

from capdisc.loadgen import clocks as clocks_module
from capdisc.loadgen.clocks import (
    CLOCK_PINGS,
    CLOCK_WAIT_S,
    PING_MESSAGE,
    WorkerClocks,
    WorkerInbox,
)
from capdisc.loadgen.selfcheck import SelfCheck
from capdisc.loadgen.state import SessionState
from capdisc.records import RequestRecord

SKEW_S = 2.0


class FakeWorker:
    """A worker answering pings at once with its clock ``skew_s`` ahead (or never)."""

    def __init__(self, clocks: list[WorkerClocks], skew_s: float, answers: bool = True) -> None:
        self.clocks, self.skew_s, self.answers = clocks, skew_s, answers
        self.pings = 0

    def send(self, kind: str, data: dict[str, Any], node_id: str) -> None:
        assert kind == PING_MESSAGE
        self.pings += 1
        if self.answers:
            self.clocks[0].on_pong(
                node_id, {"seq": data["seq"], "clock": time.time() + self.skew_s}
            )


def test_offset_is_measured_from_a_few_pings_and_unanswered_ones_give_zero() -> None:
    box: list[WorkerClocks] = []
    worker = FakeWorker(box, skew_s=-3.5)
    box.append(WorkerClocks(worker.send))
    clocks = box[0]
    clocks.probe("w1", 1)
    clocks.probe("w1", 1)  # told its workload again: measured once
    assert worker.pings == CLOCK_PINGS
    assert clocks.settled(["w1"])
    assert abs(clocks.offset("w1") + 3.5) < 0.01
    (clock,) = clocks.clocks()
    assert clock.worker == 1 and clock.samples == CLOCK_PINGS
    assert clock.rtt_s is not None and 0 <= clock.rtt_s < 0.01
    clocks.on_pong("w1", {"seq": 1, "clock": 0.0})  # a duplicate (or stale) pong is ignored
    assert abs(clocks.offset("w1") + 3.5) < 0.01

    silent = FakeWorker(box, skew_s=0.0, answers=False)
    box[0] = WorkerClocks(silent.send)
    box[0].probe("w2", 2)
    assert not box[0].settled(["w2"])
    assert box[0].notes() == []
    later = time.monotonic() + CLOCK_WAIT_S
    assert box[0].settled(["w2"], now=later)
    assert box[0].offset("w2") == 0.0
    assert box[0].clocks()[0].rtt_s is None


def test_unmeasured_clock_is_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    clocks = WorkerClocks(lambda kind, data, node: None)
    monkeypatch.setattr(clocks_module, "CLOCK_WAIT_S", 0.0)
    clocks.probe("w3", 3)
    (note,) = clocks.notes()
    assert note.startswith("worker 3: its clock could not be measured")


class FakeShape:
    """What the inbox uses of the engine's shape."""

    def __init__(self) -> None:
        self.selfcheck = SelfCheck()
        self.state = SessionState()
        self.asked: list[float] = []

    def step_at(self, ts: float) -> int:
        self.asked.append(ts)
        return 7


class FakeRunner:
    """A master runner whose one worker ("w1") answers pings with its clock 2 s ahead."""

    inbox: WorkerInbox

    def send_message(self, kind: str, data: dict[str, Any], client_id: str) -> None:
        pong = {"seq": data["seq"], "clock": time.time() + SKEW_S}
        self.inbox.pong(None, SimpleNamespace(node_id=client_id, data=pong))


def test_what_a_worker_sends_is_put_on_the_masters_clock() -> None:
    """Rows, in-flight reports and samples: each time moved by the measured offset."""
    rows: list[RequestRecord] = []
    shape, runner = FakeShape(), FakeRunner()
    inbox = runner.inbox = WorkerInbox(runner, shape, rows.append)
    inbox.clocks.probe("w1", 1)
    now = time.time()
    ahead = now + SKEW_S
    row = RequestRecord(ahead - 1, ahead - 0.5, ahead, 1_000_001, 0, "", "batch", 200, 1, 500.0)
    inbox.rows(None, SimpleNamespace(node_id="w1", data=[list(row)]))
    (got,) = rows
    assert got.step == 7 and shape.asked == [got.ts_start]
    for before, after in zip(row[:3], got[:3], strict=True):
        assert abs(before - SKEW_S - after) < 0.01
    report = {"at": ahead, "entries": [[1_000_002, ahead - 0.25]]}
    inbox.in_flight(None, SimpleNamespace(node_id="w1", data=report))
    said_at, entries = shape.state.remote_in_flight["w1"]
    assert abs(said_at - now) < 0.01 and entries[0][0] == 1_000_002
    assert abs(entries[0][1] - (now - 0.25)) < 0.01
    inbox.client(None, SimpleNamespace(node_id="w1", data=[[ahead, "worker 1", 0.5, [1.0]]]))
    assert abs(shape.selfcheck.samples[0].ts - now) < 0.01
    inbox.forget_gone(["w2"])  # w1 is gone: nothing of it to wait for
    assert shape.state.remote_in_flight == {}
