"""The step ramp of capacity discovery: which user level to try next, and what it found.

Shared by ``discover batch``, ``tools`` and ``stream``. :class:`RampSearch` is the
search policy, on judged step results only: it climbs from ``start_users`` by
``step_users``; the first step that does not pass ends the climb (unless
``keep_going``); then it bisects between the last passing and that level (``refine``),
never above it so it never keeps overloading the target, and re-runs the level it
reports once more when it passed only once, to ``confirm`` it (measured twice). A step
is measured for a whole number of pacing intervals; an inconclusive step
(:mod:`.verdict`) is extended, at most :data:`MAX_EXTENSIONS` times, and judged on all of
its measured time. :class:`RampPlanner` is the engine's planner: it measures each step
(:mod:`capdisc.metrics.steps`), judges it and hands the result to the search. Every
decision uses only what a client observes: the raw records of the step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from capdisc.durations import format_duration
from capdisc.loadgen.contract import Step
from capdisc.metrics.goodput import min_requests
from capdisc.metrics.steps import OpenStep, StepWindow, measure_step, open_step
from capdisc.metrics.trend import Evidence, fails_however_long
from capdisc.records import RequestRecord
from capdisc.schema import Capacity, Slo, StepResult, StopReason, Tier
from capdisc.settings import RampSettings
from capdisc.strategies.preparation import unmet_interval
from capdisc.strategies.verdict import judge_step

__all__ = ["MAX_EXTENSIONS", "RampPlanner", "RampSearch", "judge_step", "whole_intervals"]

# An inconclusive step runs on for another step length at most this many times.
MAX_EXTENSIONS = 2
MAX_REFINE_STEPS = 5
# Refine and confirm steps after the climb, together.
MAX_SEARCH_STEPS = 9
# After a step that did not pass, at least this pause (then until nothing is in flight).
MIN_DRAIN_S = 1.0
# A median latency within this factor of the first passing step's: the server has not
# slowed with load yet (far from its knee), and a new level is measured after one latency.
FLAT_LATENCY = 1.2


def whole_intervals(step_s: float, interval_s: float) -> float:
    """``step_s`` rounded up to a whole number of pacing intervals.

    Each user then starts exactly one task per interval of the window, so the tasks a
    healthy step offers are exact, not off by one per user.
    """
    return math.ceil(step_s / interval_s - 1e-9) * interval_s


class RampSearch:
    """The search policy of capacity discovery, on judged step results only.

    It never sees a request: each step's judged :class:`~capdisc.schema.StepResult` is
    handed to :meth:`judged`, which answers the next step (or an extension of the same
    level, or the end). Testable with made-up results.
    """

    def __init__(self, settings: RampSettings, min_tasks: int = 0, tiers: int = 0) -> None:
        self.settings = settings
        self.hold_s = whole_intervals(settings.step_duration, settings.interval)
        # The fewest tasks a window holds (a percentile's confidence bound needs them): a
        # level with few users is held for more intervals.
        self.min_tasks = min_tasks
        # SLO tiers (tightest first; the last is the step's own verdict): each tier's
        # capacity is confirmed too, within the search budget.
        self.tiers = tiers
        self.results: list[StepResult] = []
        self.end_reason: StopReason = "slo"
        self._phase: Literal["ramp", "refine", "confirm"] = "ramp"
        self._index = 0
        self._refine_steps = 0
        self._search_steps = 0
        # Failing levels whose throughput already guided a probe.
        self._estimated: set[int] = set()
        self._current: Step | None = None
        self._abandoned: set[int] = set()

    def first_step(self) -> Step:
        return self._step(self.settings.start_users, "ramp")

    def judged(self, result: StepResult, extensions: int) -> Step | Literal["extend"] | None:
        """Record ``result`` (measured over ``extensions`` extensions so far); what comes next.

        ``"extend"``: the same level runs on (:meth:`extension` gives the step).
        """
        if result.client_bound:
            self.results.append(result)
            # Higher levels need even more of the client: nothing more to learn here.
            self.end_reason = "client_bound"
            return self._finish()
        if result.verdict == "inconclusive":
            if extensions < MAX_EXTENSIONS:
                note = f"inconclusive after {self._measured(result)}: extended by {self._hold()}"
                self.results.append(result.model_copy(update={"reasons": [note, *result.reasons]}))
                return "extend"
            note = (
                f"still inconclusive after {MAX_EXTENSIONS} extensions "
                f"({self._measured(result)}): not counted as a pass"
            )
            result = result.model_copy(update={"reasons": [note, *result.reasons]})
        self.results.append(result)
        return self._decide(result)

    def stopped(self, result: StepResult, reason: StopReason | None = None) -> None:
        """The run stopped during the step measured as ``result`` (its reasons say why).

        A step cut short proves nothing, but for one stopped by the failure threshold
        with failures of its own: the server failed at that level, which bounds the
        capacity from above (a failing step for the bracket).
        """
        self.results.append(result)
        if not (reason == "failure_threshold" and result.failures > 0):
            self._abandoned.add(result.index)
        self._current = None

    def describe(self, extensions: int) -> str:
        step = self._current
        if step is None:
            return "done"
        extended = f", extended x{extensions}" if extensions else ""
        return f"step {step.index} ({step.phase}{extended}) {step.users} users"

    def _measured(self, result: StepResult) -> str:
        return format_duration(result.window_end - result.window_start)

    def _hold(self) -> str:
        return format_duration(self.hold_s)

    # -- decisions --------------------------------------------------------

    def _drain_after(self, users: int) -> float:
        """The least pause without load before a lower level, after a step that did not pass.

        The engine holds the pause until none of our requests is in flight (the target's
        queue, made of our requests, has drained), so a short least pause suffices.
        """
        if not self.results:
            return 0.0
        last = self.results[-1]
        if last.passed or users >= last.users:
            return 0.0
        return MIN_DRAIN_S

    def _settle_before(self, drain_s: float) -> float:
        """How long a new level runs before it is measured.

        Each new user starts its first task at a random phase within an interval, so
        from the spawn new tasks arrive at the level's rate, and what is in flight
        reaches the level within one latency: the p95 of the latest passing step, at
        most an interval. That is the settle after a drain (an empty target: a level
        past capacity grows its queue from the start, which the window then sees
        whole) and on a climb while the server has not slowed with load (the latest
        passing step's median within :data:`FLAT_LATENCY` of the first's). A climb near
        the knee (latency growing with load, as a batching server's or a queue's close
        to capacity) carries the level below's state into a level close to critical,
        whose slow drift a window sees more of the earlier it opens: there, and for
        the first step, one whole interval. The window holds exactly one task per user
        per interval either way; the backlog's baseline waits until every user is in
        its cycle (``baseline_s``: one interval into the window, whole intervals
        before its end).
        """
        interval = self.settings.interval
        passing = [
            r for r in self.results if r.passed and r.p50_ms is not None and r.p95_ms is not None
        ]
        if not passing:
            return interval
        first, latest = passing[0], passing[-1]
        assert first.p50_ms is not None and latest.p50_ms is not None
        assert latest.p95_ms is not None
        if drain_s == 0 and latest.p50_ms > FLAT_LATENCY * first.p50_ms:
            return interval
        return min(interval, latest.p95_ms / 1000.0)

    def _step(self, users: int, phase: Literal["ramp", "refine", "confirm"]) -> Step:
        self._index += 1
        self._phase = phase
        if phase != "ramp":
            self._search_steps += 1
        drain_s = self._drain_after(users)
        settle_s = self._settle_before(drain_s)
        self._current = Step(
            index=self._index,
            users=users,
            hold_s=self.hold_for(users),
            settle_s=settle_s,
            # Counted where every user is in its cycle and whole intervals before the
            # window's end: at its start after a whole interval of settling, else one
            # interval into it.
            baseline_s=0.0 if settle_s >= self.settings.interval else self.settings.interval,
            phase=phase,
            drain_s=drain_s,
        )
        return self._current

    def hold_for(self, users: int) -> float:
        """A level's window: the step length, or enough whole intervals for ``min_tasks``."""
        interval = self.settings.interval
        return max(self.hold_s, math.ceil(self.min_tasks / max(users, 1)) * interval)

    def extension(self, finished: Step) -> Step:
        """The same level measured on, at once (no settling: its users are running)."""
        self._index += 1
        phase: Literal["ramp", "refine", "confirm"] = (
            "ramp" if finished.phase == "hold" else finished.phase
        )
        self._current = Step(
            index=self._index, users=finished.users, hold_s=self.hold_s, settle_s=0.0, phase=phase
        )
        return self._current

    def _decide(self, result: StepResult) -> Step | None:
        s = self.settings
        if self._phase == "ramp" and (result.passed or s.keep_going):
            if result.users >= s.max_users:
                self.end_reason = "max_users" if result.passed else "slo"
                return self._confirm_tiers()
            return self._step(min(result.users + s.step_users, s.max_users), "ramp")
        # A confirmation that failed reopens the search below its level: the bracket
        # below takes it into account, and the search budget bounds it.
        return self._refine_or_finish()

    def _latest(self) -> dict[int, StepResult]:
        """The latest complete measurement of every user level."""
        latest: dict[int, StepResult] = {}
        for result in self.results:
            if result.index not in self._abandoned:  # a cut-short step proves nothing
                latest[result.users] = result
        return latest

    @staticmethod
    def _passes(result: StepResult, tier: int | None) -> bool:
        """The step passed (``tier`` None) or passed SLO tier ``tier``."""
        if tier is None or tier >= len(result.tiers_passed):
            return result.passed
        return result.tiers_passed[tier]

    def _bracket(self, tier: int | None = None) -> tuple[int, int | None]:
        """The highest passing level below the lowest one that did not pass, and that level."""
        latest = self._latest()
        failing = [users for users, r in latest.items() if not self._passes(r, tier)]
        hi = min(failing) if failing else None
        passing = [u for u, r in latest.items() if self._passes(r, tier) and (hi is None or u < hi)]
        return (max(passing) if passing else 0), hi

    def _confirmed(self, users: int, tier: int | None = None) -> bool:
        """A level is confirmed once it passed twice (the final level is measured once more)."""
        passes = [
            r
            for r in self.results
            if r.users == users and self._passes(r, tier) and r.index not in self._abandoned
        ]
        return len(passes) >= 2

    def _confirm_tiers(self) -> Step | None:
        """Once the search is done: the level of a tighter SLO tier that passed it only once
        is measured once more (within the search budget), else the end."""
        if self.settings.refine and not any(r.client_bound for r in self.results):
            for tier in range(self.tiers - 1):
                lo, _hi = self._bracket(tier)
                if lo and not self._confirmed(lo, tier) and self._search_steps < MAX_SEARCH_STEPS:
                    return self._step(lo, "confirm")
        return self._finish()

    def tier_capacity(self, tier: int) -> tuple[StepResult | None, int | None, bool]:
        """Tier ``tier``'s capacity: its level's latest result (None: no level passed it), the
        lowest level that did not pass it, and whether the level passed it twice."""
        lo, hi = self._bracket(tier)
        if lo == 0 or any(r.client_bound for r in self.results):
            return None, hi, False
        return self._latest()[lo], hi, self._confirmed(lo, tier)

    def _estimate(self, failing: StepResult) -> int | None:
        """U* as a saturated step shows it: achieved req/s times the interval.

        A server past its capacity delivers that capacity whatever it is offered,
        so only a step whose throughput fell short of its offered load tells.
        """
        if not failing.requests or failing.achieved_rps >= failing.offered_rps:
            return None
        return math.floor(failing.achieved_rps * self.settings.interval)

    def _refine_or_finish(self) -> Step | None:
        lo, hi = self._bracket()
        if hi is None or not self.settings.refine or lo == 0:
            return self._confirm_tiers()
        if self._search_steps >= MAX_SEARCH_STEPS:
            return self._finish()
        latest = self._latest()
        unconfirmed = not self._confirmed(lo)
        can_probe = hi - lo > max(1, math.ceil(0.03 * lo)) and self._refine_steps < MAX_REFINE_STEPS
        if hi not in self._estimated:
            self._estimated.add(hi)
            estimate = self._estimate(latest[hi])
            slack = max(1, math.ceil(0.03 * lo))
            if estimate is not None and estimate < lo - slack and unconfirmed:
                # The overload says the last pass was clearly too optimistic: measure it
                # again. Within the estimate's noise of it, the level just above decides.
                return self._step(lo, "confirm")
            if estimate is not None and can_probe:
                self._refine_steps += 1
                return self._step(min(max(estimate, lo + 1), hi - 1), "refine")
        if can_probe:
            self._refine_steps += 1
            return self._step((lo + hi) // 2, "refine")
        if unconfirmed:
            return self._step(lo, "confirm")
        return self._confirm_tiers()

    def _finish(self) -> Step | None:
        self._current = None
        return None

    # -- result -----------------------------------------------------------

    def pacing_unmet(self) -> str | None:
        """One line when the lowest level failed with answers that already take the interval.

        Constant pacing needs latency within the interval: a longer answer makes its
        user's next task late, and the lateness and throughput tests then fail every
        level, however idle the server. It is told from an overload by the latency
        trend: answers that are slow from the start do not climb, a queue does. None when
        a level passed, or the lowest one failed for another reason.
        """
        if any(r.passed or r.client_bound for r in self.results) or not self.results:
            return None
        lowest = min(self.results, key=lambda r: r.users)
        p95_ms = lowest.p95_ms
        if lowest.verdict != "fail" or p95_ms is None or lowest.index in self._abandoned:
            return None
        if lowest.tests is not None and lowest.tests.trend_verdict == "fail":
            return None
        interval = self.settings.interval
        if p95_ms < 1000.0 * interval:
            return None
        return unmet_interval(
            interval, p95_ms / 1000.0, f"at the lowest load ({lowest.users} users) p95 latency"
        )

    def capacity(self) -> Capacity | None:
        """The most users whose latest step passed below every level that did not pass.

        With the interval: the lowest level that failed (or stayed inconclusive, or was
        stopped by the failure threshold failing) beside it, ``confirmed`` when the level
        passed twice, ``at_least`` when no level failed. None when a step was client-bound: such a run never reports a server
        capacity.
        """
        if any(result.client_bound for result in self.results):
            return None
        lo, hi = self._bracket()
        if lo == 0:
            return None
        latest = self._latest()
        best = latest[lo]
        above = latest[hi] if hi is not None else None
        return Capacity(
            users=best.users,
            rps=best.achieved_rps,
            p50_ms=best.p50_ms,
            p95_ms=best.p95_ms,
            n=best.requests - best.failures,
            failure_rate=best.failure_rate,
            goodput=best.goodput,
            at_least=hi is None,
            confirmed=self._confirmed(lo),
            fail_users=hi,
            fail_rps=above.offered_rps if above is not None else None,
            fail_verdict=(
                None
                if above is None
                else "inconclusive"
                if above.verdict == "inconclusive"
                else "fail"
            ),
        )


class RampPlanner:
    """A :class:`~capdisc.loadgen.contract.StepPlanner` for capacity discovery.

    Measures each step (:mod:`capdisc.metrics.steps`), judges it (:mod:`.verdict`) and
    hands the judged result to the search policy (:class:`RampSearch`).
    """

    # Each step is judged on its own rows (held in memory for one step only).
    needs_rows = True

    def __init__(
        self, settings: RampSettings, slo: Slo | None = None, tiers: Sequence[Slo] = ()
    ) -> None:
        self.settings = settings
        # Token-level limits (discover stream): each step's goodput is judged on them;
        # with SLO tiers (tightest first), the loosest, and each tier is measured too.
        self.slo = tiers[-1] if tiers else slo
        self.slo_tiers = list(tiers) if len(tiers) > 1 else []
        slo = self.slo
        limited = slo is not None and any(
            limit is not None for limit in (slo.ttft_ms, slo.tpot_ms, slo.e2e_ms)
        )
        # A window holds at least the requests that can bound the SLO's percentile.
        min_tasks = min_requests(slo.percentile) if slo is not None and limited else 0
        self.search = RampSearch(settings, min_tasks, len(self.slo_tiers))
        self._open: OpenStep | None = None

    @property
    def results(self) -> list[StepResult]:
        return self.search.results

    @property
    def end_reason(self) -> StopReason:
        return self.search.end_reason

    @property
    def hold_s(self) -> float:
        return self.search.hold_s

    def capacity(self) -> Capacity | None:
        return self.search.capacity()

    # -- StepPlanner ------------------------------------------------------

    def first_step(self) -> Step:
        return self.search.first_step()

    def next_step(self, finished: Step, rows: Sequence[RequestRecord]) -> Step | None:
        assert finished.window_start is not None and finished.window_end is not None
        result = self._judge(finished, rows, finished.window_end, finished.censored_ms)
        extensions = self._open.extensions if self._open is not None else 0
        decision = self.search.judged(result, extensions)
        if decision == "extend":
            self._open = open_step(_window(finished), rows, self._open)
            return self.search.extension(finished)
        self._open = None
        return decision

    def abandon_step(
        self, step: Step, rows: Sequence[RequestRecord], stopped_at: float, why: str
    ) -> None:
        end = min(stopped_at, step.window_end or stopped_at)
        judged = self._judge(step, rows, end, [])
        reasons = [f"stopped early: {why}", *judged.reasons]
        verdict = "client_bound" if judged.client_bound else "fail"
        self.search.stopped(
            judged.model_copy(update={"passed": False, "verdict": verdict, "reasons": reasons}),
            step.stopped_by,
        )
        self._open = None

    def describe(self) -> str:
        return self.search.describe(self._open.extensions if self._open is not None else 0)

    def decided_early(self, step: Step, rows: Sequence[RequestRecord], remaining_s: float) -> bool:
        """True when the step fails whatever its tasks still in flight turn out to take.

        The engine asks while it awaits them (``step.censored_ms`` their ages now, at
        most ``remaining_s`` more to wait): a step that fails on its throughput deficit
        (starts only) or on its backlog even with every such task lasting the whole
        wait (the backlog's noise at its largest) is closed at once, its tasks censored.
        A slow-failing server then costs no wait; its requests still get their rows.
        """
        if not step.censored_ms or step.window_end is None:
            return False
        result, evidence = self._measure(step, rows, step.window_end, step.censored_ms)
        if judge_step(result, self.settings, self.slo, evidence).verdict != "fail":
            return False
        return fails_however_long(
            evidence,
            censored=len(step.censored_ms),
            longer_by_s=remaining_s,
            window_s=result.window_end - result.window_start,
        )

    # -- measurement ------------------------------------------------------

    def _judge(
        self, step: Step, rows: Sequence[RequestRecord], end: float, censored_ms: Sequence[float]
    ) -> StepResult:
        """The step's figures and verdict over its whole measured time (extensions too)."""
        result, evidence = self._measure(step, rows, end, censored_ms)
        judged = judge_step(result, self.settings, self.slo, evidence)
        if not judged.tiers:
            return judged
        # A tier passes where the step passes (on the loosest) and its own SLO passes.
        passed = [judged.passed and tier.verdict == "pass" for tier in judged.tiers]
        return judged.model_copy(update={"tiers_passed": passed})

    def _measure(
        self, step: Step, rows: Sequence[RequestRecord], end: float, censored_ms: Sequence[float]
    ) -> tuple[StepResult, Evidence]:
        return measure_step(
            _window(step),
            rows,
            end,
            censored_ms,
            interval_s=self.settings.interval,
            slo=self.slo,
            opened=self._open,
            tiers=self.slo_tiers,
        )

    def tiers(self) -> list[Tier]:
        """One capacity per SLO tier, tightest first (empty without tiers)."""
        found: list[Tier] = []
        for index, limits in enumerate(self.slo_tiers):
            best, fail_users, confirmed = self.search.tier_capacity(index)
            found.append(
                Tier(
                    limits=limits,
                    users=best.users if best is not None else None,
                    rps=best.achieved_rps if best is not None else None,
                    confirmed=confirmed if best is not None else None,
                    at_least=best is not None and fail_users is None,
                    fail_users=fail_users,
                )
            )
        return found


def _window(step: Step) -> StepWindow:
    assert step.window_start is not None
    return StepWindow(
        index=step.index,
        users=step.users,
        phase="ramp" if step.phase == "hold" else step.phase,
        window_start=step.window_start,
        baseline_at=step.window_start + step.baseline_s,
        in_flight_at_start=step.in_flight_at_start,
        in_flight_at_end=step.in_flight_at_end,
        client=step.client,
        server=step.server,
    )
