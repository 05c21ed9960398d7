"""Overload tests of a step (capdisc.metrics.trend), on hand-made rows and on a queue model.

The model (queue_model.py) has an exact capacity, so each overload case is checked
over 20 seeds: at capacity a step must not fail, past it must not pass, a
healthy step must not fail on throughput noise, and a batching server's
stationary noise must not read as a climb.
"""

from __future__ import annotations

from collections import Counter

import pandas as pd
import pytest

from capdisc.metrics.trend import (
    MATERIAL_OVERLOAD,
    Censored,
    Evidence,
    backlog_growth,
    fails_however_long,
    judge_evidence,
    latency_trend,
    lateness,
    throughput_deficit,
)
from tests.unit.metrics.queue_model import T0, Server, Step, simulate

SEEDS = range(20)
# 4 slots x 5 s at 20 s pacing sustain exactly 16 users.
QUEUE = Server(slots=4, service_s=5.0)
# latency doubles from 1 to 4 busy slots, +-30 % noise; 8 users at 2 s pacing fill it.
BATCHING = Server(slots=4, service_s=0.5, jitter=0.3, batching=1 / 3)
LIGHT = Server(slots=4, service_s=2.0, jitter=0.3)
# The discovery benchmark's speed anchor: 4 slots x 0.4 s, 20 users at 2 s pacing.
ANCHOR = Server(slots=4, service_s=0.4, jitter=0.05)


def latency_growth(tasks_df: pd.DataFrame) -> float | None:
    """The earlier rule (the halves rule), kept here to show what it got wrong: the
    later half's median duration over the first half's, minus one."""
    ok = tasks_df[tasks_df["ok"] == 1].sort_values("ts_start")
    half = len(ok) // 2
    if half < 4:
        return None
    first = float(ok["duration_ms"].iloc[:half].median())
    second = float(ok["duration_ms"].iloc[len(ok) - half :].median())
    return None if first <= 0 else second / first - 1.0


def judge(step: Step) -> Evidence:
    return judge_evidence(
        step.tasks,
        window_start=step.window_start,
        window_end=step.window_end,
        users=step.users,
        interval_s=step.interval_s,
        censored=step.censored,
        in_flight_at_start=step.in_flight_at_start,
        in_flight_at_end=step.in_flight_at_end,
    )


def verdicts(
    server: Server, users: int, interval_s: float, window_s: float, **kw: float
) -> Counter[str]:
    return Counter(
        judge(
            simulate(server, users, interval_s, window_s, seed=s, grace_s=interval_s, **kw)
        ).verdict
        for s in SEEDS
    )


def rows(points: list[tuple[int, float, float]]) -> pd.DataFrame:
    """Task rows from (user, start offset s, duration ms)."""
    return pd.DataFrame(
        {
            "ts_scheduled": [T0 + x for _, x, _ in points],
            "ts_start": [T0 + x for _, x, _ in points],
            "ts_end": [T0 + x + d / 1000 for _, x, d in points],
            "user": [u for u, _, _ in points],
            "ok": [1 for _ in points],
            "duration_ms": [d for _, _, d in points],
        }
    )


def paced(
    users: int, per_user: int, duration: float | list[float], interval_s: float = 20.0
) -> pd.DataFrame:
    """Every user on time, phases spread over the interval; durations by task index."""
    durations = duration if isinstance(duration, list) else [duration] * per_user
    return rows(
        [
            (u, u * interval_s / users + k * interval_s, durations[k])
            for u in range(users)
            for k in range(per_user)
        ]
    )


# -- the model itself ------------------------------------------------------


def test_model_paces_users_and_serves_at_its_service_time_when_idle() -> None:
    step = simulate(QUEUE, 4, 20.0, 60.0, seed=1, grace_s=20.0)
    assert not step.censored
    assert QUEUE.capacity_rps == pytest.approx(0.8)
    assert BATCHING.capacity_rps == pytest.approx(4.0)
    assert step.tasks["duration_ms"].tolist() == pytest.approx([5000.0] * 12)
    for _, mine in step.tasks.groupby("user"):
        assert mine["ts_start"].diff().dropna().tolist() == pytest.approx([20.0, 20.0])
    assert (step.tasks["ts_start"] == step.tasks["ts_scheduled"]).all()


def test_model_reports_in_flight_tasks_as_censored_with_their_age() -> None:
    step = simulate(QUEUE, 20, 20.0, 60.0, seed=3)  # overloaded, judged at the window's end
    assert step.censored
    for task in step.censored:
        assert task.ts_start is not None and step.window_start <= task.ts_start < step.window_end
        assert task.age_ms == pytest.approx((step.window_end - task.ts_start) * 1000)
        # One task in flight per user, its last: nothing of that user started after it.
        mine = step.tasks[step.tasks["user"] == task.user]
        assert (mine["ts_start"] < task.ts_start).all()
    assert step.in_flight_at_end >= len(step.censored)
    assert (step.tasks["ts_end"] < step.window_end).all()


# -- overload that holds at exactly capacity ------------------------


def test_at_capacity_never_fails_and_passes() -> None:
    assert verdicts(QUEUE, 16, 20.0, 60.0) == {"pass": len(SEEDS)}


def test_just_past_capacity_never_passes() -> None:
    assert verdicts(QUEUE, 17, 20.0, 60.0)["pass"] == 0


def test_just_past_capacity_passed_the_earlier_halves_rule() -> None:
    """Before: +25 % between halves was the only latency rule; 17 users stayed under it."""
    growth = [latency_growth(simulate(QUEUE, 17, 20.0, 60.0, seed=s).tasks) for s in SEEDS]
    assert sum(g is not None and g <= 0.25 for g in growth) >= len(SEEDS) // 4


def test_a_quarter_past_capacity_fails_mostly_on_the_trend() -> None:
    on_trend = 0
    for seed in SEEDS:
        evidence = judge(simulate(QUEUE, 20, 20.0, 60.0, seed=seed, grace_s=20.0))
        assert evidence.verdict == "fail"
        on_trend += evidence.trend.verdict == "fail"
    assert on_trend >= 0.9 * len(SEEDS)


def test_extending_an_inconclusive_step_decides_it() -> None:
    short = verdicts(QUEUE, 17, 20.0, 60.0)
    extended = verdicts(QUEUE, 17, 20.0, 120.0)
    assert short["inconclusive"] >= len(SEEDS) // 2
    assert extended["fail"] >= 0.9 * len(SEEDS)
    assert extended["pass"] == 0


def test_a_server_below_capacity_passes_with_noise() -> None:
    found = verdicts(Server(4, 5.0, jitter=0.1), 15, 20.0, 60.0)
    assert found["fail"] == 0
    assert found["pass"] >= 0.9 * len(SEEDS)


# -- a level measured one latency after its spawn -----------------------------


def spawned(
    server: Server,
    users: int,
    joining: int,
    interval_s: float,
    window_s: float,
    *,
    latency_s: float,
    baseline: bool = True,
) -> list[Evidence]:
    """``joining`` users join the others (4 intervals in; all of them: an idle target,
    as after a drain); the window opens one latency later, the backlog's baseline one
    interval into it (or at its start)."""
    return [
        judge(
            simulate(
                server,
                users,
                interval_s,
                window_s,
                seed=s,
                grace_s=interval_s,
                settle_s=latency_s,
                baseline_s=interval_s if baseline else 0.0,
                previous_users=users - joining,
                previous_s=4 * interval_s,
            )
        )
        for s in SEEDS
    ]


def test_a_level_measured_one_latency_after_its_spawn_never_fails_at_capacity() -> None:
    at_capacity = [
        *spawned(QUEUE, 16, 4, 20.0, 60.0, latency_s=5.0),
        *spawned(QUEUE, 16, 16, 20.0, 60.0, latency_s=5.0),
        *spawned(ANCHOR, 20, 4, 2.0, 8.0, latency_s=0.4),
        *spawned(ANCHOR, 20, 20, 2.0, 8.0, latency_s=0.4),
    ]
    for evidence in at_capacity:
        assert evidence.verdict != "fail", evidence.reasons
    assert Counter(e.verdict for e in at_capacity)["pass"] >= 0.85 * len(at_capacity)


def test_a_level_measured_one_latency_after_its_spawn_never_passes_past_capacity() -> None:
    past = [
        *spawned(QUEUE, 17, 1, 20.0, 60.0, latency_s=5.0),
        *spawned(QUEUE, 17, 17, 20.0, 60.0, latency_s=5.0),
        *spawned(ANCHOR, 21, 1, 2.0, 8.0, latency_s=0.4),
        *spawned(ANCHOR, 21, 21, 2.0, 8.0, latency_s=0.4),
    ]
    assert all(e.verdict != "pass" for e in past)


def test_five_percent_past_capacity_fails_in_one_window_after_a_drain() -> None:
    """21 users on the anchor's 20 from an empty target: the queue climbs about half its
    median over 4 intervals, which a share of a half could not fail without extending."""
    found = Counter(e.verdict for e in spawned(ANCHOR, 21, 21, 2.0, 8.0, latency_s=0.5))
    assert found["pass"] == 0
    assert found["fail"] >= 0.8 * len(SEEDS), found


def test_the_backlog_baseline_waits_until_every_user_is_in_its_cycle() -> None:
    """Counted as the window opens, the new users not yet started make what is in flight
    grow by itself: a healthy level from no users reads as a backlog building."""
    early = spawned(ANCHOR, 20, 20, 2.0, 8.0, latency_s=0.0, baseline=False)
    assert sum(e.backlog is not None and e.backlog.verdict != "pass" for e in early) >= 5
    later = spawned(ANCHOR, 20, 20, 2.0, 8.0, latency_s=0.0)
    assert all(e.backlog is not None and e.backlog.verdict == "pass" for e in later)


# -- throughput judged against its own noise ------------------------


@pytest.mark.parametrize("window_s", [40.0, 60.0])
def test_a_healthy_step_of_whole_intervals_never_fails(window_s: float) -> None:
    found = verdicts(LIGHT, 10, 20.0, window_s)
    assert found["fail"] == 0
    assert found["pass"] >= (0.95 if window_s == 60.0 else 0.6) * len(SEEDS)


def test_a_healthy_step_of_one_and_a_half_intervals_never_fails() -> None:
    for seed in SEEDS:
        step = simulate(LIGHT, 10, 20.0, 30.0, seed=seed, grace_s=20.0)
        evidence = judge(step)
        assert evidence.verdict != "fail"
        assert evidence.throughput.noise_sd == pytest.approx((10 * 0.5 * 0.5) ** 0.5)


# -- a batching server is not a queue --------------------------------


@pytest.mark.parametrize("users", [6, 7, 8])  # 75 %, 88 %, 100 % of capacity
@pytest.mark.parametrize("window_s", [6.0, 12.0])  # 18 to 48 tasks
def test_a_batching_server_never_fails_on_the_trend(users: int, window_s: float) -> None:
    found = Counter(
        judge(
            simulate(BATCHING, users, 2.0, window_s, seed=s, settle_s=10.0, grace_s=2.0)
        ).trend.verdict
        for s in SEEDS
    )
    assert found["fail"] == 0


def test_a_batching_server_failed_the_earlier_halves_rule() -> None:
    """Before: noise between halves of about 20 tasks read as a queue building."""
    failed = 0
    for users in (6, 7, 8):
        for seed in SEEDS:
            step = simulate(BATCHING, users, 2.0, 6.0, seed=seed, settle_s=10.0, grace_s=2.0)
            growth = latency_growth(step.tasks)
            median = float(step.tasks["duration_ms"].median())
            failed += growth is not None and growth > 0.25 and growth * median > 50.0
    assert failed >= 2


def test_a_longer_batching_step_passes() -> None:
    found = verdicts(BATCHING, 7, 2.0, 24.0, settle_s=10.0)
    assert found["fail"] == 0
    assert found["pass"] >= 0.9 * len(SEEDS)


# -- the trend on hand-made rows ----------------------------------------------


def test_trend_measures_a_steady_climb_within_each_user() -> None:
    # Each user climbs 60 ms/s on top of its own level (the phase pattern).
    points = [
        (u, x, 4000 + 300 * u + 60 * x) for u in range(8) for x in (u + 0.0, u + 20.0, u + 40.0)
    ]
    trend = latency_trend(rows(points), window_start=T0, window_end=T0 + 60)
    assert trend.slope_ms_per_s == pytest.approx(60.0)
    assert trend.low_ms_per_s == pytest.approx(60.0)
    assert trend.verdict == "fail"
    assert trend.reason.startswith("latency trend +60 ms/s [+60, +60]")
    assert "+3.6 s over the 60 s step" in trend.reason


def test_trend_passes_a_flat_latency_and_needs_repeated_users() -> None:
    flat = latency_trend(paced(8, 3, 900.0), window_start=T0, window_end=T0 + 60)
    assert flat.verdict == "pass"
    assert flat.slope_ms_per_s == pytest.approx(0.0)
    once = latency_trend(paced(8, 1, 900.0), window_start=T0, window_end=T0 + 20)
    assert once.verdict == "inconclusive"
    assert once.slope_ms_per_s is None


def test_trend_ignores_the_phase_pattern_between_users() -> None:
    # Later phases are slower (who shares the server with whom): across users that is a
    # steep climb by start time, within each user nothing moves.
    points = [(u, u * 2.5 + k * 20, 1000.0 + 800 * u) for u in range(8) for k in range(3)]
    assert latency_trend(rows(points), window_start=T0, window_end=T0 + 60).verdict == "pass"


def test_a_single_timeout_does_not_fail_the_trend() -> None:
    points = [(u, u * 2.5 + k * 20, 1000.0) for u in range(8) for k in range(3)]
    points[-1] = (7, 57.5, 30_000.0)
    trend = latency_trend(rows(points), window_start=T0, window_end=T0 + 60)
    assert trend.verdict == "inconclusive"
    assert trend.slope_ms_per_s is not None and trend.slope_ms_per_s > 0


def test_a_climb_carried_by_a_few_slow_tasks_needs_the_rank_test() -> None:
    # Half the users end on a 30 s task: the mean climbs past the limit with a clear
    # interval, but only 8 of 24 within-user pairs rise: Kendall z +1.3, not significant.
    points = [(u, u * 2.5 + k * 20, 1000.0) for u in range(8) for k in range(3)]
    points[2::6] = [(u, u * 2.5 + 40, 30_000.0) for u in range(0, 8, 2)]
    trend = latency_trend(rows(points), window_start=T0, window_end=T0 + 60)
    assert trend.low_ms_per_s is not None and trend.low_ms_per_s > trend.limit_ms_per_s
    assert "Kendall z +1.3" in trend.reason
    assert trend.verdict == "inconclusive"


def test_an_idle_server_passes_an_undecided_trend() -> None:
    """Two users' noisy latencies leave the trend's interval wide. With under one request
    in flight on average the server was idle part of the time: no queue is building.
    The same latencies on a busy server stay undecided; a clear climb still fails."""
    noisy = [[400.0, 700.0, 300.0], [500.0, 200.0, 650.0]]
    rows_ = rows([(u, u + 2.0 * k, d) for u, mine in enumerate(noisy) for k, d in enumerate(mine)])
    common = {"window_start": T0, "window_end": T0 + 6, "interval_s": 2.0}
    idle = judge_evidence(rows_, users=2, **common)
    assert idle.trend.verdict == "pass" and "idle part of the time" in idle.trend.reason
    assert latency_trend(rows_, window_start=T0, window_end=T0 + 6).verdict == "inconclusive"
    busy = latency_trend(rows_, window_start=T0, window_end=T0 + 6, busy_upper=1.2)
    assert busy.verdict == "inconclusive"
    climbing = paced(4, 4, [100.0, 300.0, 500.0, 700.0], interval_s=2.0)
    found = judge_evidence(climbing, window_start=T0, window_end=T0 + 8, users=4, interval_s=2.0)
    assert found.trend.verdict == "fail"


def test_material_growth_scales_with_the_window_and_the_median() -> None:
    # 40 ms/s is significant, but +2.4 s over 60 s is below half of a 8 s median.
    points = [
        (u, u * 2.5 + k * 20, 8000.0 + 40 * (u * 2.5 + k * 20)) for u in range(8) for k in range(3)
    ]
    trend = latency_trend(rows(points), window_start=T0, window_end=T0 + 60)
    assert trend.low_ms_per_s == pytest.approx(40.0)
    assert trend.limit_ms_per_s > 40.0 > MATERIAL_OVERLOAD * 1000
    assert trend.verdict == "inconclusive"


def test_censored_tasks_enter_the_trend_at_their_age_and_block_a_pass() -> None:
    frame = paced(8, 3, 900.0)
    last = frame.index[(frame["user"] == 7) & (frame["ts_start"] == frame["ts_start"].max())]
    censored = [Censored(age_ms=900.0, user=7, ts_start=float(frame.loc[last[0], "ts_start"]))]
    trend = latency_trend(frame.drop(last), window_start=T0, window_end=T0 + 60, censored=censored)
    assert trend.tasks == 24
    assert trend.verdict == "inconclusive"
    assert "1 still in flight" in trend.reason


def test_the_window_keeps_only_whole_tasks_started_in_it() -> None:
    frame = paced(8, 3, 900.0)
    extra = rows([(0, -5.0, 90_000.0), (1, 61.0, 90_000.0)])
    extra["name"] = "batch"
    frame["name"] = "batch"
    round_row = rows([(2, 41.0, 90_000.0)])
    round_row["name"] = "round 1"
    frame = pd.concat([frame, extra, round_row], ignore_index=True)
    assert latency_trend(frame, window_start=T0, window_end=T0 + 60).verdict == "pass"


# -- the counts -----------------------------------------------------------------


def backlog(at_end: int, *, at_start: int = 5, in_flight: float = 4.8) -> str:
    return backlog_growth(at_start, at_end, mean_in_flight=in_flight, offered=48.0).verdict


def test_backlog_growth_is_judged_against_twice_the_mean_in_flight() -> None:
    # 4.8 in flight on average: noise sqrt(9.6) = 3.1 tasks.
    assert backlog(5) == "pass"
    assert backlog(11) == "inconclusive"  # +6: beyond 1.28 SD past the edge task
    assert backlog(14) == "fail"  # +9: beyond 2.33 SD
    assert backlog(1, at_start=0, in_flight=0.1) == "pass"  # one task on the edge
    assert backlog(2, at_start=0, in_flight=0.0) == "fail"


def test_the_mean_in_flight_comes_from_littles_law() -> None:
    # 48 tasks of 6 s started in 60 s: 4.8 in flight on average.
    evidence = judge_evidence(
        paced(16, 3, 6000.0),
        window_start=T0,
        window_end=T0 + 60,
        users=16,
        interval_s=20.0,
        in_flight_at_start=5,
        in_flight_at_end=5,
    )
    assert evidence.backlog is not None
    assert evidence.backlog.noise_sd == pytest.approx(9.6**0.5)


def test_the_backlog_counted_later_in_the_window_is_material_over_its_span() -> None:
    """A climb counts its baseline one interval in: growth over 40 of 60 s, on 2/3 of
    the offered tasks."""
    evidence = judge_evidence(
        paced(16, 3, 6000.0),
        window_start=T0,
        window_end=T0 + 60,
        users=16,
        interval_s=20.0,
        in_flight_at_start=5,
        in_flight_at_end=5,
        in_flight_start_at=T0 + 20,
    )
    assert evidence.backlog is not None
    assert evidence.backlog.material == pytest.approx(2.0)  # max(2, 2.5 % of 32)
    assert "over 40 s" in evidence.backlog.reason


def test_a_failure_that_censored_tasks_cannot_undo() -> None:
    frame = paced(16, 3, 6000.0)
    common = {"window_start": T0, "window_end": T0 + 60, "users": 16, "interval_s": 20.0}
    # +12 in flight against a noise of 3.1: fails, and still does with 6 tasks in
    # flight lasting 10 s more each (noise 3.5); not if they may last 10 minutes more.
    grown = judge_evidence(frame, **common, in_flight_at_start=5, in_flight_at_end=17)
    assert grown.verdict == "fail"
    assert fails_however_long(grown, censored=6, longer_by_s=10.0, window_s=60.0)
    assert not fails_however_long(grown, censored=6, longer_by_s=600.0, window_s=60.0)
    # Tasks that never started cannot start later: a throughput failure stands.
    lost = judge_evidence(frame.iloc[:-3], **common, in_flight_at_start=5, in_flight_at_end=5)
    assert lost.throughput.verdict == "fail"
    assert fails_however_long(lost, censored=6, longer_by_s=600.0, window_s=60.0)
    # A failing trend alone is not settled: the tasks' true durations move it both ways.
    calm = judge_evidence(frame, **common, in_flight_at_start=5, in_flight_at_end=5)
    assert not fails_however_long(calm, censored=6, longer_by_s=1.0, window_s=60.0)


def test_throughput_of_whole_intervals_is_exact_and_counts_censored_tasks() -> None:
    assert throughput_deficit(30, users=10, window_s=60.0, interval_s=20.0).verdict == "pass"
    assert throughput_deficit(29, users=10, window_s=60.0, interval_s=20.0).verdict == "pass"
    # 2 of 30 missing: beyond the one task on an edge, and material.
    assert throughput_deficit(28, users=10, window_s=60.0, interval_s=20.0).verdict == "fail"
    common = {"window_start": T0, "window_end": T0 + 60, "users": 10, "interval_s": 20.0}
    short = paced(10, 3, 900.0).iloc[:-2]
    assert judge_evidence(short, **common).throughput.started == 28
    censored = [Censored(age_ms=100.0), Censored(age_ms=200.0)]
    assert judge_evidence(short, **common, censored=censored).throughput.verdict == "pass"


def test_throughput_noise_comes_from_phase_quantisation() -> None:
    # A 30 s window at 20 s pacing: each user starts 1 or 2 tasks, by its phase.
    result = throughput_deficit(15, users=10, window_s=30.0, interval_s=20.0)
    assert result.offered == pytest.approx(15.0)
    assert result.noise_sd == pytest.approx(2.5**0.5)
    for started, verdict in ((12, "pass"), (11, "inconclusive"), (10, "fail")):
        found = throughput_deficit(started, users=10, window_s=30.0, interval_s=20.0)
        assert found.verdict == verdict
    frame = paced(10, 2, 900.0)  # users 0-4 start at 0-8 s and again within 30 s
    evidence = judge_evidence(frame, window_start=T0, window_end=T0 + 30, users=10, interval_s=20.0)
    assert evidence.throughput.started == 15


def test_lateness_fails_above_a_tenth_of_tasks() -> None:
    on_time = paced(10, 2, 900.0)
    assert lateness(on_time, interval_s=20.0).verdict == "pass"
    late = on_time.copy()
    late.loc[:2, "ts_scheduled"] -= 5.0
    result = lateness(late, interval_s=20.0)
    assert (result.late, result.verdict) == (3, "fail")
    assert result.reason.startswith("lateness 3 of 20 tasks")


# -- the combination --------------------------------------------------------------


def test_evidence_combines_every_test() -> None:
    frame = paced(16, 3, 6000.0)
    common = {"window_start": T0, "window_end": T0 + 60, "users": 16, "interval_s": 20.0}
    calm = judge_evidence(frame, **common, in_flight_at_start=5, in_flight_at_end=5)
    assert calm.verdict == "pass"
    assert [r.split()[0] for r in calm.reasons] == ["latency", "backlog", "throughput", "lateness"]
    growing = judge_evidence(frame, **common, in_flight_at_start=5, in_flight_at_end=11)
    assert growing.verdict == "inconclusive"
    assert growing.backlog is not None
    assert growing.deciding == (growing.backlog.reason,)
    lost = judge_evidence(frame.iloc[:-3], **common, in_flight_at_start=5, in_flight_at_end=11)
    assert lost.verdict == "fail"
    assert lost.deciding == (lost.throughput.reason,)
    unknown = judge_evidence(frame, **common)
    assert unknown.backlog is None
    assert len(unknown.tests) == 3
