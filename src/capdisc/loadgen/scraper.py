"""The server's own view during a run: its ``/metrics`` read about once a second.

One :class:`ServerScraper` per endpoint runs as a greenlet in the master process (never
in the load users, never on a worker), like the self-check sampler: a cheap GET about
once a second, each reading kept in memory and written to ``server.csv`` as it comes.
The gaps between scrapes are drawn between 0.5 and 1.5 s: users paced at a whole
number of seconds repeat their cycle exactly, and a scraper on a fixed second would
see each of them at the same point of it every time (on a real llama.cpp server, 5
users of 22 ms requests every second read as never running). Random gaps sample the
gauges at every phase, so their means are the time averages. The run
reads the endpoint once before any load and once after the last request, so its counters
span the whole run. A scrape that fails or times out is counted and skipped; it never
stops or slows the run. Each step or block gets :meth:`ServerScraper.figures` of its
window.
"""

from __future__ import annotations

import random
import time

import gevent
import httpx

from capdisc.apis.server_metrics import SCRAPE_TIMEOUT_S, MetricsEndpoint, fetch_metrics
from capdisc.rundir import RecordWriter
from capdisc.servermetrics.families import QUANTITIES, Reading, read_metrics
from capdisc.servermetrics.figures import ServerFigures, window_figures

__all__ = ["SERVER_COLUMNS", "ServerScraper"]

SCRAPE_EVERY_S = 1.0
# Each gap is drawn uniformly within this much of SCRAPE_EVERY_S (seeded: reproducible).
_JITTER_S = 0.5
# A bound on one run's scrapes (about 11 days at one a second).
_MAX_SCRAPES = 1_000_000
# Scrapes at least this far apart, even after one that overran its second.
_MIN_GAP_S = 0.2
SERVER_COLUMNS = ("ts", "sent", "url", *QUANTITIES)


class ServerScraper:
    """Reads one endpoint for the versions it serves; ``readings`` in time order."""

    def __init__(self, endpoint: MetricsEndpoint, writer: RecordWriter | None = None) -> None:
        self.endpoint = endpoint
        self.writer = writer
        self.readings: list[Reading] = []
        self.failed = 0
        self.last_error = ""
        self.versions: set[str] = set()
        self._greenlet: gevent.Greenlet | None = None
        self._client: httpx.Client | None = None
        self._gaps = random.Random(0x5C12A9E)

    @property
    def family(self) -> str:
        return self.endpoint.family.name

    def start(self) -> ServerScraper:
        """One reading now (the run's baseline), then one about every second."""
        if self._greenlet is None:
            self.scrape()
            self._greenlet = gevent.spawn(self._run)
        return self

    def stop(self) -> None:
        """End the greenlet, then one last reading (every request has ended by now)."""
        if self._greenlet is not None:
            self._greenlet.kill(block=True, timeout=SCRAPE_TIMEOUT_S + 1.0)
            self._greenlet = None
            self.scrape()
        if self._client is not None:
            self._client.close()
            self._client = None

    def scrape(self) -> Reading | None:
        """Read the endpoint once; a failure is counted, never raised."""
        if self._client is None:
            # Made here, after gevent patched the standard library (see LOCUST_NOTES).
            self._client = httpx.Client(timeout=SCRAPE_TIMEOUT_S, follow_redirects=False)
        sent = time.time()
        try:
            text = fetch_metrics(self._client, self.endpoint)
            reading = read_metrics(text, self.endpoint.family, sent=sent, ts=time.time())
        except (httpx.HTTPError, ValueError) as exc:
            self.failed += 1
            self.last_error = str(exc)[:120] or exc.__class__.__name__
            return None
        self.readings.append(reading)
        if self.writer is not None:
            values = reading.values
            self.writer.write(
                (
                    round(reading.ts, 3),
                    round(reading.sent, 3),
                    self.endpoint.url,
                    *("" if values.get(q) is None else f"{values[q]:g}" for q in QUANTITIES),
                )
            )
        return reading

    def _run(self) -> None:
        due = time.monotonic()
        for _ in range(_MAX_SCRAPES):
            due += self._gaps.uniform(SCRAPE_EVERY_S - _JITTER_S, SCRAPE_EVERY_S + _JITTER_S)
            gevent.sleep(max(_MIN_GAP_S, due - time.monotonic()))
            due = max(due, time.monotonic() - SCRAPE_EVERY_S)  # no burst after a stall
            self.scrape()

    def figures(self, start: float, end: float) -> ServerFigures | None:
        """The server's figures over [start, end] (Unix seconds); None without a reading."""
        return window_figures(self.readings, self.family, start, end)
