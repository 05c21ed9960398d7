"""Worker clocks and what a worker sends, put on the master's clock (no Locust here).

The times a worker sends (its rows, what it has in flight, its self-check samples) are
its own ``time.time()``, while the steps' windows are the master's. When a worker
connects, :class:`WorkerClocks` measures how far its clock is from the master's (a few
``capdisc_ping``/``capdisc_pong`` exchanges, the one with the shortest round trip kept,
as NTP does); :class:`WorkerInbox` takes that offset off every time the worker sends
before anything reads it. Kept apart from :mod:`.master` so it imports neither Locust
nor gevent (and tests can import it in any process).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

from capdisc.records import ClientSample, RequestRecord

if TYPE_CHECKING:
    from capdisc.loadgen.shape import PlannedShape

__all__ = [
    "CLOCK_PINGS",
    "CLOCK_WAIT_S",
    "PING_MESSAGE",
    "PONG_MESSAGE",
    "ClockOffset",
    "WorkerClocks",
    "WorkerInbox",
    "shift_row",
]

PING_MESSAGE = "capdisc_ping"
PONG_MESSAGE = "capdisc_pong"
# Pings per worker, one after the other; the shortest round trip gives the offset
# (its error is at most half that round trip).
CLOCK_PINGS = 5
# A worker that has not answered by then keeps what it answered, or offset 0.
CLOCK_WAIT_S = 5.0


class ClockOffset(NamedTuple):
    """How far one worker's clock was from the master's when it connected."""

    worker: int  # its index: its users are numbered from index x 1,000,000
    node_id: str  # Locust's id of the worker (host name and a random suffix)
    offset_s: float  # worker clock minus master clock, taken off every time it reports
    rtt_s: float | None  # round trip of the exchange kept; None: not measured (offset 0)
    samples: int  # pongs received


class _Probe:
    """One worker's clock measurement in progress."""

    def __init__(self, worker: int, started: float) -> None:
        self.worker = worker
        self.started = started  # monotonic time of the first ping
        self.pings = 0
        self.sent: dict[int, tuple[float, float]] = {}  # seq -> (wall, monotonic) when sent
        self.samples = 0
        self.offset = 0.0
        self.rtt: float | None = None


class WorkerClocks:
    """The clock offsets of one master's workers, measured by ping/pong when they connect.

    ``send(message, data, node_id)`` sends a custom message to one worker. The master
    sends a ping with a sequence number; the worker answers its ``time.time()``; the
    offset is that time minus the midpoint of the master's send and receive times.
    Pings go one at a time, so none waits behind another.
    """

    def __init__(self, send: Callable[[str, dict[str, Any], str], None]) -> None:
        self._send = send
        self._probes: dict[str, _Probe] = {}

    def probe(self, node_id: str, worker: int) -> None:
        """Start measuring ``node_id`` (once per session: a reconnect keeps its figures)."""
        if node_id not in self._probes:
            self._probes[node_id] = _Probe(worker, time.monotonic())
            self._ping(node_id)

    def _ping(self, node_id: str) -> None:
        probe = self._probes[node_id]
        probe.pings += 1
        probe.sent[probe.pings] = (time.time(), time.monotonic())
        self._send(PING_MESSAGE, {"seq": probe.pings}, node_id)

    def on_pong(self, node_id: str, data: dict[str, Any]) -> None:
        """A worker's answer: keep it if its round trip is the shortest so far."""
        received, received_mono = time.time(), time.monotonic()
        probe = self._probes.get(node_id)
        sent = probe.sent.pop(int(data["seq"]), None) if probe is not None else None
        if probe is None or sent is None:
            return  # not a ping of this master (an earlier session's, or a duplicate)
        rtt = received_mono - sent[1]
        probe.samples += 1
        if probe.rtt is None or rtt < probe.rtt:
            probe.rtt = rtt
            probe.offset = float(data["clock"]) - (sent[0] + received) / 2.0
        if probe.samples < CLOCK_PINGS:
            self._ping(node_id)

    def settled(self, node_ids: Iterable[str], now: float | None = None) -> bool:
        """True once each of ``node_ids`` is measured, or has had its ``CLOCK_WAIT_S``."""
        now = time.monotonic() if now is None else now
        return all(self._settled(node_id, now) for node_id in node_ids)

    def _settled(self, node_id: str, now: float) -> bool:
        probe = self._probes.get(node_id)
        if probe is None:
            return False
        return probe.samples >= CLOCK_PINGS or now - probe.started >= CLOCK_WAIT_S

    def offset(self, node_id: str) -> float:
        """Seconds to take off the times ``node_id`` reports (0 if never measured)."""
        probe = self._probes.get(node_id)
        return probe.offset if probe is not None else 0.0

    def clocks(self) -> list[ClockOffset]:
        """Every worker's measurement, by worker index."""
        return sorted(
            ClockOffset(p.worker, node_id, round(p.offset, 6), _rounded(p.rtt), p.samples)
            for node_id, p in self._probes.items()
        )

    def notes(self) -> list[str]:
        """Warnings: workers whose clock could not be measured once their wait is over."""
        now = time.monotonic()
        return [
            f"worker {clock.worker}: its clock could not be measured (no answer to "
            f"{PING_MESSAGE} within {CLOCK_WAIT_S:g} s), its times are used as they are"
            for clock in self.clocks()
            if clock.rtt_s is None and self._settled(clock.node_id, now)
        ]


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def shift_row(row: RequestRecord, by: float) -> RequestRecord:
    """``row`` with its three times moved by ``by`` seconds."""
    if not by:
        return row
    return row._replace(
        ts_scheduled=round(row.ts_scheduled + by, 6),
        ts_start=round(row.ts_start + by, 6),
        ts_end=round(row.ts_end + by, 6),
    )


class WorkerInbox:
    """What workers send the master, put on the master's clock before anything reads it."""

    def __init__(
        self, runner: Any, shape: PlannedShape, on_row: Callable[[RequestRecord], None]
    ) -> None:
        self.shape = shape
        self.on_row = on_row
        self.clocks = WorkerClocks(
            lambda kind, data, node: runner.send_message(kind, data, client_id=node)
        )

    def rows(self, environment: Any, msg: Any, **_kw: Any) -> None:
        offset = self.clocks.offset(msg.node_id)
        for data in msg.data:
            row = shift_row(RequestRecord(*data), -offset)
            self.on_row(row._replace(step=self.shape.step_at(row.ts_start)))

    def in_flight(self, environment: Any, msg: Any, **_kw: Any) -> None:
        """What the worker had in flight once every row before this message was sent."""
        offset = self.clocks.offset(msg.node_id)
        entries = [(user, ts - offset) for user, ts in msg.data["entries"]]
        self.shape.state.report_remote(msg.node_id, msg.data["at"] - offset, entries)

    def client(self, environment: Any, msg: Any, **_kw: Any) -> None:
        offset = self.clocks.offset(msg.node_id)
        for ts, process, cpu, lags in msg.data:
            sample = ClientSample(round(ts - offset, 3), process, cpu, tuple(lags))
            self.shape.selfcheck.add(sample)

    def pong(self, environment: Any, msg: Any, **_kw: Any) -> None:
        self.clocks.on_pong(msg.node_id, msg.data)

    def forget_gone(self, present: Iterable[str]) -> None:
        """Workers no longer connected have nothing in flight the steps should wait for."""
        kept = set(present)
        for node_id in [n for n in self.shape.state.remote_in_flight if n not in kept]:
            self.shape.state.forget_remote(node_id)
