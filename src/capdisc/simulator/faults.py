"""Faults a test switches on to see how capdisc copes, in one object the server consults.

``max_connections`` closes connections beyond the limit as soon as they are made. The
others apply to the generation endpoints only; ``/health``, ``/stats`` and the model
lists keep answering so that a test can still observe the simulator. ``crash_after``
= N lets N generation requests in and exits the process abruptly when request N+1
arrives, so a sequential client sees exactly N answers; ``hang`` reads requests and
never answers them; ``error_rate`` answers a seeded share of them with a 500.

The overload faults fail a request slowly, on arrival, before it is validated or
queued: ``overload_rps`` when the arrivals within the last ``overload_window_s``
(every one counted, failed ones too, so a server stays overloaded while the excess
keeps coming) exceed ``overload_rps x overload_window_s``; ``overload_queue`` when the
request would wait for a slot behind that many queued ones. Either way the request
holds no slot, waits ``overload_fail_after_s`` and gets HTTP 500, counted in
``/stats`` as ``overloaded`` (``overload_pending`` while it waits).
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
from collections import deque
from typing import TYPE_CHECKING

from capdisc.simulator.config import FaultConfig
from capdisc.simulator.errors import HttpError
from capdisc.simulator.stats import StatsSnapshot

if TYPE_CHECKING:  # protocol imports this module, and capacity imports protocol
    from capdisc.simulator.capacity import SlotPool


class Faults:
    """The configured faults, and the state they need (a seeded draw, counts, arrivals)."""

    def __init__(
        self, config: FaultConfig, seed: int, stats: StatsSnapshot, capacity: SlotPool
    ) -> None:
        self._config = config
        self._stats = stats
        self._capacity = capacity
        self._error_rng = random.Random(seed + 1)
        self._received = 0  # unlike stats.requests, never reset
        # Arrival times within the last overload_window_s, oldest first.
        self._arrivals: deque[float] = deque()
        self._overload_limit = (
            None if config.overload_rps is None else config.overload_rps * config.overload_window_s
        )
        # Lets the common case (no such fault) skip before_answer on every request.
        self.gates_requests = (
            config.crash_after is not None
            or config.hang
            or self._overload_limit is not None
            or config.overload_queue is not None
        )

    def refuses_connection(self, open_connections: int) -> bool:
        """Whether a new connection is to be closed at once, given how many are open."""
        limit = self._config.max_connections
        return limit is not None and open_connections >= limit

    async def before_answer(self) -> None:
        """Apply the faults that act when a generation request arrives: crash, hang, overload."""
        self._received += 1
        faults = self._config
        if faults.crash_after is not None and self._received > faults.crash_after:
            sys.stderr.write(
                f"capdisc simulator: crash_after={faults.crash_after} reached, exiting abruptly\n"
            )
            sys.stderr.flush()
            os._exit(70)
        reason = self._overload_reason()
        if reason is not None:
            await self._fail_slowly(reason)
        if faults.hang:
            # Cancelled when the client gives up and closes the connection.
            await asyncio.get_running_loop().create_future()

    def maybe_fail(self) -> None:
        """Raise the injected 500 for a seeded share (``error_rate``) of valid requests."""
        rate = self._config.error_rate
        if rate > 0 and self._error_rng.random() < rate:
            raise HttpError(500, "simulated server error", "server_error", counter="errors")

    # --- overload -----------------------------------------------------------------

    def _overload_reason(self) -> str | None:
        """Why the request arriving now is to fail slowly, or None to serve it."""
        faults = self._config
        if self._overload_limit is not None:
            arrived = self._count_arrival(asyncio.get_running_loop().time())
            if arrived > self._overload_limit:
                return (
                    f"server overloaded: {arrived} requests within "
                    f"{faults.overload_window_s:g} s (limit {faults.overload_rps:g}/s)"
                )
        queue = faults.overload_queue
        if queue is not None and self._capacity.would_wait_behind(queue):
            return f"server overloaded: {queue} requests already queued"
        return None

    def _count_arrival(self, now: float) -> int:
        """Record an arrival at ``now``; the arrivals within the window, this one included."""
        arrivals = self._arrivals
        arrivals.append(now)
        horizon = now - self._config.overload_window_s
        while arrivals[0] <= horizon:
            arrivals.popleft()
        return len(arrivals)

    async def _fail_slowly(self, reason: str) -> None:
        """Wait ``overload_fail_after_s``, then answer 500 (counted as ``overloaded``)."""
        stats = self._stats
        stats.overload_pending += 1
        try:
            await asyncio.sleep(self._config.overload_fail_after_s)
        except asyncio.CancelledError:
            stats.cancelled += 1  # the client gave up first
            raise
        finally:
            stats.overload_pending -= 1
        raise HttpError(500, reason, "server_error", counter="overloaded")
