"""The one builder of hand-made summaries for tests: a discovery, its steps, a comparison.

Rendering tests (terminal, markdown, report.html) and the writer's tests start from the
same summaries, with ``changes`` overriding what a test is about.
"""

from __future__ import annotations

from capdisc.schema import (
    AtStop,
    Capacity,
    CompareLoad,
    CompareSummary,
    DiscoverySummary,
    Pacing,
    StepResult,
    TargetInfo,
    VersionDiff,
    VersionStats,
)

__all__ = ["comparison", "discovery", "step"]


def step(index: int, users: int, *, passed: bool, p50: float | None = 450.0) -> StepResult:
    """A step at ``users`` with an interval of 2 s; failing steps say why."""
    return StepResult(
        index=index,
        users=users,
        window_start=100.0 * index,
        window_end=100.0 * index + 60,
        offered_rps=users / 2,
        achieved_rps=users / 2 if passed else users / 2 * 0.7,
        requests=30 * users,
        failures=0 if passed else 12,
        failure_rate=0.0 if passed else 3.5,
        p50_ms=p50,
        p95_ms=None if p50 is None else p50 * 1.1,
        p99_ms=None if p50 is None else p50 * 1.2,
        avg_ms=p50,
        pacing=Pacing(tasks=30 * users, late=3, late_share=0.01),
        passed=passed,
        reasons=[] if passed else ["achieved 70% of offered load (< 90%)"],
    )


def discovery(**changes: object) -> DiscoverySummary:
    """A batch discovery that found 18 users; ``changes`` override fields."""
    base = DiscoverySummary(
        strategy="batch",
        target=TargetInfo(url="http://127.0.0.1:8000", model="sim", api="openai"),
        started_at="2026-01-01T00:00:00Z",
        finished_at="2026-01-01T00:10:00Z",
        stop_reason="max_users",
        interval_s=2.0,
        failure_threshold=5,
        capacity=Capacity(users=18, rps=9.0, p50_ms=452.0, p95_ms=497.0, failure_rate=0.0),
        at_stop=AtStop(users=20, total_requests=1234, failure_rate=1.5, avg_ms=1240.0),
        steps=[
            step(0, 10, passed=True),
            step(1, 18, passed=True, p50=452.0),
            step(2, 20, passed=False, p50=1240.0),
        ],
        pacing=Pacing(tasks=1000, late=12, late_share=0.012, slip_p95_ms=80.0, slip_max_ms=900),
    )
    return base.model_copy(update=changes)


def comparison(verdict: str = "b_faster", **changes: object) -> CompareSummary:
    """A comparison where B is 18.2% faster over 4 pairs; ``changes`` override fields."""

    def stats(label: str, p50: float) -> VersionStats:
        return VersionStats(
            label=label,
            requests=4800,
            failures=2,
            p50_ms=p50,
            p95_ms=p50 * 1.3,
            p99_ms=p50 * 1.6,
            ttft_p50_ms=p50 / 5,
            ttft_p95_ms=p50 / 4,
            chunks_p50=120.0,
            pacing=Pacing(tasks=4800, late=48, late_share=0.01),
            offered_rps=10.0,
            achieved_rps=9.9,
        )

    base = CompareSummary(
        started_at="2026-01-01T00:00:00Z",
        finished_at="2026-01-01T00:16:00Z",
        load=CompareLoad(
            users=200, interval_s=20, duration_s=480, temperature=0, blocks=4, order="abba"
        ),
        a=stats("v1", 2480.0),
        b=stats("v2", 2028.6),
        diff=VersionDiff(
            p50_pct=-18.2,
            p50_ci95_pct=(-20.1, -16.0),
            p95_pct=-17.0,
            p_value=1.2e-40,
            failure_rate_pts=0.0,
            failure_rate_ci95_pts=(-0.1, 0.1),
            design="paired",
            pairs=4,
            blocks_a=4,
            blocks_b=4,
            mde_pct=2.5,
            margin_pct=2.0,
        ),
        verdict=verdict,  # type: ignore[arg-type]
        verdict_reason="the 95% interval is below 0",
    )
    return base.model_copy(update=changes)
