"""The ramp planner's decisions, on records of a synthetic server with a known U*.

A server with capacity U* (in users at the pacing interval) keeps up below it.
Above it, throughput stays at U* / P and its queue grows: every second the wait
grows by (U / U* - 1) seconds, and once a task takes longer than the interval the
next one starts late, as a saturated server behaves under constant pacing. The
planner must land within 10% of U*.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import pytest

from capdisc.loadgen.contract import Step
from capdisc.schema import ClientLoad, StepResult
from capdisc.settings import RampSettings
from capdisc.strategies.ramp import RampPlanner, RampSearch, whole_intervals
from tests.summaries import discovery

INTERVAL = 2.0
SERVICE_MS = 400.0


def synthetic_rows(users: int, start: float, end: float, u_star: float, *, overloaded: bool):
    """Task rows a server of capacity u_star would produce, for tasks started in the window
    (and in the interval before it: those end in the window).

    Each user starts a task every interval at its own phase (or at once when the last
    one overran). Past capacity a FIFO queue grows: a task started t seconds into the
    load waits (users / u_star - 1) x t, so completions run at u_star / interval.
    """
    growth = users / u_star - 1 if overloaded else 0.0
    rows = []
    for user in range(1, users + 1):
        scheduled = start - INTERVAL + user / users * INTERVAL
        free_at = float("-inf")
        while scheduled < end:
            ts_start = max(scheduled, free_at)
            if ts_start >= end:
                break
            duration = SERVICE_MS + 1000 * growth * (ts_start - start + INTERVAL)
            free_at = ts_start + duration / 1000
            if ts_start >= start - INTERVAL:  # the tasks before the window end in it
                row = (scheduled, ts_start, free_at, user, 0, "v", "batch", 200, 1)
                rows.append((*row, duration, "", "", "", ""))
            scheduled += INTERVAL
    return rows


def run_steps(planner: RampPlanner, rows_of: Callable[[Step], list], limit: int) -> list[Step]:
    """Run the planner on the rows ``rows_of`` gives each step (its window set), at most
    ``limit`` steps; returns every step."""
    seen: list[Step] = []
    step: Step | None = planner.first_step()
    clock = 1_000_000.0
    while step is not None and len(seen) < limit:
        seen.append(step)
        step.window_start = clock + step.settle_s
        step.window_end = step.window_start + step.hold_s
        rows = rows_of(step)
        clock = step.window_end
        step = planner.next_step(step, rows)
    return seen


def drive(planner: RampPlanner, u_star: float, false_pass: set[int] = frozenset()) -> list[int]:
    """Run the planner to its end; returns the users of every step."""
    seen: list[int] = []
    step: Step | None = planner.first_step()
    clock = 1_000_000.0
    while step is not None and len(seen) < 50:
        seen.append(step.users)
        step.window_start = clock + step.settle_s
        step.window_end = step.window_start + step.hold_s
        overloaded = step.users > u_star and not (
            step.users in false_pass and seen.count(step.users) == 1
        )
        rows = synthetic_rows(
            step.users, step.window_start, step.window_end, u_star, overloaded=overloaded
        )
        clock = step.window_end
        step = planner.next_step(step, rows)
    return seen


def settings(**overrides: object) -> RampSettings:
    base = dict(
        start_users=4,
        step_users=4,
        max_users=60,
        step_duration=8.0,
        interval=INTERVAL,
        max_failure_rate=1.0,
        slo_p95=None,
    )
    base.update(overrides)
    return RampSettings(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("u_star", [9.5, 18.2, 20.0, 26.7, 41.0])
def test_capacity_lands_within_ten_percent(u_star: float) -> None:
    """Ramp, refine and confirm find U* within 10%, without going above the failing level."""
    planner = RampPlanner(settings())
    steps = drive(planner, u_star)
    capacity = planner.capacity()
    assert capacity is not None
    assert abs(capacity.users - u_star) <= 0.1 * u_star, steps
    first_fail = next(r.users for r in planner.results if not r.passed)
    assert max(steps) == first_fail  # refinement never overloads beyond the first failure
    # The reported level was measured after the overload (refining or confirming), not
    # only while climbing.
    last_at_capacity = [r for r in planner.results if r.users == capacity.users][-1]
    assert last_at_capacity.passed and last_at_capacity.phase in ("refine", "confirm")


def test_the_overload_throughput_points_the_first_probe() -> None:
    """After the first failing step, the first probe goes where its throughput points."""
    planner = RampPlanner(settings())
    steps = drive(planner, 26.7)
    ramp_end = steps.index(28)
    assert steps[ramp_end + 1] == 26  # floor(13.35 req/s x 2 s)


def test_a_failed_confirmation_reopens_the_search_below() -> None:
    """A level that passed once but fails its confirmation is searched below, not kept."""
    planner = RampPlanner(settings())
    steps = drive(planner, 26.7, false_pass={28})
    capacity = planner.capacity()
    assert capacity is not None and capacity.users < 28
    assert abs(capacity.users - 26.7) <= 0.1 * 26.7, steps


def test_max_users_reached_is_at_least() -> None:
    """Every step passing up to --max-users: capacity is at least max users."""
    planner = RampPlanner(settings(max_users=12))
    drive(planner, 100.0)
    capacity = planner.capacity()
    assert capacity is not None and capacity.users == 12 and capacity.at_least
    assert planner.end_reason == "max_users"


def test_no_passing_step_means_no_capacity() -> None:
    """A target overloaded from the first step has no capacity, and the ramp stops there."""
    planner = RampPlanner(settings(start_users=10))
    assert drive(planner, 5.0) == [10]
    assert planner.capacity() is None


def test_no_refine_stops_at_the_first_failure() -> None:
    """--no-refine: the last passing ramp step is the capacity."""
    planner = RampPlanner(settings(refine=False))
    steps = drive(planner, 18.2)
    assert steps == [4, 8, 12, 16, 20]
    assert planner.capacity() is not None and planner.capacity().users == 16  # type: ignore[union-attr]


def test_an_estimate_at_the_last_pass_tries_just_above_it() -> None:
    """When the overload points at the last passing level, one probe above it closes the bracket."""
    planner = RampPlanner(settings())
    steps = drive(planner, 20.0)
    assert steps == [4, 8, 12, 16, 20, 24, 21, 20]
    assert planner.capacity() is not None and planner.capacity().users == 20  # type: ignore[union-attr]


def client_load(cpu: float) -> ClientLoad:
    return ClientLoad(
        processes=1,
        seconds=8,
        busiest="capdisc",
        cpu_p50=cpu,
        cpu_mean=cpu,
        cpu_max=cpu,
        lagging="capdisc",
        lag_p95_ms=1.0,
        lag_max_ms=2.0,
    )


def test_a_client_bound_step_ends_the_ramp_and_no_capacity_is_reported() -> None:
    """capdisc at its own limit is no server verdict: the run stops and reports no capacity.

    The server here has room for 100 users; capdisc's CPU follows the users and passes
    90% of a core at 16 of them.
    """
    planner = RampPlanner(settings())
    step: Step | None = planner.first_step()
    clock = 1_000_000.0
    seen: list[int] = []
    while step is not None:
        seen.append(step.users)
        step.window_start = clock + step.settle_s
        step.window_end = clock = step.window_start + step.hold_s
        step.client = client_load(step.users / 16 * 0.92)
        rows = synthetic_rows(step.users, step.window_start, step.window_end, 100, overloaded=False)
        step = planner.next_step(step, rows)
    assert seen == [4, 8, 12, 16]
    *passed, bound = planner.results
    assert all(r.passed and not r.client_bound and r.client is not None for r in passed)
    assert bound.client_bound and not bound.passed
    assert bound.reasons == [
        "client-bound: capdisc used 92% of a CPU core (median of 8 s; limit 90%); "
        "capdisc, not the server, was the limit"
    ]
    assert planner.end_reason == "client_bound"
    assert planner.capacity() is None  # not "at least 12": the server was never measured


def test_a_client_bound_step_that_was_cut_short_still_voids_the_capacity() -> None:
    planner = RampPlanner(settings())
    first = planner.first_step()
    first.window_start, first.window_end = 0.0, 8.0
    first.client = client_load(0.1)
    second = planner.next_step(first, synthetic_rows(4, 0.0, 8.0, 100, overloaded=False))
    assert second is not None and planner.capacity() is not None
    second.window_start, second.window_end = 10.0, 18.0
    second.client = client_load(0.99)
    rows = synthetic_rows(8, 10.0, 15.0, 100, overloaded=False)
    planner.abandon_step(second, rows, 15.0, "SIGINT received")
    assert planner.results[-1].client_bound and planner.capacity() is None


def drive_scripted(planner: RampPlanner, passes: dict[int, list[bool]]) -> list[int]:
    """Run the planner where level u passes or fails as ``passes[u]`` says, in turn
    (a level measured more often than scripted repeats its last outcome)."""
    seen: list[int] = []
    step: Step | None = planner.first_step()
    clock = 1_000_000.0
    while step is not None and len(seen) < 50:
        seen.append(step.users)
        outcomes = passes.get(step.users, [step.users < 25])
        ok = outcomes[min(seen.count(step.users) - 1, len(outcomes) - 1)]
        step.window_start = clock + step.settle_s
        step.window_end = step.window_start + step.hold_s
        rows = synthetic_rows(
            step.users,
            step.window_start,
            step.window_end,
            1.0 if not ok else 1e9,
            overloaded=not ok,
        )
        clock = step.window_end
        step = planner.next_step(step, rows)
    return seen


def test_a_level_seen_once_while_climbing_is_never_reported_as_confirmed() -> None:
    """10 and 20 and 30 pass while climbing, 40 fails, then the
    confirmations of 30 and 20 fail. 10 was never measured again: the search goes on
    below 20 and reports a level confirmed after the overload, with the interval."""
    planner = RampPlanner(settings(start_users=10, step_users=10))
    steps = drive_scripted(planner, {10: [True], 20: [True, False], 30: [True, False], 40: [False]})
    assert steps[:4] == [10, 20, 30, 40]
    capacity = planner.capacity()
    assert capacity is not None and capacity.confirmed, steps
    assert 10 <= capacity.users < 20 and capacity.fail_users == 20
    assert capacity.fail_verdict == "fail" and not capacity.at_least
    assert capacity.fail_rps == pytest.approx(20 / INTERVAL)
    measured = [r for r in planner.results if r.users == capacity.users and r.passed]
    assert any(r.phase != "ramp" for r in measured) or len(measured) >= 2


def test_a_stop_before_any_failure_is_at_least() -> None:
    """Ctrl+C during the third step, every complete step passed: at least the second."""
    planner = RampPlanner(settings())
    first = planner.first_step()
    first.window_start, first.window_end = 0.0, first.hold_s
    second = planner.next_step(first, synthetic_rows(4, 0.0, 8.0, 100, overloaded=False))
    assert second is not None
    second.window_start, second.window_end = 10.0, 18.0
    third = planner.next_step(second, synthetic_rows(8, 10.0, 18.0, 100, overloaded=False))
    assert third is not None
    third.window_start, third.window_end = 20.0, 28.0
    planner.abandon_step(
        third, synthetic_rows(12, 20.0, 24.0, 100, overloaded=False), 24.0, "SIGINT"
    )
    capacity = planner.capacity()
    assert capacity is not None and capacity.users == 8 and capacity.at_least
    assert capacity.fail_users is None and not capacity.confirmed


@pytest.mark.parametrize(("step_s", "whole"), [(8.0, 8.0), (7.0, 8.0), (8.5, 10.0), (0.5, 2.0)])
def test_steps_last_a_whole_number_of_intervals(step_s: float, whole: float) -> None:
    assert whole_intervals(step_s, INTERVAL) == whole
    planner = RampPlanner(settings(step_duration=step_s))
    assert planner.first_step().hold_s == whole


def test_an_inconclusive_step_is_extended_then_judged_on_all_its_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Inconclusive: the same level runs on (no settling), judged over both windows;
    still inconclusive after the last extension, it does not count as a pass."""
    from capdisc.strategies import ramp

    judged: list[tuple[int, float, float]] = []

    def undecided(result, settings, slo=None, evidence=None):  # type: ignore[no-untyped-def]
        judged.append((result.users, result.window_start, result.window_end))
        verdict = "inconclusive" if result.users == 12 else "pass"
        return result.model_copy(
            update={"verdict": verdict, "passed": verdict == "pass", "reasons": ["trend ?"]}
        )

    monkeypatch.setattr(ramp, "judge_step", undecided)
    planner = RampPlanner(settings())
    steps = drive(planner, 100.0)
    assert steps[:5] == [4, 8, 12, 12, 12]
    twelve = [r for r in planner.results if r.users == 12]
    assert [r.extensions for r in twelve] == [0, 1, 2]
    assert twelve[0].reasons[0] == "inconclusive after 8s: extended by 8s"
    assert twelve[2].reasons[0].startswith("still inconclusive after 2 extensions (")
    # Judged from the first window's start to the last one's end.
    starts = {start for users, start, _ in judged if users == 12}
    assert len(starts) == 1
    assert judged[4][2] - judged[4][1] > 2 * 8.0
    capacity = planner.capacity()
    assert capacity is not None and capacity.users == 11 and capacity.fail_users == 12
    assert capacity.fail_verdict == "inconclusive"


def test_a_level_is_measured_one_latency_after_its_spawn() -> None:
    """The window opens one latency (the latest passing step's p95) after the spawn,
    the backlog's baseline when every user is in its cycle (one interval into the
    window); the first step, no latency known yet, waits one interval."""
    planner = RampPlanner(settings())

    def rows_of(step: Step) -> list:
        assert step.window_start is not None and step.window_end is not None
        return synthetic_rows(
            step.users, step.window_start, step.window_end, 10.0, overloaded=step.users > 10
        )

    seen = run_steps(planner, rows_of, 20)
    first, climb = seen[0], seen[1]
    assert (first.settle_s, first.baseline_s) == (INTERVAL, 0.0)
    p95_s = planner.results[0].p95_ms / 1000
    assert climb.drain_s == 0 and climb.settle_s == pytest.approx(p95_s)
    assert 0 < climb.settle_s < INTERVAL
    assert climb.baseline_s == INTERVAL  # whole intervals before the window's end
    drained = [s for s in seen if s.drain_s > 0]
    assert drained and all(0 < s.settle_s < INTERVAL for s in drained)
    assert all(s.baseline_s == (0.0 if s.settle_s == INTERVAL else INTERVAL) for s in seen)


def test_near_the_knee_a_level_is_measured_one_interval_after_its_spawn() -> None:
    """A server whose latency grows with load (x1.5 at 4 users, x2 at 8): once the
    median is 20% above the first step's, a climb settles a whole interval; a level
    after a drain (the target empty) still one latency."""
    planner = RampPlanner(settings())

    def rows_of(step: Step) -> list:
        assert step.window_start is not None and step.window_end is not None
        slowdown = 1 + step.users / 8
        return [
            (*r[:2], r[1] + (r[2] - r[1]) * slowdown, *r[3:9], r[9] * slowdown, *r[10:])
            for r in synthetic_rows(
                step.users, step.window_start, step.window_end, 14.0, overloaded=step.users > 14
            )
        ]

    seen = run_steps(planner, rows_of, 8)
    assert [s.users for s in seen][:4] == [4, 8, 12, 16]
    assert seen[0].settle_s == INTERVAL  # nothing known yet
    assert seen[1].settle_s < INTERVAL  # 4 users' latency is the first: flat
    assert [s.settle_s for s in seen[2:4]] == [INTERVAL, INTERVAL]  # x2/x1.5 > 1.2
    assert all(s.baseline_s == 0.0 for s in seen[2:4])
    drained = [s for s in seen if s.drain_s > 0]
    assert drained and all(0 < s.settle_s < INTERVAL for s in drained)


def overloaded_step(users: int, u_star: float, *, at_end: int) -> tuple[Step, list]:
    step = Step(index=1, users=users, hold_s=8.0, settle_s=0.0)
    step.window_start, step.window_end = 1_000.0, 1_008.0
    rows = synthetic_rows(users, 1_000.0, 1_008.0, u_star, overloaded=users > u_star)
    done = [r for r in rows if r[2] <= 1_008.5]
    step.censored_ms = [round((1_008.5 - r[1]) * 1000, 3) for r in rows if r[2] > 1_008.5]
    step.in_flight_at_start, step.in_flight_at_end = 2, at_end
    return step, done


def test_a_step_whose_backlog_fails_however_long_its_tasks_take_is_decided_early() -> None:
    planner = RampPlanner(settings(start_users=24))
    step, rows = overloaded_step(24, 22.0, at_end=20)  # every task started on time
    assert step.censored_ms
    assert planner.decided_early(step, rows, remaining_s=5.0)
    # Were every task in flight to last a whole hour more, the backlog's noise could
    # swallow its growth: then the step is awaited.
    assert not planner.decided_early(step, rows, remaining_s=3600.0)
    # No growth beyond noise: awaited.
    calm, rows = overloaded_step(24, 22.0, at_end=3)
    assert not planner.decided_early(calm, rows, remaining_s=5.0)
    # Tasks started late (a deficit of starts) stay late, however long the rest take.
    late, rows = overloaded_step(24, 16.0, at_end=3)
    assert planner.decided_early(late, rows, remaining_s=3600.0)
    # Nothing in flight: nothing to await, nothing to decide.
    healthy, rows = overloaded_step(8, 16.0, at_end=20)
    healthy.censored_ms = []
    assert not planner.decided_early(healthy, rows, remaining_s=5.0)


def made_up(step: Step, passed: bool, *, verdict: str | None = None) -> StepResult:
    """A judged step result with only what the search reads: no request behind it."""
    return StepResult(
        index=step.index,
        users=step.users,
        phase="ramp" if step.phase == "hold" else step.phase,
        window_start=0.0,
        window_end=step.hold_s,
        offered_rps=step.users / INTERVAL,
        achieved_rps=step.users / INTERVAL,
        requests=step.users * 4,
        failures=0,
        failure_rate=0.0,
        p50_ms=SERVICE_MS,
        p95_ms=SERVICE_MS,
        p99_ms=SERVICE_MS,
        avg_ms=SERVICE_MS,
        verdict=verdict or ("pass" if passed else "fail"),  # type: ignore[arg-type]
        passed=passed,
    )


def test_the_search_is_a_policy_on_made_up_step_results() -> None:
    """RampSearch sees judged results only: levels up to 20 pass, above fail, no rows at all."""
    search = RampSearch(settings(start_users=10, step_users=10))
    step: Step | Literal["extend"] | None = search.first_step()
    seen: list[int] = []
    while isinstance(step, Step) and len(seen) < 30:
        seen.append(step.users)
        step = search.judged(made_up(step, step.users <= 20), 0)
    assert seen[:3] == [10, 20, 30]
    assert max(seen) == 30  # never above the first failure
    capacity = search.capacity()
    assert capacity is not None and capacity.users == 20 and capacity.fail_users in (21, 30)
    assert capacity.confirmed
    assert capacity.n == 80  # the sample beside its percentiles (made_up: 4 per user)


def test_the_search_extends_an_inconclusive_result_then_stops_counting_it() -> None:
    search = RampSearch(settings(start_users=10, step_users=10))
    first = search.first_step()
    assert search.judged(made_up(first, False, verdict="inconclusive"), 0) == "extend"
    again = search.extension(first)
    assert again.users == 10 and again.settle_s == 0.0
    assert search.judged(made_up(again, False, verdict="inconclusive"), 1) == "extend"
    last = search.extension(again)
    assert search.judged(made_up(last, False, verdict="inconclusive"), 2) is None
    assert search.results[-1].reasons[0].startswith("still inconclusive after 2 extensions")
    assert search.capacity() is None


def test_a_slo_level_with_few_users_is_held_long_enough_to_bound_its_percentile() -> None:
    """A p95 needs 59 requests for a confidence bound: 4 users at 2 s pacing hold 15 intervals."""
    from capdisc.schema import Slo

    planner = RampPlanner(settings(), Slo(ttft_ms=500))
    assert planner.first_step().hold_s == 30.0
    assert RampPlanner(settings()).first_step().hold_s == 8.0
    assert planner.search.hold_for(40) == 8.0


def test_a_failure_threshold_stop_at_a_failing_level_bounds_the_capacity_from_above() -> None:
    """Case 4: 10, 20, 30 pass; at 40 the server sheds with fast 503s and the failure
    threshold stops the run: 40 is the failing level beside the capacity, never "at least
    30 ... no level failed"."""
    from capdisc.reports.terminal import capacity_line

    planner = RampPlanner(settings(start_users=10, step_users=10))
    step: Step | None = planner.first_step()
    clock = 0.0
    while step is not None and step.users < 40:
        step.window_start = clock + step.settle_s
        step.window_end = clock = step.window_start + step.hold_s
        rows = synthetic_rows(step.users, step.window_start, step.window_end, 1e9, overloaded=False)
        step = planner.next_step(step, rows)
    assert step is not None and step.users == 40
    step.window_start = clock + step.settle_s
    step.window_end = step.window_start + step.hold_s
    stop = step.window_start + 3.0
    rows = synthetic_rows(40, step.window_start, stop, 1e9, overloaded=False)
    shed = [(*row[:7], 503, 0, 5.0, *row[10:]) for row in rows[:6]]
    step.stopped_by = "failure_threshold"
    planner.abandon_step(step, shed + rows[6:], stop, "5 failed requests (threshold 5)")
    capacity = planner.capacity()
    assert capacity is not None and capacity.users == 30
    assert capacity.fail_users == 40 and not capacity.at_least and capacity.fail_verdict == "fail"
    summary = discovery(
        stop_reason="failure_threshold",
        interval_s=INTERVAL,
        capacity=capacity,
        steps=planner.results,
    )
    line = capacity_line(summary)
    assert "no level failed" not in line and "below 40 users" in line, line


def test_confirmed_means_measured_twice_at_that_level() -> None:
    """Case 5: a single pass while refining after a drain is not "confirmed": the level
    is measured once more, and a level that then fails is not reported."""
    planner = RampPlanner(settings(start_users=10, step_users=10))
    steps = drive_scripted(
        planner, {10: [True], 20: [True], 30: [True], 40: [False], 35: [True, False]}
    )
    capacity = planner.capacity()
    assert capacity is not None, steps
    passes = [r for r in planner.results if r.users == capacity.users and r.passed]
    assert capacity.confirmed and len(passes) >= 2, steps
    if 35 in steps:
        assert capacity.users != 35 and steps.count(35) >= 2, steps


def test_slo_tiers_get_one_capacity_each_from_one_ramp() -> None:
    """Item 2: three tiers; the ramp climbs until the loosest fails (at 60) and each
    tighter tier's level is measured once more to confirm it."""
    limits = {0: 20, 1: 40, 2: 50}  # tier -> the most users that pass it
    search = RampSearch(settings(start_users=10, step_users=10, max_users=100), tiers=3)
    step: Step | Literal["extend"] | None = search.first_step()
    seen: list[int] = []
    while isinstance(step, Step) and len(seen) < 30:
        seen.append(step.users)
        passed = [step.users <= limits[t] for t in range(3)]
        result = made_up(step, passed[-1]).model_copy(update={"tiers_passed": passed})
        step = search.judged(result, 0)
    assert seen[:6] == [10, 20, 30, 40, 50, 60] and max(seen) == 60, seen
    for tier, most in limits.items():
        best, fail_users, confirmed = search.tier_capacity(tier)
        assert best is not None and best.users == most and confirmed, (tier, seen)
        assert fail_users is not None and fail_users > most
    assert seen.count(20) == 2 and seen.count(40) == 2 and seen.count(50) == 2, seen
