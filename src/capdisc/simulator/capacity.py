"""The capacity model: how many requests are served at once, how many may wait, and
how long each one holds its slot.

``slots`` requests are served at once and up to ``queue_limit`` wait for a slot, in
arrival order; a request that finds the queue full is answered 503 at once. A served
request holds its slot for ``prefill_ms``, then ``per_token_ms`` per output token
(stretched by ``slowdown_per_slot`` for every other busy slot), all scaled by one
seeded jitter factor drawn per request and by ``1 + drift_per_min x minutes since
the start``. :meth:`SlotPool.service_times` decides a request's times;
:meth:`SlotPool.serve` spends them, handing tokens to an ``emit`` callback as they
are generated. Handlers own the answer's format, never its timing.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from capdisc.simulator.config import SimulatorConfig
from capdisc.simulator.errors import HttpError
from capdisc.simulator.stats import StatsSnapshot

# Below this much time ahead of schedule a stream does not sleep but emits at once:
# a timer per 1 ms token would cost more CPU than the tokens themselves.
_STREAM_MIN_SLEEP_S = 0.002
_BATCH_MIN_SLEEP_S = 0.02
# With per_token_ms = 0 a long answer would otherwise never yield to other connections.
_YIELD_EVERY_TOKENS = 256

Emit = Callable[[int, int], None]
"""``emit(start, stop)`` writes tokens ``start`` to ``stop - 1`` of an answer."""


class Backpressure(Protocol):
    """Where an answer's tokens go: a connection whose writes may pause (a slow reader).

    The capacity model waits on it and knows nothing else of HTTP.
    """

    @property
    def write_paused(self) -> bool: ...

    async def drain(self) -> None: ...


class _Slots:
    """The slot semaphore with a bounded queue; waiters get slots in arrival order."""

    def __init__(self, slots: int, queue_limit: int) -> None:
        self._slots = slots
        self._queue_limit = queue_limit
        self.active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def admit(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None] | None:
        """A future that completes when a slot is ours, or None when the queue is full."""
        fut: asyncio.Future[None] = loop.create_future()
        if self.active < self._slots and not self._waiters:
            self.active += 1
            fut.set_result(None)
            return fut
        if len(self._waiters) >= self._queue_limit:
            return None
        self._waiters.append(fut)
        return fut

    async def wait(self, fut: asyncio.Future[None]) -> None:
        """Wait for an admitted future; a cancelled waiter gives its place or slot back."""
        if fut.done():
            return
        try:
            await fut
        except asyncio.CancelledError:
            if fut.cancelled():
                if fut in self._waiters:
                    self._waiters.remove(fut)
            else:
                # The slot was handed over just before the cancellation landed.
                self.release()
            raise

    def release(self) -> None:
        """Free a slot, or hand it straight to the oldest waiter."""
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.active -= 1


class SlotPool:
    """Slots, queue and service time of one simulator, kept in step with its stats.

    A generation request calls :meth:`admit` once (which may refuse it with 503),
    then for each model call :meth:`wait` for a slot, :meth:`serve`, :meth:`release`,
    and finally :meth:`leave`.
    """

    def __init__(self, config: SimulatorConfig, stats: StatsSnapshot) -> None:
        self._config = config
        self._stats = stats
        self._slots = _Slots(config.slots, config.queue_limit)
        self._jitter_rng = random.Random(config.seed)
        # Drift counts from here: the simulator's start.
        self._started = time.monotonic()

    # --- slots and queue --------------------------------------------------------

    def admit(self) -> asyncio.Future[None]:
        """Queue a new request: a future done once a slot is its own; 503 if the queue is full.

        The request counts as in flight until :meth:`leave`.
        """
        fut = self._slots.admit(asyncio.get_running_loop())
        if fut is None:
            raise HttpError(
                503,
                f"server overloaded: {self._config.queue_limit} requests already queued",
                "overloaded_error",
                counter="rejected",
            )
        stats = self._stats
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        stats.active = self._slots.active
        stats.max_active = max(stats.max_active, stats.active)
        stats.queued = self._slots.queued
        return fut

    def requeue(self, message: str) -> asyncio.Future[None]:
        """Queue a request already in flight again (an agent's next model call).

        A full queue answers 503 with ``message``.
        """
        fut = self._slots.admit(asyncio.get_running_loop())
        if fut is None:
            raise HttpError(503, message, "overloaded_error", counter="rejected")
        self._stats.active = self._slots.active
        self._stats.max_active = max(self._stats.max_active, self._stats.active)
        return fut

    async def wait(self, fut: asyncio.Future[None]) -> None:
        """Wait until the slot of an admitted request is free."""
        if not fut.done():
            await self._slots.wait(fut)
        stats = self._stats
        stats.active = self._slots.active
        stats.max_active = max(stats.max_active, stats.active)
        stats.queued = self._slots.queued

    def would_wait_behind(self, queued: int) -> bool:
        """Whether a request arriving now would wait for a slot behind ``queued`` or more."""
        slots = self._slots
        if slots.queued == 0 and slots.active < self._config.slots:
            return False  # a slot is free: it would not wait at all
        return slots.queued >= queued

    def release(self) -> None:
        """Give the slot back, to the oldest waiter if there is one."""
        self._slots.release()
        self._stats.active = self._slots.active
        self._stats.queued = self._slots.queued

    def leave(self) -> None:
        """The request is over, whichever way it ended."""
        self._stats.in_flight -= 1

    # --- service time -----------------------------------------------------------

    def service_times(self, prompt_tokens: int | None = 0) -> tuple[float, float]:
        """Prefill seconds and per-token seconds of the request about to be served.

        The prefill is ``prefill_ms`` plus ``prefill_per_token_ms`` per prompt token,
        none at all for a cached prompt (``prompt_tokens`` None). Drawn when its
        service starts (one jitter factor per request); the stretch for other busy
        slots is applied per token by :meth:`serve`, since it changes while the
        request runs.
        """
        cfg = self._config
        j = cfg.jitter
        factor = self._jitter_rng.uniform(1.0 - j, 1.0 + j) if j > 0 else 1.0
        if cfg.drift_per_min:
            factor *= 1.0 + cfg.drift_per_min * (time.monotonic() - self._started) / 60.0
        prefill_ms = (
            0.0
            if prompt_tokens is None
            else cfg.prefill_ms + prompt_tokens * cfg.prefill_per_token_ms
        )
        return prefill_ms / 1000.0 * factor, cfg.per_token_ms / 1000.0 * factor

    async def serve(
        self,
        tokens: int,
        emit: Emit | None,
        conn: Backpressure | None,
        prompt_tokens: int | None = 0,
    ) -> tuple[float, float, float]:
        """Hold the (already acquired) slot for one service time.

        ``emit(start, stop)`` writes tokens ``start`` to ``stop - 1`` once they are
        generated; ``prompt_tokens`` sets the prefill (see :meth:`service_times`).
        Returns the loop times of the start, of the end of prefill and of the end.
        """
        loop = asyncio.get_running_loop()
        stats = self._stats
        prefill, per_token = self.service_times(prompt_tokens)
        start = loop.time()
        deadline = start + prefill
        if deadline > start:
            await asyncio.sleep(deadline - start)
        prefilled = loop.time()
        stats.prompt_tokens += prompt_tokens or 0
        if per_token <= 0:
            for first in range(0, tokens, _YIELD_EVERY_TOKENS):
                if first:
                    await asyncio.sleep(0)
                last = min(tokens, first + _YIELD_EVERY_TOKENS)
                stats.generated_tokens += last - first
                if emit is not None:
                    emit(first, last)
                    if conn is not None and conn.write_paused:
                        await conn.drain()
            return start, prefilled, loop.time()
        slowdown = self._config.slowdown_per_slot
        slots = self._slots
        min_sleep = _STREAM_MIN_SLEEP_S if emit is not None else _BATCH_MIN_SLEEP_S
        pending = 0  # first token generated but not yet written
        counted = 0  # tokens generated and counted in the stats (before each wait)
        for i in range(tokens):
            # Scheduling on absolute deadlines absorbs timer overshoot and lets fast
            # tokens share one wake-up without changing the total time.
            deadline += per_token * (1.0 + slowdown * (slots.active - 1))
            ahead = deadline - loop.time()
            if ahead > min_sleep:
                if emit is not None and pending < i:
                    emit(pending, i)
                    pending = i
                    if conn is not None and conn.write_paused:
                        await conn.drain()
                        ahead = deadline - loop.time()
                if ahead > 0:
                    stats.generated_tokens += i - counted
                    counted = i
                    await asyncio.sleep(ahead)
        ahead = deadline - loop.time()
        if ahead > 0:  # the last token is being generated
            done = max(tokens - 1, counted)
            stats.generated_tokens += done - counted
            counted = done
            await asyncio.sleep(ahead)
        stats.generated_tokens += tokens - counted
        if emit is not None and pending < tokens:
            emit(pending, tokens)
        return start, prefilled, loop.time()
