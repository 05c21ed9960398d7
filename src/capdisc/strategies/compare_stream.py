"""``compare stream A B``: the same fixed streaming load on two versions, and a verdict.

Streaming connections make true capacity hard to reach, so this strategy holds
the load fixed (users, pacing interval, prompts, seed, temperature 0) and compares
what users feel: first token, time per token, end-to-end time and its tail, failures
and the length of the answers. Live versions run in pairs of blocks, A B then B A
(A B B A A B B A for 4 pairs), so a drift of the machine or network hits both alike
and cancels in the pairs (``metrics.compare``); each block's ramp-up (one interval
after its users spawned) is excluded. Both blocks of a pair get the same prompts and
each pair new ones, so no block is served from another's prompt cache. A version may
also be a saved run directory, whose measured rows are reused instead of run again
(then there are no pairs).

One pass: the client is planned first, every block is checked (client-bound, a queue
building) from what the run kept in memory, and the verdict is final in the
``results.RunResult`` handed back; ``rundir.write_run`` writes every file from it once.
A saved version's rows go to this run's ``requests.csv`` through the run's own writer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from capdisc.apis.prompts import PromptSource, prompt_source, refuse_hopeless_streams
from capdisc.errors import UsageError
from capdisc.loadgen.contract import ProgressSink, SessionResult, Step, Workload
from capdisc.metrics.frame import client_frame, frame_records
from capdisc.profiles import Profile, load_profile, plain_host_profile, with_target_overrides
from capdisc.results import RunResult
from capdisc.rundir import check_out_dir, create_out_dir
from capdisc.schema import CompareSummary, StopReason, load_summary
from capdisc.settings import CompareSettings, TargetConfig, WorkloadSettings
from capdisc.strategies.client import Demand, plan_client
from capdisc.strategies.compare_verdict import Block, Run, assess, load_saved
from capdisc.strategies.preparation import find_server_metrics, load_engine, open_target
from capdisc.target import Target

__all__ = ["CompareRequest", "VersionSource", "resolve_source", "run_compare"]

Side = Literal["a", "b"]


@dataclass(frozen=True)
class VersionSource:
    """One side of a comparison: a live profile, or a saved run to reuse."""

    side: Side
    label: str
    profile: Profile | None = None
    saved_dir: Path | None = None


@dataclass(frozen=True)
class CompareRequest:
    """Everything one comparison needs, built once by the CLI."""

    a: VersionSource
    b: VersionSource
    settings: CompareSettings
    out_dir: Path
    stop_timeout_s: float = 5.0
    # Synthetic prompts or a dataset: both versions get the same ones, in the same order.
    workload: WorkloadSettings = field(default_factory=WorkloadSettings)

    def prompts(self) -> PromptSource | None:
        """One prompt source for both sides (None: each side's own profile prompt)."""
        workload = self.workload
        if workload == WorkloadSettings():
            return None
        live = [s.profile for s in (self.a, self.b) if s.profile is not None]
        config = live[0].target if live else TargetConfig()
        return prompt_source(workload, config.prompt, config.max_tokens, self.settings.seed)


def resolve_source(
    spec: str,
    side: Side,
    profiles_dir: Path | None,
    target_flags: Mapping[str, Any] | None = None,
) -> VersionSource:
    """A profile name or path, a base URL, or a saved run directory.

    ``target_flags`` (``--model``, ``--api``, ...) apply to a live version.
    """
    path = Path(spec)
    if path.is_dir():
        if not (path / "summary.json").is_file() or not (path / "requests.csv").is_file():
            raise UsageError(f"{side.upper()}: {spec} is a directory but not a capdisc run")
        try:
            saved = load_summary(path / "summary.json")
        except ValueError:
            raise UsageError(
                f"{side.upper()}: {spec}/summary.json is not a capdisc summary"
            ) from None
        if not isinstance(saved, CompareSummary):
            raise UsageError(f"{side.upper()}: {spec} is not a compare stream run")
        return VersionSource(side=side, label=f"{path.name} (saved)", saved_dir=path)
    if spec.startswith(("http://", "https://")):
        profile = with_target_overrides(plain_host_profile(spec), target_flags or {})
        return VersionSource(side=side, label=spec, profile=profile)
    profile = with_target_overrides(load_profile(spec, profiles_dir), target_flags or {})
    return VersionSource(side=side, label=profile.name, profile=profile)


class HoldPlanner:
    """One block: hold ``users`` for ``hold_s`` after one interval of ramp-up."""

    # The figures come from every row of the run (RunContext.rows), but the engine must
    # keep a block's rows too: a window set a tick after it opened counts what was in
    # flight at its start from the rows that ended since (without them, none).
    needs_rows = True

    def __init__(
        self, block: int, users: int, hold_s: float, interval_s: float, label: str
    ) -> None:
        self.step = Step(index=block, users=users, hold_s=hold_s, settle_s=interval_s, phase="hold")
        self.label = label
        self.window: tuple[float, float] | None = None
        # The block as the engine closed it (in-flight counts, client load), and whether
        # a stop cut its window short.
        self.closed: Step | None = None
        self.cut = False

    def first_step(self) -> Step:
        return self.step

    def next_step(self, finished: Step, rows: object) -> Step | None:
        assert finished.window_start is not None and finished.window_end is not None
        self.window = (finished.window_start, finished.window_end)
        self.closed = finished
        return None

    def decided_early(self, step: Step, rows: object, remaining_s: float) -> bool:
        return False  # its window's requests are always awaited

    def abandon_step(self, step: Step, rows: object, stopped_at: float, why: str) -> None:
        assert step.window_start is not None
        end = step.window_end if step.window_end is not None else stopped_at
        self.window = (step.window_start, min(stopped_at, end))
        self.closed = step
        self.cut = stopped_at < end

    def describe(self) -> str:
        return f"{self.label} block {self.step.index}"


def _block_order(settings: CompareSettings, live: list[Side]) -> list[tuple[Side, int]]:
    """A B, B A, A B, ... (pair k is block k of each); or all of A, then all of B."""
    blocks = range(1, settings.blocks + 1)
    if settings.sequential or len(live) < 2:
        return [(side, n) for side in live for n in blocks]
    return [(side, n) for n in blocks for side in (("a", "b") if n % 2 else ("b", "a"))]


def _block_hold(settings: CompareSettings) -> float:
    """A block's measured time: ``duration / blocks`` rounded up to whole intervals, so the
    backlog's two counts find every user at the same point of its cycle."""
    intervals = math.ceil(settings.duration / settings.blocks / settings.interval - 1e-9)
    return max(intervals, 1) * settings.interval


def _prompt_stride(settings: CompareSettings, targets: Mapping[str, Target]) -> int:
    """More requests than one block can start: pair k's prompts start at (k - 1) x this.

    A block starts one task per user and interval over its ramp-up, window and the wait
    for its last requests (at most the request timeout).
    """
    timeout = max((t.timeout_s for t in targets.values()), default=0.0)
    span = settings.interval + _block_hold(settings) + timeout + 1.0
    return settings.users * (math.ceil(span / settings.interval) + 2)


def _profile_prompts(request: CompareRequest) -> list[PromptSource]:
    """Each live side's own prompt and max tokens (no workload option given)."""
    return [
        PromptSource(prompt=s.profile.target.prompt, max_tokens=s.profile.target.max_tokens)
        for s in (request.a, request.b)
        if s.profile is not None
    ]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_compare(request: CompareRequest, progress: ProgressSink | None, cache: Path) -> RunResult:
    """Plan the client, run (or reuse) both versions and judge them: the run's result."""
    settings = request.settings
    prompts = request.prompts()  # a bad dataset is refused before anything starts
    for source in [prompts] if prompts is not None else _profile_prompts(request):
        refuse_hopeless_streams(source)
    check_out_dir(request.out_dir)
    sources = {"a": request.a, "b": request.b}
    saved = {
        side: load_saved(side, s.saved_dir)
        for side, s in sources.items()
        if s.saved_dir is not None
    }
    live: list[Side] = [side for side in ("a", "b") if sources[side].profile is not None]
    profiles = [s.profile for s in sources.values() if s.profile is not None]
    tokens = max((p.target.max_tokens for p in profiles), default=1)
    rate = settings.users / settings.interval if live else 0.0
    plan = plan_client(
        Demand("stream", rate, tokens), settings.workers, settings.expect_workers, cache, progress
    )
    settings = settings.model_copy(update={"workers": plan.workers})
    blocks: list[Block] = []
    started = datetime.now(UTC).timestamp()
    stop_reason: StopReason = "duration"
    stop_detail = ""
    broken: str | None = None
    with ExitStack() as stack:
        targets: dict[str, Target] = {}
        for side in live:
            profile = sources[side].profile
            assert profile is not None
            targets[side] = stack.enter_context(open_target(profile))
        load_engine()
        from capdisc.apis.preflight import preflight
        from capdisc.loadgen.context import RunContext
        from capdisc.loadgen.threshold import FailureThreshold

        for side in live:
            preflight(targets[side], stream=True)
        metrics = {side: find_server_metrics(targets[side], progress) for side in live}
        out_dir = create_out_dir(request.out_dir)
        hold_s = _block_hold(settings)
        stride = _prompt_stride(settings, targets)
        with RunContext(
            out_dir,
            failure_threshold=settings.failure_threshold,
            threshold=FailureThreshold.for_comparison(settings.failure_threshold),
            keep_rows=True,
            users=settings.users if live else 0,
            progress=progress,
            stop_timeout=request.stop_timeout_s,
            workers=settings.workers,
            expect_workers=settings.expect_workers,
            master_bind=settings.master_bind,
            server_metrics={side: e for side, e in metrics.items() if e is not None},
        ) as run:
            for side, block in _block_order(settings, live):
                workload = Workload(
                    kind="stream",
                    target=targets[side],
                    interval_s=settings.interval,
                    temperature=settings.temperature,
                    seed=settings.seed,
                    version=side,
                    prompts=prompts,
                    first_request=(block - 1) * stride,
                )
                planner = HoldPlanner(
                    block,
                    settings.users,
                    hold_s,
                    settings.interval,
                    f"{side.upper()} ({sources[side].label})",
                )
                result = run.run(workload, planner)
                blocks.append(Block(side, block, planner.window, planner.closed, planner.cut))
                for clock in result.worker_clocks:
                    blocks[-1].clocks.append(clock.model_copy(update={"block": f"{side}{block}"}))
                if result.stop_reason is not None:
                    stop_reason, stop_detail = result.stop_reason, result.stop_detail
                    if stop_reason == "failure_threshold":
                        broken = run.control.threshold.version
                    break
            finished = datetime.now(UTC).timestamp()
            for reused in saved.values():
                run.copy_rows(frame_records(reused.rows))
            run.close_records()
            pages = {
                f"locust-{side}.html": page
                for side in live
                if (page := run.locust_page(_sessions(run.sessions, blocks, side))) is not None
            }
            assessed = assess(
                Run(
                    settings=settings,
                    sources={side: (s.label, s.saved_dir) for side, s in sources.items()},
                    saved=saved,
                    blocks=blocks,
                    rows=run.rows or [],
                    plan=plan,
                    stop_reason=stop_reason,
                    stop_detail=stop_detail,
                    broken=broken,
                    started_at=_iso(started),
                    finished_at=_iso(finished),
                    warnings=run.warnings,
                    out_dir=out_dir,
                    scrapers=list(run.scrapers.values()),
                )
            )
            return RunResult(
                summary=assessed.summary,
                out_dir=out_dir,
                records=assessed.records,
                measured=assessed.frames,
                client=client_frame(run.selfcheck.rows),
                pages=pages,
                warnings=list(run.warnings),
                exit_code=assessed.exit_code,
                failure=assessed.failure,
            )


def _sessions(sessions: list[SessionResult], blocks: list[Block], side: str) -> list[SessionResult]:
    """The Locust sessions of ``side``'s blocks (one session per block, in run order)."""
    return [session for session, block in zip(sessions, blocks, strict=False) if block.side == side]
