"""The step ramp of capacity discovery: which user level to try next, and why a step fails.

Shared by ``discover batch`` and ``discover tools``. It climbs from ``start_users``
by ``step_users``; the first clearly failing step ends the climb (unless
``keep_going``); then it bisects between the last passing and that failing level
(``refine``), never above the failing level so it never keeps overloading the
target, and finally re-runs the best level once to confirm it. Every decision
uses only what a client observes: the raw records of the step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from capdisc.durations import format_duration
from capdisc.loadgen.plan import Step
from capdisc.metrics.figures import step_figures
from capdisc.metrics.frame import records_frame, tasks
from capdisc.metrics.goodput import goodput, slo_reasons
from capdisc.metrics.trend import latency_growth
from capdisc.schema import Capacity, RequestRecord, Slo, StepResult, StopReason
from capdisc.settings import RampSettings
from capdisc.strategies.client import client_bound_reason

__all__ = ["RampPlanner", "judge_step"]

# A server that keeps up delivers what it is offered; below this share it is saturated.
MIN_THROUGHPUT_SHARE = 0.9
# Saturation shows first as tasks that cannot start on time (constant pacing slips).
MAX_LATE_SHARE = 0.10
MAX_REFINE_STEPS = 4
# A confirming step that fails reopens the search below it, at most this often.
MAX_FAILED_CONFIRMS = 2
# A queue that grows within a step: the later half's median this much above the first's.
MAX_LATENCY_GROWTH = 0.25


def judge_step(result: StepResult, settings: RampSettings, slo: Slo | None = None) -> StepResult:
    """The step with its verdict: passed, failed with every reason, or client-bound.

    A step during which capdisc itself was at its limit (``result.client``, see
    ``strategies.client``) says nothing about the server: it is client-bound, with that
    reason alone, and never a pass or a server failure.
    """
    client = client_bound_reason(result.client)
    if client is not None:
        return result.model_copy(
            update={"passed": False, "client_bound": True, "reasons": [client]}
        )
    reasons: list[str] = []
    if result.requests == 0:
        reasons.append("no request completed in the window")
    if result.failure_rate > settings.max_failure_rate:
        reasons.append(f"failure rate {result.failure_rate:.1f}% > {settings.max_failure_rate:g}%")
    slo_s = settings.slo_p95
    if slo_s is not None and result.p95_ms is not None and result.p95_ms > slo_s * 1000:
        reasons.append(f"p95 {result.p95_ms:.0f} ms > SLO {format_duration(slo_s)}")
    if slo is not None and result.goodput is not None:
        reasons.extend(slo_reasons(result.goodput, slo))
    if result.requests and result.achieved_rps < MIN_THROUGHPUT_SHARE * result.offered_rps:
        reasons.append(
            f"throughput {result.achieved_rps:.2f}/s < 90% of offered {result.offered_rps:.2f}/s"
        )
    growth = result.latency_growth
    if (
        growth is not None
        and result.p50_ms is not None
        and growth > MAX_LATENCY_GROWTH
        and growth * result.p50_ms > max(50.0, 20.0 * settings.interval)
    ):
        reasons.append(f"latency still climbing: +{growth:.0%} within the step (queue building)")
    if result.pacing.late_share > MAX_LATE_SHARE:
        reasons.append(
            f"{result.pacing.late_share:.0%} of tasks started late "
            f"(p50 slip {result.pacing.slip_p50_ms:.0f} ms)"
        )
    return result.model_copy(update={"passed": not reasons, "reasons": reasons})


class RampPlanner:
    """A :class:`~capdisc.loadgen.plan.StepPlanner` for capacity discovery."""

    # Each step is judged on its own rows (held in memory for one step only).
    needs_rows = True

    def __init__(self, settings: RampSettings, slo: Slo | None = None) -> None:
        self.settings = settings
        # Token-level limits (discover stream): each step's goodput is judged on them.
        self.slo = slo
        self.results: list[StepResult] = []
        self.end_reason: StopReason = "slo"
        self._phase: Literal["ramp", "refine", "confirm"] = "ramp"
        self._index = 0
        self._refine_steps = 0
        self._failed_confirms = 0
        # Failing levels whose throughput already guided a probe.
        self._estimated: set[int] = set()
        self._current: Step | None = None
        self._abandoned: set[int] = set()

    # -- StepPlanner ------------------------------------------------------

    def first_step(self) -> Step:
        return self._step(self.settings.start_users, "ramp")

    def next_step(self, finished: Step, rows: Sequence[RequestRecord]) -> Step | None:
        assert finished.window_start is not None and finished.window_end is not None
        figures = self._figures(finished, rows, finished.window_end)
        result = judge_step(figures, self.settings, self.slo)
        self.results.append(result)
        if result.client_bound:
            # Higher levels need even more of the client: nothing more to learn here.
            self.end_reason = "client_bound"
            return self._finish()
        return self._decide(result)

    def abandon_step(
        self, step: Step, rows: Sequence[RequestRecord], stopped_at: float, why: str
    ) -> None:
        figures = self._figures(step, rows, min(stopped_at, step.window_end or stopped_at))
        judged = judge_step(figures, self.settings, self.slo)
        reasons = [f"stopped early: {why}", *judged.reasons]
        self.results.append(judged.model_copy(update={"passed": False, "reasons": reasons}))
        self._abandoned.add(step.index)
        self._current = None

    def _figures(self, step: Step, rows: Sequence[RequestRecord], end: float) -> StepResult:
        assert step.window_start is not None
        frame = records_frame(rows)
        figures = step_figures(
            frame,
            index=step.index,
            users=step.users,
            interval_s=self.settings.interval,
            window_start=step.window_start,
            window_end=end,
            phase="ramp" if step.phase == "hold" else step.phase,
        )
        measured = tasks(frame)
        measured = measured[(measured["ts_end"] >= step.window_start) & (measured["ts_end"] < end)]
        length = end - step.window_start
        good = goodput(measured, self.slo, length) if self.slo is not None else None
        return figures.model_copy(
            update={
                "latency_growth": latency_growth(measured),
                "client": step.client,
                "goodput": good,
            }
        )

    def describe(self) -> str:
        step = self._current
        if step is None:
            return "done"
        return f"step {step.index} ({step.phase}) {step.users} users"

    # -- decisions --------------------------------------------------------

    def _drain_after(self, users: int) -> float:
        """Seconds without load before a lower level, when the last step overloaded the target."""
        if not self.results:
            return 0.0
        last = self.results[-1]
        if last.passed or users >= last.users:
            return 0.0
        worst_ms = last.p99_ms or last.avg_ms or self.settings.interval * 1000
        return worst_ms / 1000 * 1.5 + 1.0

    def _step(self, users: int, phase: Literal["ramp", "refine", "confirm"]) -> Step:
        self._index += 1
        self._phase = phase
        self._current = Step(
            index=self._index,
            users=users,
            hold_s=self.settings.step_duration,
            # Every user's first task starts within one interval of its spawn:
            # the step is measured once all of them are running.
            settle_s=self.settings.interval,
            phase=phase,
            drain_s=self._drain_after(users),
        )
        return self._current

    def _decide(self, result: StepResult) -> Step | None:
        s = self.settings
        if self._phase == "ramp":
            if result.passed or s.keep_going:
                if result.users >= s.max_users:
                    self.end_reason = "max_users" if result.passed else "slo"
                    return self._finish()
                return self._step(min(result.users + s.step_users, s.max_users), "ramp")
        elif self._phase == "confirm" and not result.passed:
            # The level failed when measured again: the search reopens below it.
            self._failed_confirms += 1
            if self._failed_confirms >= MAX_FAILED_CONFIRMS:
                return self._finish()
        return self._refine_or_finish()

    def _latest(self) -> dict[int, StepResult]:
        """The latest complete measurement of every user level."""
        latest: dict[int, StepResult] = {}
        for result in self.results:
            if result.index not in self._abandoned:  # a cut-short step proves nothing
                latest[result.users] = result
        return latest

    def _bracket(self) -> tuple[int, int | None]:
        """The highest passing level below the lowest failing one, and that failing level."""
        latest = self._latest()
        failing = [users for users, r in latest.items() if not r.passed]
        hi = min(failing) if failing else None
        passing = [u for u, r in latest.items() if r.passed and (hi is None or u < hi)]
        return (max(passing) if passing else 0), hi

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
            return self._finish()
        latest = self._latest()
        # A level measured only while climbing (before any overload) is confirmed
        # once more before it is reported; levels measured while refining are not.
        unconfirmed = latest[lo].phase == "ramp"
        can_probe = hi - lo > max(1, math.ceil(0.03 * lo)) and self._refine_steps < MAX_REFINE_STEPS
        if hi not in self._estimated:
            self._estimated.add(hi)
            estimate = self._estimate(latest[hi])
            if estimate is not None and estimate < lo and unconfirmed:
                # The overload says the last pass was too optimistic: measure it again.
                return self._step(lo, "confirm")
            if estimate is not None and can_probe:
                self._refine_steps += 1
                return self._step(min(max(estimate, lo + 1), hi - 1), "refine")
        if can_probe:
            self._refine_steps += 1
            return self._step((lo + hi) // 2, "refine")
        if unconfirmed:
            return self._step(lo, "confirm")
        return self._finish()

    def _finish(self) -> Step | None:
        self._current = None
        return None

    # -- result -----------------------------------------------------------

    def capacity(self) -> Capacity | None:
        """The most users whose latest step passed below every failing level.

        ``at_least`` when that is ``--max-users`` and every step passed. None when a
        step was client-bound: such a run never reports a server capacity.
        """
        if any(result.client_bound for result in self.results):
            return None
        lo, _ = self._bracket()
        if lo == 0:
            return None
        best = self._latest()[lo]
        return Capacity(
            users=best.users,
            rps=best.achieved_rps,
            p50_ms=best.p50_ms,
            p95_ms=best.p95_ms,
            failure_rate=best.failure_rate,
            goodput=best.goodput,
            at_least=self.end_reason == "max_users" and best.users >= self.settings.max_users,
        )
