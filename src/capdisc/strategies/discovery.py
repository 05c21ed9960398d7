"""Capacity discovery, the flow shared by ``discover batch``, ``tools`` and ``stream``.

Start the target, check it, ramp users in steps (:mod:`.ramp`) with ``requests.csv``
written as the run goes, and build the run's result (``results.RunResult``) from the
rows kept in memory, whether the ramp finished, the failure threshold stopped it or
the user pressed Ctrl+C. The run directory's other files are written from that result
by ``rundir.write_run``, never here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from capdisc.apis.prompts import prompt_source, refuse_hopeless_streams
from capdisc.errors import RunFailed
from capdisc.loadgen.contract import ProgressSink, SessionResult, Workload
from capdisc.metrics.figures import at_stop, pacing_stats
from capdisc.metrics.frame import client_frame, records_frame, tasks
from capdisc.profiles import Profile
from capdisc.results import RunResult
from capdisc.schema import DiscoverySummary, StopReason, TargetInfo, ToolsInfo
from capdisc.settings import RampSettings, ToolsSettings, WorkloadSettings, load_settings
from capdisc.strategies.calibrate import cache_dir
from capdisc.strategies.client import ClientPlan, Demand, client_info, plan_client
from capdisc.strategies.preparation import open_target, prepare_run, server_checks
from capdisc.strategies.ramp import RampPlanner
from capdisc.strategies.slo import slo_of, slo_tiers

if TYPE_CHECKING:
    from capdisc.loadgen.context import RunContext

__all__ = ["DiscoveryRequest", "run_discovery"]

NO_SLO_WARNING = (
    "no token SLO set (--slo-ttft, --slo-tpot, --slo-e2e): steps were judged on failures, "
    "throughput and pacing only, not on what a chat user waits for"
)

# Spread of task durations (coefficient of variation) above which tool tasks are
# not deterministic enough for a fair discovery.
MAX_DETERMINISTIC_CV = 0.25


@dataclass(frozen=True)
class DiscoveryRequest:
    """Everything one discovery run needs, built once by the CLI."""

    strategy: Literal["batch", "tools", "stream"]
    profile: Profile
    # ToolsSettings for discover tools, StreamRampSettings for discover stream: the same
    # model the flags and the profile filled.
    settings: RampSettings
    out_dir: Path
    workload: WorkloadSettings = field(default_factory=WorkloadSettings)
    temperature: float = 0.0
    stop_timeout_s: float = 5.0
    # Where the client ceiling is cached (strategies.calibrate.cache_dir).
    cache_dir: Path | None = None

    @property
    def demand(self) -> Demand:
        """The planned peak: --max-users / --interval tasks/s, in requests or tool rounds."""
        tools = self.tools
        rounds = 1 if tools is None or tools.orchestration == "server" else tools.tools + 1
        return Demand(self.strategy, self.settings.max_users / self.settings.interval, rounds)

    @property
    def tools(self) -> ToolsSettings | None:
        """How a tool task is made (discover tools only)."""
        if self.strategy == "tools" and isinstance(self.settings, ToolsSettings):
            return self.settings
        return None


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_discovery(request: DiscoveryRequest, progress: ProgressSink | None) -> RunResult:
    """Run a discovery to the end and return its result (``failure`` set if no step completed)."""
    settings = request.settings
    config = request.profile.target
    prompts = prompt_source(request.workload, config.prompt, config.max_tokens, settings.seed)
    if request.strategy == "stream":
        refuse_hopeless_streams(prompts)
    cache = request.cache_dir or cache_dir(load_settings())
    plan = plan_client(request.demand, settings.workers, settings.expect_workers, cache, progress)
    with open_target(request.profile) as target:
        out_dir, metrics = prepare_run(
            target, request.out_dir, progress, stream=request.strategy == "stream"
        )
        from capdisc.loadgen.context import RunContext

        workload = Workload(
            kind=request.strategy,
            target=target,
            interval_s=settings.interval,
            temperature=request.temperature,
            seed=settings.seed,
            version=target.label,
            tools=request.tools,
            prompts=prompts,
        )
        planner = RampPlanner(settings, slo_of(settings), slo_tiers(settings))
        with RunContext(
            out_dir,
            failure_threshold=settings.failure_threshold,
            users=settings.max_users,
            progress=progress,
            stop_timeout=request.stop_timeout_s,
            workers=plan.workers,
            expect_workers=settings.expect_workers,
            master_bind=settings.master_bind,
            keep_rows=True,
            server_metrics={target.label: metrics} if metrics is not None else None,
        ) as run:
            run.warnings.extend(plan.notes)
            if request.strategy == "stream" and planner.slo is None:
                run.warnings.append(NO_SLO_WARNING)
            result = run.run(workload, planner)
            run.close_records()
            page = run.locust_page()
            outcome = _result(
                request, target.info(), planner, result, out_dir, run.warnings, plan, run
            )
            if page is not None:
                outcome.pages["locust.html"] = page
            return outcome


def _result(
    request: DiscoveryRequest,
    target_info: TargetInfo,
    planner: RampPlanner,
    result: SessionResult,
    out_dir: Path,
    warnings: list[str],
    plan: ClientPlan,
    run: RunContext,
) -> RunResult:
    # Every row of the run, as the run kept it (requests.csv is never read back).
    records = records_frame(run.rows or [])
    servers, notes = server_checks(records, run.scrapers.values())
    warnings.extend(n for n in notes if n not in warnings)
    task_rows = tasks(records)
    stop_reason: StopReason
    if result.stop_reason is None:
        stop_reason = planner.end_reason
        detail = (
            f"reached --max-users {request.settings.max_users} with every step passing"
            if stop_reason == "max_users"
            else "a step failed its limits"
        )
        bound = next((r for r in planner.results if r.client_bound), None)
        if stop_reason == "client_bound" and bound is not None:
            detail = (
                f"step {bound.index} ({bound.users} users) was {bound.reasons[0]}; no server "
                f"capacity is reported ({plan.advice()})"
            )
    else:
        stop_reason = result.stop_reason
        detail = result.stop_detail
    tools_info = None
    if request.tools is not None:
        first = planner.results[0] if planner.results else None
        cv = first.duration_cv if first is not None else None
        wrong = int(task_rows["error"].str.startswith("expected ").sum()) if len(task_rows) else 0
        tools_info = ToolsInfo(
            per_task=request.tools.tools,
            tasks=len(task_rows),
            wrong_count=wrong,
            orchestration=request.tools.orchestration,
            duration_cv=cv,
            deterministic=None if cv is None else cv <= MAX_DETERMINISTIC_CV,
            round_p50_ms=first.round_p50_ms if first is not None else [],
        )
        if cv is not None and cv > MAX_DETERMINISTIC_CV:
            warnings.append(
                f"task durations vary too much for a fair discovery (CV {cv:.2f} > "
                f"{MAX_DETERMINISTIC_CV}): the target is not deterministic"
            )
    # Pacing the server cannot meet is named, never blamed on the server (exit 4).
    unmet = planner.search.pacing_unmet() if result.stop_reason is None else None
    if unmet is not None:
        warnings.append(unmet)
    summary = DiscoverySummary(
        strategy=request.strategy,
        target=target_info,
        started_at=_iso(result.started_at),
        finished_at=_iso(result.finished_at),
        stop_reason=stop_reason,
        stop_detail=detail,
        interval_s=request.settings.interval,
        step_s=planner.hold_s,
        failure_threshold=request.settings.failure_threshold,
        slo=planner.slo,
        capacity=planner.capacity(),
        tiers=planner.tiers(),
        at_stop=at_stop(records, result.users_at_stop),
        steps=planner.results,
        pacing=pacing_stats(task_rows, request.settings.interval),
        tools=tools_info,
        client=client_info(
            plan,
            [
                (str(r.index), r.client, r.achieved_rps * request.demand.per_task)
                for r in planner.results
            ],
            [str(r.index) for r in planner.results if r.client_bound],
            result.worker_clocks,
        ),
        servers=servers,
    )
    failure = RunFailed(f"{unmet}; files are in {out_dir}") if unmet is not None else None
    if not planner.results:
        failure = RunFailed(
            f"no step completed ({detail or stop_reason}); raw records are in {out_dir}"
        )
    return RunResult(
        summary=summary,
        out_dir=out_dir,
        records=records,
        client=client_frame(run.selfcheck.rows),
        warnings=warnings,
        failure=failure,
    )
