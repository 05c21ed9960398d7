"""The planner's steps applied to Locust, each measured on exactly its own requests.

A step goes through these phases, one shape tick (about a second) at a time:

1. **drain** (only with ``drain_s > 0``): no users, at least ``drain_s`` and then
   until no request of ours is in flight and no user is left, so that a queue left
   by an overloaded step is gone. Users stopping meanwhile finish their request (on
   a local runner the ramp-down waits instead of cutting them). Past ``drain_s`` plus
   the await bound, what is left is cut and a warning says so.
2. **spawn**: the level is applied; the window starts ``settle_s`` after exactly
   ``users`` users run (none stopping) and no request started before the level is
   still in flight, or after ``_SPAWN_GRACE_S`` with a warning.
3. **window** [window_start, window_end): the requests started in it are the step's.
   What is in flight is counted at ``window_start + baseline_s`` and at ``window_end``.
4. **await**: the load stays as it is until every request started in the window has
   ended, at most the await bound, or until the planner says the step's verdict is
   decided (``StepPlanner.decided_early``); those still in flight then are censored
   (their ages go to the planner in ``Step.censored_ms``). Then the planner gets the step
   and every row since it was applied.
"""

from __future__ import annotations

import time
from typing import Any

import gevent
from locust import LoadTestShape
from locust.user.task import LOCUST_STATE_STOPPING

from capdisc.loadgen.contract import Step, StepPlanner
from capdisc.loadgen.scraper import ServerScraper
from capdisc.loadgen.selfcheck import SelfCheck
from capdisc.loadgen.state import SessionState
from capdisc.records import RequestRecord, is_round

__all__ = ["InFlightAt", "InFlightView", "PlannedShape"]

# A step whose users never all run (should not happen) starts measuring anyway.
_SPAWN_GRACE_S = 30.0
_MAX_SPAWN_RATE = 100.0
_CUT_WAIT_S = 5.0
# Locust ticks the shape once a second; within a tick a waiting phase is polled this
# often, for at most this long (the rest of the second Locust sleeps).
_POLL_S = 0.05
_TICK_BUDGET_S = 0.9
# While a step's requests are awaited, the planner is asked this often whether its
# verdict is already decided.
_ASK_EVERY_S = 1.0


class InFlightView:
    """Our requests (tool tasks) in flight, wherever the users run: ``(user, ts_start)``.

    Locally the view is always current. On a master it is what the workers last
    reported (``SessionState.report_remote``), complete up to the oldest report, and
    unknown (None) until every worker has reported once.
    """

    def __init__(self, state: SessionState, distributed: bool) -> None:
        self.state = state
        self.distributed = distributed
        self.workers = 0  # workers expected to report (a master's runner.worker_count)

    def as_of(self, now: float) -> float | None:
        """The time up to which :meth:`entries` is complete; None when unknown."""
        if not self.distributed:
            return now
        reports = self.state.remote_in_flight
        if not reports or len(reports) < self.workers:
            return None
        return min(said_at for said_at, _ in reports.values())

    def entries(self) -> list[tuple[int, float]]:
        found = [(user, ts) for user, (ts, _) in self.state.in_flight.items()]
        for _, remote in self.state.remote_in_flight.values():
            found.extend(remote)
        return found

    def started(self, start: float, end: float) -> list[float]:
        """Start times of the requests in flight that started in [start, end)."""
        return [ts for _, ts in self.entries() if start <= ts < end]


class InFlightAt:
    """How many requests of ours were in flight at the instant ``at``, counted exactly
    once ``at`` has passed: those that ended after it (their rows, seen as they come)
    plus those started before it and still in flight."""

    __slots__ = ("at", "count", "ended")

    def __init__(self, at: float) -> None:
        self.at = at
        self.ended: set[tuple[int, float]] = set()
        self.count: int | None = None

    def note(self, row: RequestRecord) -> None:
        if self.count is None and row.ts_start < self.at <= row.ts_end:
            self.ended.add((row.user, row.ts_start))

    def settle(self, view: InFlightView, now: float) -> None:
        """Count now if the view covers ``at`` (else leave it for a later tick)."""
        as_of = view.as_of(now)
        if self.count is not None or as_of is None or as_of < self.at:
            return
        still = {(user, ts) for user, ts in view.entries() if ts < self.at}
        self.count = len(self.ended | still)


class PlannedShape(LoadTestShape):
    """Locust's shape hook, asking the strategy's planner for each next step.

    ``await_s`` is the await bound of a step that does not set its own;
    ``stop_timeout`` the session's, restored after a drain raised it.
    """

    def __init__(
        self,
        planner: StepPlanner,
        state: SessionState,
        rows: list[RequestRecord],
        *,
        await_s: float = 60.0,
        stop_timeout: float = 5.0,
        distributed: bool = False,
    ) -> None:
        super().__init__()
        self.planner = planner
        self.state = state
        self.rows = rows
        self.await_s = await_s
        self.stop_timeout = stop_timeout
        self.distributed = distributed
        self.view = InFlightView(state, distributed)
        self.current: Step | None = planner.first_step()
        self.spawned_at: float | None = None
        self.done = False
        self.warnings: list[str] = []
        self._drain_from: float | None = None
        self._level_at = 0.0
        self._late_ready = False
        self._at: list[InFlightAt] = []
        self._tick: tuple[int, float] = (0, 1.0)
        self._asked_at = 0.0
        self.last_users = 0
        # capdisc's own load per window (loadgen.selfcheck); rows late from workers.
        self.selfcheck = SelfCheck()
        # The server's own metrics per window, when it publishes them (loadgen.scraper).
        self.server: ServerScraper | None = None
        self.rows_delay_s = 0.0
        # (time, step index) of every level applied, to stamp rows from remote workers.
        self.applied: list[tuple[float, int]] = []

    def step_at(self, ts: float) -> int:
        """The step that was running at ``ts``."""
        index = 0
        for applied_at, step in self.applied:
            if applied_at > ts:
                break
            index = step
        return index

    def mark_spawned(self, user_count: int) -> None:
        """Locust finished a ramp: the level's if it is the one asked for now."""
        if self._drain_from is None and user_count == self._tick[0]:
            self.spawned_at = time.time()

    def note_row(self, row: RequestRecord) -> None:
        """A task's row (not a tool round's), for the in-flight counts of the window."""
        for instant in self._at:
            instant.note(row)

    # -- the phases ---------------------------------------------------------

    def tick(self) -> tuple[int, float] | None:
        """Locust calls this once a second; a wait that ends sooner is seen within
        :data:`_POLL_S` (polled inside the tick), so no phase waits for the next tick."""
        deadline = time.monotonic() + _TICK_BUDGET_S
        while True:
            result, waiting = self._advance(time.time())
            if not waiting or time.monotonic() + _POLL_S > deadline:
                return result
            gevent.sleep(_POLL_S)

    def _advance(self, now: float) -> tuple[tuple[int, float] | None, bool]:
        """What to tell Locust now, and whether the current phase is still waiting."""
        step = self.current
        if step is None:
            self.done = True
            return None, False
        if self.distributed:
            self.view.workers = int(self._runner().worker_count)
        if step.applied_at is None:
            return self._apply(step, now), False
        if self._drain_from is not None:
            tick = self._drain(step, now)
            return tick, self._drain_from is not None
        if step.window_start is None and not self._start_window(step, now):
            return self._tick, True
        self._settle(now)
        assert step.window_end is not None
        if now < step.window_end or not self._awaited(step, now):
            return self._tick, True
        return self._close(step, now), False

    def _apply(self, step: Step, now: float) -> tuple[int, float]:
        step.applied_at = now
        self.state.step = step.index
        self.rows.clear()
        self._at = []
        if step.drain_s > 0:
            self._drain_from = now
            # The ramp-down lets requests finish (the target drains) instead of
            # cutting them at the stop timeout; the drain's own bound cuts them.
            self._set_stop_timeout(self.await_bound(step))
            self.spawned_at = None
            self._tick = (0, _MAX_SPAWN_RATE)
            return self._tick
        return self._spawn(step, now)

    def _drain(self, step: Step, now: float) -> tuple[int, float]:
        waited = now - self._drain_from if self._drain_from is not None else 0.0
        if waited < step.drain_s:
            return self._tick
        users, in_flight = self._alive(), len(self.view.entries())
        if users or in_flight:
            if waited < step.drain_s + self.await_bound(step):
                return self._tick
            self._cut_leftovers()
            self.warnings.append(
                f"step {step.index}: after {waited:.0f} s of drain, {in_flight} requests of "
                f"ours were still in flight ({users} users stopping): they were cut "
                f"('stopped in flight') and the step started on a target not yet drained"
            )
        return self._spawn(step, now)

    def _spawn(self, step: Step, now: float) -> tuple[int, float]:
        self._drain_from = None
        self._set_stop_timeout(self.stop_timeout)
        previous = self._tick[0]
        self.applied.append((now, step.index))
        self._level_at = now
        self._late_ready = False
        # An unchanged level is not started again by Locust: no spawning_complete.
        self.spawned_at = now if previous == step.users else None
        rate = float(min(max(abs(step.users - previous), 1), _MAX_SPAWN_RATE))
        self._tick = (step.users, rate)
        self.last_users = step.users
        return self._tick

    def _start_window(self, step: Step, now: float) -> bool:
        """Set the window once exactly the step's users run and nothing older is in flight."""
        running, stopping = self._running()
        older = [ts for _, ts in self.view.entries() if ts < self._level_at]
        ready = self.spawned_at is not None and (running, stopping) == (step.users, 0)
        if ready and not older:
            ready_at = now if self._late_ready else (self.spawned_at or now)
        elif now - self._level_at < _SPAWN_GRACE_S:
            self._late_ready = self._late_ready or self.spawned_at is not None
            return False
        else:
            ready_at = now
            self.warnings.append(
                f"step {step.index}: after {_SPAWN_GRACE_S:g} s, {running} of its "
                f"{step.users} users ran ({stopping} stopping, {len(older)} earlier "
                "requests in flight); it was measured anyway"
            )
        step.window_start = ready_at + step.settle_s
        step.window_end = step.window_start + step.hold_s
        self._at = [InFlightAt(step.window_start + step.baseline_s), InFlightAt(step.window_end)]
        # A window may start in the past (no settle, a ramp seen a tick late): the
        # rows that ended since count too.
        for row in self.rows:
            if not is_round(row.name):
                self.note_row(row)
        return True

    def _awaited(self, step: Step, now: float) -> bool:
        """True once every request started in the window has ended, or at the bound."""
        assert step.window_start is not None and step.window_end is not None
        as_of = self.view.as_of(now)
        if as_of is None:  # workers that do not say what they have in flight
            return now >= step.window_end + self.rows_delay_s
        if as_of >= step.window_end and not self.view.started(step.window_start, step.window_end):
            return True
        deadline = step.window_end + self.await_bound(step)
        if now >= deadline:
            return True
        return as_of >= step.window_end and self._decided_early(step, now, deadline)

    def _decided_early(self, step: Step, now: float, deadline: float) -> bool:
        """Ask the planner (once a second) whether awaiting can still change the verdict."""
        if now - self._asked_at < _ASK_EVERY_S:
            return False
        self._asked_at = now
        self.close_step(step, now)  # the figures as of now; filled again at the close
        if step.in_flight_at_end is None:
            return False
        return self.planner.decided_early(step, list(self.rows), deadline - now)

    def _close(self, step: Step, now: float) -> tuple[int, float] | None:
        """Hand the step to the planner; apply what it answers."""
        self.close_step(step, now)
        following = self.planner.next_step(step, list(self.rows))
        self.current = following
        if following is None:
            self.done = True
            return None
        return self._apply(following, now)

    def close_step(self, step: Step, now: float) -> None:
        """Fill what the planner reads of a step ending now (finished or abandoned)."""
        assert step.window_start is not None and step.window_end is not None
        step.closed_at = now
        step.censored_ms = [
            round((now - ts) * 1000.0, 3)
            for ts in self.view.started(step.window_start, step.window_end)
        ]
        self._settle(now)
        at_start, at_end = self._at or (None, None)
        step.in_flight_at_start = at_start.count if at_start is not None else None
        step.in_flight_at_end = at_end.count if at_end is not None else None
        step.client = self.selfcheck.load(step.window_start, min(now, step.window_end))
        if self.server is not None:
            step.server = self.server.figures(step.window_start, min(now, step.window_end))

    # -- helpers ------------------------------------------------------------

    def await_bound(self, step: Step) -> float:
        return self.await_s if step.await_s is None else step.await_s

    def _settle(self, now: float) -> None:
        for instant in self._at:
            if now >= instant.at:
                instant.settle(self.view, now)

    def _runner(self) -> Any:
        return self.runner

    def _alive(self) -> int:
        """User greenlets alive, stopping ones included."""
        runner = self._runner()
        return int(runner.user_count) if self.distributed else len(runner.user_greenlets)

    def _running(self) -> tuple[int, int]:
        """(users running, users stopping); a master only knows its workers' totals."""
        runner = self._runner()
        if self.distributed:
            return int(runner.user_count), 0
        states = [getattr(g.args[0], "_state", None) for g in runner.user_greenlets if g.args]
        stopping = sum(state == LOCUST_STATE_STOPPING for state in states)
        return len(states) - stopping, stopping

    def _cut_leftovers(self) -> None:
        """End a drain past its bound: local users left are killed (their rows say so)."""
        if not self.distributed:
            self._runner().user_greenlets.kill(block=True, timeout=_CUT_WAIT_S)

    def _set_stop_timeout(self, seconds: float) -> None:
        # A master's workers take it from each spawn message: raising it there would
        # also slow a stop that comes during the drain, so only a local runner waits.
        runner = self._runner()
        if runner is not None and not self.distributed:
            runner.environment.stop_timeout = seconds

    def restore_stop_timeout(self) -> None:
        """The session's stop timeout again (before the session stops its users)."""
        self._set_stop_timeout(self.stop_timeout)

    @property
    def draining(self) -> bool:
        """True while the step's pause without users runs."""
        return self._drain_from is not None

    def remaining_in_step(self) -> float | None:
        step = self.current
        if step is None or step.window_end is None:
            return None
        return max(0.0, step.window_end - time.time())
