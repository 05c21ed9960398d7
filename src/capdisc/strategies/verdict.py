"""A discovery step's verdict: pass, fail or inconclusive, each reason naming its test.

Hard limits fail a step outright: no request, the failure rate above
``--max-failure-rate``, p95 above ``--slo-p95``, a token SLO broken with confidence
(``--slo-*``: its percentile's 95% lower bound over the limit; a bound spanning the
limit leaves the step inconclusive, :mod:`capdisc.metrics.goodput`).
Overload is judged by tests that hold at exactly capacity (:mod:`capdisc.metrics.trend`):
a latency trend within each user, the backlog in flight, the throughput deficit and
lateness, each against the noise the step itself explains. Any failing test fails the
step; otherwise an undecided test makes it inconclusive (the planner extends it); only
when every test passes does the step pass. A step during which capdisc itself was at
its limit is client-bound: never a server verdict.
"""

from __future__ import annotations

from capdisc.durations import format_duration
from capdisc.metrics.goodput import slo_reasons, slo_undecided
from capdisc.metrics.trend import Evidence
from capdisc.schema import OverloadTests, Slo, StepResult
from capdisc.settings import RampSettings
from capdisc.strategies.client import client_bound_reason

__all__ = ["judge_step", "overload_tests"]


def judge_step(
    result: StepResult,
    settings: RampSettings,
    slo: Slo | None = None,
    evidence: Evidence | None = None,
) -> StepResult:
    """The step with its verdict and every reason (the failing ones, or the undecided ones)."""
    client = client_bound_reason(result.client)
    if client is not None:
        return result.model_copy(
            update={
                "passed": False,
                "client_bound": True,
                "verdict": "client_bound",
                "reasons": [client],
            }
        )
    failing = _hard_limits(result, settings, slo)
    undecided: list[str] = []
    if slo is not None and result.goodput is not None:
        # A token SLO whose confidence bounds span its limit: measured on (extended).
        undecided += slo_undecided(result.goodput, slo)
    if evidence is not None:
        if evidence.verdict == "fail":
            failing += evidence.deciding
        elif evidence.verdict == "inconclusive":
            undecided += evidence.deciding
    verdict = "fail" if failing else "inconclusive" if undecided else "pass"
    return result.model_copy(
        update={
            "passed": verdict == "pass",
            "verdict": verdict,
            "reasons": failing or undecided,
            "tests": overload_tests(evidence) if evidence is not None else None,
        }
    )


def _hard_limits(result: StepResult, settings: RampSettings, slo: Slo | None) -> list[str]:
    reasons: list[str] = []
    if result.requests == 0:
        reasons.append("no request started in the window")
    if result.failure_rate > settings.max_failure_rate:
        reasons.append(f"failure rate {result.failure_rate:.1f}% > {settings.max_failure_rate:g}%")
    limit = settings.slo_p95
    if limit is not None and result.p95_ms is not None and result.p95_ms > limit * 1000:
        reasons.append(f"p95 {result.p95_ms:.0f} ms > SLO {format_duration(limit)}")
    if slo is not None and result.goodput is not None:
        reasons += slo_reasons(result.goodput, slo)
    return reasons


def overload_tests(evidence: Evidence) -> OverloadTests:
    """The figures of every overload test, as ``summary.json`` and ``steps.csv`` carry them."""
    trend, backlog, throughput = evidence.trend, evidence.backlog, evidence.throughput
    return OverloadTests(
        verdict=evidence.verdict,
        trend_verdict=trend.verdict,
        trend_ms_per_s=trend.slope_ms_per_s,
        trend_low_ms_per_s=trend.low_ms_per_s,
        trend_high_ms_per_s=trend.high_ms_per_s,
        trend_limit_ms_per_s=trend.limit_ms_per_s,
        backlog_verdict=backlog.verdict if backlog is not None else None,
        backlog_growth=backlog.growth if backlog is not None else None,
        backlog_noise_sd=backlog.noise_sd if backlog is not None else None,
        throughput_verdict=throughput.verdict,
        offered_tasks=throughput.offered,
        deficit=throughput.deficit,
        deficit_noise_sd=throughput.noise_sd,
        lateness_verdict=evidence.lateness.verdict,
        late_share=evidence.lateness.share,
    )
