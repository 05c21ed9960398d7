"""Is capdisc itself the bottleneck? Each load process watches its own CPU and event loop.

A load generator that runs out of CPU shows latency that looks like a slow server,
and with constant pacing its late starts look like saturation. So every process
that generates load (the only one, or the master and each worker) runs a
:class:`Sampler`: a 100 ms gevent timer whose lateness is the event-loop lag (how
long a ready socket waits before its greenlet runs), and once a second a
:class:`~capdisc.records.ClientSample` with the process's CPU share over that second
(``time.process_time``, every thread) and the lags of its timers. Workers send their
samples to the master (``capdisc_client`` messages); :class:`SelfCheck` keeps every
process's samples, writes them to ``client.csv`` and sums up a step's window as a
:class:`~capdisc.schema.ClientLoad`. Whether a load is too much is the strategies'
call (``capdisc.strategies.client``); this module only measures.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable

import gevent

from capdisc.loadgen.state import nearest_rank
from capdisc.records import ClientSample
from capdisc.rundir import RecordWriter
from capdisc.schema import ClientLoad

__all__ = [
    "CLIENT_MESSAGE",
    "Sampler",
    "SelfCheck",
    "client_load",
]

TICK_S = 0.1
SAMPLE_S = 1.0
CLIENT_MESSAGE = "capdisc_client"


class Sampler:
    """The greenlet that samples this process once a second and hands each sample to ``sink``."""

    def __init__(self, process: str, sink: Callable[[ClientSample], None]) -> None:
        self.process = process
        self.sink = sink
        self._greenlet: gevent.Greenlet | None = None

    def start(self) -> Sampler:
        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._run)
        return self

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None

    def _run(self) -> None:
        clock = time.monotonic
        last_wall, last_cpu = clock(), time.process_time()
        lags: list[float] = []
        while True:
            due = clock() + TICK_S
            gevent.sleep(TICK_S)
            now = clock()
            lags.append(round(max(0.0, now - due) * 1000.0, 1))
            if now - last_wall >= SAMPLE_S - TICK_S / 2:
                cpu = time.process_time()
                share = (cpu - last_cpu) / (now - last_wall)
                self.sink(
                    ClientSample(round(time.time(), 3), self.process, round(share, 3), tuple(lags))
                )
                last_wall, last_cpu, lags = now, cpu, []


class SelfCheck:
    """Every load process's samples of a run, written to ``client.csv`` as they come."""

    def __init__(self, writer: RecordWriter | None = None) -> None:
        self.samples: list[ClientSample] = []
        # Each sample as its row of client.csv (CLIENT_COLUMNS), for the run's result.
        self.rows: list[tuple[float, str, float, float, float, str]] = []
        self.writer = writer

    def add(self, sample: ClientSample) -> None:
        self.samples.append(sample)
        lags = sorted(sample.lags_ms) or [0.0]
        row = (
            sample.ts,
            sample.process,
            sample.cpu,
            nearest_rank(lags, 0.95),
            lags[-1],
            " ".join(f"{lag:g}" for lag in sample.lags_ms),
        )
        self.rows.append(row)
        if self.writer is not None:
            self.writer.write(row)

    def sampler(self, process: str) -> Sampler:
        """A sampler of this process feeding this check (started by the caller)."""
        return Sampler(process, self.add)

    def load(self, start: float, end: float) -> ClientLoad | None:
        """The load of every process between ``start`` and ``end`` (Unix seconds)."""
        return client_load(self.samples, start, end)


def client_load(samples: Iterable[ClientSample], start: float, end: float) -> ClientLoad | None:
    """Sum up the samples of the seconds that fall in [start, end]; None without any.

    A sample covers the second before its ``ts``; it counts when the middle of that
    second is in the window. CPU is the busiest process's (median of its seconds),
    lag the most lagging process's (95th percentile of all its timers).
    """
    by_process: dict[str, list[ClientSample]] = {}
    for sample in samples:
        if start <= sample.ts - SAMPLE_S / 2 <= end:
            by_process.setdefault(sample.process, []).append(sample)
    if not by_process:
        return None
    cpu: dict[str, list[float]] = {p: sorted(s.cpu for s in ss) for p, ss in by_process.items()}
    lags: dict[str, list[float]] = {
        p: sorted(lag for s in ss for lag in s.lags_ms) or [0.0] for p, ss in by_process.items()
    }
    busiest = max(cpu, key=lambda p: (statistics.median(cpu[p]), p))
    lagging = max(lags, key=lambda p: (nearest_rank(lags[p], 0.95), p))
    return ClientLoad(
        processes=len(by_process),
        seconds=max(len(ss) for ss in by_process.values()),
        busiest=busiest,
        cpu_p50=round(statistics.median(cpu[busiest]), 3),
        cpu_mean=round(statistics.fmean(cpu[busiest]), 3),
        cpu_max=cpu[busiest][-1],
        lagging=lagging,
        lag_p95_ms=nearest_rank(lags[lagging], 0.95),
        lag_max_ms=lags[lagging][-1],
    )
