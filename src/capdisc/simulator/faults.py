"""Faults a test switches on to see how capdisc copes, in one object the server consults.

``max_connections`` closes connections beyond the limit as soon as they are made. The
others apply to the generation endpoints only; ``/health``, ``/stats`` and the model
lists keep answering so that a test can still observe the simulator. ``crash_after``
= N lets N generation requests in and exits the process abruptly when request N+1
arrives, so a sequential client sees exactly N answers; ``hang`` reads requests and
never answers them; ``error_rate`` answers a seeded share of them with a 500.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys

from capdisc.simulator.config import FaultConfig
from capdisc.simulator.errors import HttpError


class Faults:
    """The configured faults, and the state they need (a seeded draw, a request count)."""

    def __init__(self, config: FaultConfig, seed: int) -> None:
        self._config = config
        self._error_rng = random.Random(seed + 1)
        self._received = 0  # unlike stats.requests, never reset
        # Lets the common case (no such fault) skip before_answer on every request.
        self.gates_requests = config.crash_after is not None or config.hang

    def refuses_connection(self, open_connections: int) -> bool:
        """Whether a new connection is to be closed at once, given how many are open."""
        limit = self._config.max_connections
        return limit is not None and open_connections >= limit

    async def before_answer(self) -> None:
        """Apply the faults that act when a generation request arrives: crash, hang."""
        self._received += 1
        faults = self._config
        if faults.crash_after is not None and self._received > faults.crash_after:
            sys.stderr.write(
                f"capdisc simulator: crash_after={faults.crash_after} reached, exiting abruptly\n"
            )
            sys.stderr.flush()
            os._exit(70)
        if faults.hang:
            # Cancelled when the client gives up and closes the connection.
            await asyncio.get_running_loop().create_future()

    def maybe_fail(self) -> None:
        """Raise the injected 500 for a seeded share (``error_rate``) of valid requests."""
        rate = self._config.error_rate
        if rate > 0 and self._error_rng.random() < rate:
            raise HttpError(500, "simulated server error", "server_error", counter="errors")
