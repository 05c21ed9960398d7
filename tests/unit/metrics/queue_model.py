"""A small deterministic discrete-event model of paced users against a slotted server.

Test support for the step statistics (``capdisc.metrics.trend``): it produces the task
rows, censored ages and in-flight counts the engine reports for one step, for servers
whose capacity is known exactly.

The server has ``slots`` slots and a FIFO queue in front of them. A task needs
``service_s`` seconds of work (times a factor drawn uniformly in ``1 ± jitter``). With
``b`` slots busy each task in service progresses at ``1 / (1 + batching * (b - 1))``
work-seconds per second, the way a continuous-batching server slows every sequence as
the batch grows; ``batching=0`` is a plain queue. Capacity (tasks/s) is therefore
``slots / (service_s * (1 + batching * (slots - 1)))``.

Users pace like capdisc's: a user starts its first task at a seeded random phase within
the first interval, then every ``interval_s`` after its previous start, or at once when
the previous task ends later than that (a late start; ``ts_scheduled`` keeps the time
pacing wanted). All users run from ``t0``; the window opens after ``settle_s`` (one
interval by default: every user has started by then) and lasts ``window_s``. Load goes on
until ``judged_at`` (the window's end plus ``grace_s``): tasks of the window not finished
by then are censored, with their age.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from dataclasses import dataclass, field

import pandas as pd

from capdisc.metrics.trend import Censored

T0 = 1_700_000_000.0  # epoch seconds, so the statistics see realistic timestamps
_EPS = 1e-9
_MAX_EVENTS = 1_000_000  # bounds every simulation loop


@dataclass(frozen=True)
class Server:
    """The simulated server; ``capacity_rps`` is what it sustains with every slot busy."""

    slots: int
    service_s: float
    jitter: float = 0.0
    batching: float = 0.0

    def rate(self, busy: int) -> float:
        """Work-seconds per second each task in service gets with ``busy`` slots busy."""
        return 1.0 / (1.0 + self.batching * max(busy - 1, 0))

    @property
    def capacity_rps(self) -> float:
        return self.slots * self.rate(self.slots) / self.service_s


@dataclass(frozen=True)
class Step:
    """What the engine hands the step judge: the window's tasks and the counts around it."""

    tasks: pd.DataFrame
    window_start: float
    window_end: float
    users: int
    interval_s: float
    censored: tuple[Censored, ...]
    in_flight_at_start: int
    in_flight_at_end: int


@dataclass
class _Task:
    user: int
    scheduled: float
    start: float
    work: float
    end: float | None = None


@dataclass
class _State:
    server: Server
    now: float = 0.0
    queue: deque[_Task] = field(default_factory=deque)
    serving: list[_Task] = field(default_factory=list)
    tasks: list[_Task] = field(default_factory=list)

    def in_flight(self) -> int:
        return len(self.queue) + len(self.serving)

    def next_completion(self) -> float:
        if not self.serving:
            return float("inf")
        rate = self.server.rate(len(self.serving))
        return self.now + min(t.work for t in self.serving) / rate

    def advance(self, until: float) -> None:
        """Serve everything in service up to ``until`` (no event happens before it)."""
        rate = self.server.rate(len(self.serving))
        for task in self.serving:
            task.work -= (until - self.now) * rate
        self.now = until

    def finish_done(self) -> list[_Task]:
        done = [t for t in self.serving if t.work <= _EPS]
        self.serving = [t for t in self.serving if t.work > _EPS]
        for task in done:
            task.end = self.now
        self._admit()
        return done

    def arrive(self, task: _Task) -> None:
        self.tasks.append(task)
        self.queue.append(task)
        self._admit()

    def _admit(self) -> None:
        while self.queue and len(self.serving) < self.server.slots:
            self.serving.append(self.queue.popleft())


def simulate(
    server: Server,
    users: int,
    interval_s: float,
    window_s: float,
    *,
    seed: int,
    settle_s: float | None = None,
    grace_s: float = 0.0,
    baseline_s: float = 0.0,
    previous_users: int = 0,
    previous_s: float = 0.0,
) -> Step:
    """Run ``users`` paced users against ``server`` and cut out one step's window.

    The users start at time 0 on an idle server; the window starts ``settle_s`` later
    (one interval unless given), and the first in-flight count is taken ``baseline_s``
    into the window.
    """
    rng = random.Random(seed)
    settle = interval_s if settle_s is None else settle_s
    # A climb: ``previous_users`` of the users ran alone for ``previous_s`` before the rest joined.
    joined_at = previous_s if previous_users else 0.0
    window_start = joined_at + settle
    window_end = window_start + window_s
    baseline_at = window_start + baseline_s
    judged_at = window_end + grace_s
    state = _State(server)
    # (time a user may start next, user, when pacing wanted it): a user is in this heap
    # only while it has no task in flight.
    ready: list[tuple[float, int, float]] = []
    for user in range(users):
        phase = rng.uniform(0.0, interval_s) + (0.0 if user < previous_users else joined_at)
        heapq.heappush(ready, (phase, user, phase))
    owner: dict[int, float] = {}  # id(task) -> its scheduled next start
    in_flight_at_start: int | None = None
    in_flight_at_end: int | None = None
    for _ in range(_MAX_EVENTS):
        t_arrive = ready[0][0] if ready else float("inf")
        t_done = state.next_completion()
        t_next = min(t_arrive, t_done)
        # The in-flight counts are read before any event at or after the boundary.
        if in_flight_at_start is None and t_next >= baseline_at:
            in_flight_at_start = state.in_flight()
        if in_flight_at_end is None and t_next >= window_end:
            in_flight_at_end = state.in_flight()
        if t_next >= judged_at:
            break
        state.advance(t_next)
        if t_done <= t_arrive:
            for task in state.finish_done():
                wanted = owner.pop(id(task))
                heapq.heappush(ready, (max(wanted, state.now), task.user, wanted))
        else:
            _, user, wanted = heapq.heappop(ready)
            work = server.service_s * rng.uniform(1.0 - server.jitter, 1.0 + server.jitter)
            task = _Task(user=user, scheduled=wanted, start=state.now, work=work)
            owner[id(task)] = state.now + interval_s
            state.arrive(task)
    else:  # pragma: no cover - a model that never reaches its end is a bug here
        raise RuntimeError("simulation did not reach the judging time")
    assert in_flight_at_start is not None and in_flight_at_end is not None
    return _step(
        state,
        users,
        interval_s,
        window_start,
        window_end,
        judged_at,
        in_flight_at_start,
        in_flight_at_end,
    )


def _step(
    state: _State,
    users: int,
    interval_s: float,
    window_start: float,
    window_end: float,
    judged_at: float,
    in_flight_at_start: int,
    in_flight_at_end: int,
) -> Step:
    mine = [t for t in state.tasks if window_start <= t.start < window_end]
    done = [t for t in mine if t.end is not None]
    rows = pd.DataFrame(
        {
            "ts_scheduled": [T0 + t.scheduled for t in done],
            "ts_start": [T0 + t.start for t in done],
            "ts_end": [T0 + (t.end or 0.0) for t in done],
            "user": [t.user for t in done],
            "ok": [1 for _ in done],
            "duration_ms": [((t.end or 0.0) - t.start) * 1000.0 for t in done],
        }
    )
    censored = tuple(
        Censored(user=t.user, ts_start=T0 + t.start, age_ms=(judged_at - t.start) * 1000.0)
        for t in mine
        if t.end is None
    )
    return Step(
        tasks=rows,
        window_start=T0 + window_start,
        window_end=T0 + window_end,
        users=users,
        interval_s=interval_s,
        censored=censored,
        in_flight_at_start=in_flight_at_start,
        in_flight_at_end=in_flight_at_end,
    )
