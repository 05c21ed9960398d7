"""``compare stream A B``: the same fixed streaming load on two versions, and a verdict.

Streaming connections make true capacity hard to reach, so this strategy holds
the load fixed (users, pacing interval, prompt, seed, temperature 0) and compares
request durations. Live versions run in pairs of blocks, A B then B A (A B B A A B
B A for 4 pairs), so a drift of the machine or network hits both alike and cancels
in the pairs (``metrics.compare``); each block's ramp-up (one interval after its
users spawned) is excluded. A version may also be a saved run directory, whose
measured rows are reused instead of run again (then there are no pairs).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from capdisc.clients.prompts import PromptSource, prompt_source
from capdisc.errors import RunFailed, UsageError
from capdisc.loadgen.plan import ProgressSink, SessionResult, Step, Workload
from capdisc.metrics.compare import compare_versions, decide, gate, load_reasons
from capdisc.metrics.figures import measured_tasks, version_stats
from capdisc.metrics.frame import cut_mask, read_records
from capdisc.metrics.goodput import goodput
from capdisc.profiles import Profile, load_profile, plain_host_profile, with_target_overrides
from capdisc.rundir import append_records, check_out_dir, create_out_dir
from capdisc.schema import (
    CompareLoad,
    CompareSummary,
    StopReason,
    VersionStats,
    WorkerClock,
    load_summary,
)
from capdisc.settings import CompareSettings, TargetConfig, WorkloadSettings
from capdisc.strategies.session import load_engine, open_target
from capdisc.strategies.slo import slo_of
from capdisc.target import Target

__all__ = ["CompareOutcome", "CompareRequest", "VersionSource", "resolve_source", "run_compare"]

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


@dataclass
class CompareOutcome:
    """The summary, where the files are, and the exit code the verdict asks for."""

    summary: CompareSummary
    out_dir: Path
    exit_code: int = 0
    warnings: list[str] = field(default_factory=list)
    # Set when the run produced no result (exit 4); the outputs are written anyway.
    failure: RunFailed | None = None
    # Distributed: each block's worker clocks against the master's (its rows corrected).
    worker_clocks: list[WorkerClock] = field(default_factory=list)


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

    # The comparison reads its rows back from requests.csv at the end.
    needs_rows = False

    def __init__(
        self, block: int, users: int, hold_s: float, interval_s: float, label: str
    ) -> None:
        self.step = Step(index=block, users=users, hold_s=hold_s, settle_s=interval_s, phase="hold")
        self.label = label
        self.window: tuple[float, float] | None = None

    def first_step(self) -> Step:
        return self.step

    def next_step(self, finished: Step, rows: object) -> Step | None:
        assert finished.window_start is not None and finished.window_end is not None
        self.window = (finished.window_start, finished.window_end)
        return None

    def decided_early(self, step: Step, rows: object, remaining_s: float) -> bool:
        return False  # its window's requests are always awaited

    def abandon_step(self, step: Step, rows: object, stopped_at: float, why: str) -> None:
        assert step.window_start is not None
        self.window = (step.window_start, stopped_at)

    def describe(self) -> str:
        return f"{self.label} block {self.step.index}"


def _block_order(settings: CompareSettings, live: list[Side]) -> list[tuple[Side, int]]:
    """A B, B A, A B, ... (pair k is block k of each); or all of A, then all of B."""
    blocks = range(1, settings.blocks + 1)
    if settings.sequential or len(live) < 2:
        return [(side, n) for side in live for n in blocks]
    return [(side, n) for n in blocks for side in (("a", "b") if n % 2 else ("b", "a"))]


def _saved_rows(
    source: VersionSource, request: CompareRequest, warnings: list[str]
) -> tuple[Any, VersionStats, float]:
    """A saved side's measured rows, its saved figures and the rate it was offered."""
    assert source.saved_dir is not None
    summary = load_summary(source.saved_dir / "summary.json")
    assert isinstance(summary, CompareSummary)  # checked by resolve_source
    load = summary.load
    settings = request.settings
    if (load.users, load.interval_s, load.temperature) != (
        settings.users,
        settings.interval,
        settings.temperature,
    ):
        warnings.append(
            f"{source.side.upper()} was measured under another load ({load.users} users every "
            f"{load.interval_s:g}s, temperature {load.temperature:g}): the comparison is not like "
            "for like"
        )
    saved = summary.a if source.side == "a" else summary.b
    df = read_records(source.saved_dir / "requests.csv")
    windows = [(int(w[0]), w[1], w[2]) for w in saved.windows]
    rows = measured_tasks(df, source.side, windows)
    return rows, saved, load.users / load.interval_s


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_compare(request: CompareRequest, progress: ProgressSink | None) -> CompareOutcome:
    """Run (or reuse) both versions, compare them and write every output."""
    settings = request.settings
    prompts = request.prompts()  # a bad dataset is refused before anything starts
    check_out_dir(request.out_dir)
    sources = {"a": request.a, "b": request.b}
    live: list[Side] = [side for side in ("a", "b") if sources[side].profile is not None]
    sessions: dict[str, list[SessionResult]] = {"a": [], "b": []}
    clocks: list[WorkerClock] = []
    windows: dict[str, list[tuple[int, float, float]]] = {"a": [], "b": []}
    started = datetime.now(UTC).timestamp()
    stop_reason: StopReason = "duration"
    with ExitStack() as stack:
        targets: dict[str, Target] = {}
        for side in live:
            profile = sources[side].profile
            assert profile is not None
            targets[side] = stack.enter_context(open_target(profile))
        load_engine()
        from capdisc.clients.preflight import preflight
        from capdisc.loadgen.context import RunContext

        for side in live:
            preflight(targets[side], stream=True)
        out_dir = create_out_dir(request.out_dir)
        hold_s = settings.duration / settings.blocks
        with RunContext(
            out_dir,
            failure_threshold=settings.failure_threshold,
            users=settings.users if live else 0,
            progress=progress,
            stop_timeout=request.stop_timeout_s,
            workers=settings.workers,
            expect_workers=settings.expect_workers,
            master_bind=settings.master_bind,  # issue 16 hook: --master-bind
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
                )
                planner = HoldPlanner(
                    block,
                    settings.users,
                    hold_s,
                    settings.interval,
                    f"{side.upper()} ({sources[side].label})",
                )
                result = run.run(workload, planner)
                sessions[side].append(result)
                clocks += [
                    clock.model_copy(update={"block": f"{side}{block}"})
                    for clock in result.worker_clocks
                ]
                if planner.window is not None:
                    windows[side].append((block, *planner.window))
                if result.stop_reason is not None:
                    stop_reason = result.stop_reason
                    break
            finished = datetime.now(UTC).timestamp()
            run.close_records()
            for side in live:
                run.write_report(f"report-{side}.html", sessions[side])
            outcome = _finish(
                request, out_dir, sources, windows, stop_reason, started, finished, run.warnings
            )
            outcome.worker_clocks = clocks
            return outcome


def _measured_s(windows: list[tuple[int, float, float]]) -> float | None:
    """The measured time of a version: its windows added up."""
    total = sum(end - start for _, start, end in windows)
    return total if total > 0 else None


def _finish(
    request: CompareRequest,
    out_dir: Path,
    sources: dict[str, VersionSource],
    windows: dict[str, list[tuple[int, float, float]]],
    stop_reason: StopReason,
    started: float,
    finished: float,
    warnings: list[str],
) -> CompareOutcome:
    from capdisc.rundir import write_compare_outputs

    settings = request.settings
    records = read_records(out_dir / "requests.csv")
    frames: dict[str, Any] = {}
    stats: dict[str, VersionStats] = {}
    unequal: list[str] = []
    slo = slo_of(settings)
    for side in ("a", "b"):
        source = sources[side]
        offered = settings.users / settings.interval
        if source.saved_dir is not None:
            rows, saved, offered = _saved_rows(source, request, warnings)
            side_windows = [(int(w[0]), w[1], w[2]) for w in saved.windows]
            extra: dict[str, Any] = {"run_dir": str(source.saved_dir), "windows": saved.windows}
            append_records(rows.assign(version=side), out_dir / "requests.csv", warnings, side)
        else:
            rows = measured_tasks(records, side, windows[side])
            side_windows = windows[side]
            extra = {"windows": side_windows}
        # A request cut in flight by the stop (Ctrl+C, the threshold) is no answer of
        # the target: counted, out of the figures, never a failure.
        cut = cut_mask(rows)
        rows = rows[~cut]
        extra["censored"] = int(cut.sum())
        if extra["censored"]:
            warnings.append(
                f"{side.upper()}: {extra['censored']} requests started in a measured block "
                "were cut in flight by the stop: counted as censored, not in the figures"
            )
        frames[side] = rows
        measured = _measured_s(side_windows)
        base = version_stats(rows, source.label, settings.interval, measured)
        achieved = base.requests / measured if measured else None
        extra.update(offered_rps=offered, achieved_rps=achieved)
        if slo is not None:
            extra["goodput"] = goodput(rows, slo, measured)
        stats[side] = base.model_copy(update=extra)
        unequal += load_reasons(side.upper(), offered, achieved, base.pacing)
    paired = not settings.sequential and all(s.profile is not None for s in sources.values())
    if not paired:
        warnings.append(
            "A and B were not measured in alternating pairs (--sequential or a saved run): "
            "the interval compares their blocks as two groups and cannot cancel a drift "
            "between them"
        )
    diff = compare_versions(
        frames["a"],
        frames["b"],
        design="paired" if paired else "unpaired",
        margin_pct=settings.margin,
    )
    verdict, reason = decide(diff, unequal)
    limit = settings.fail_on_regression
    outcome_gate, exit_code = gate(diff, unequal, limit) if limit is not None else (None, 0)
    summary = CompareSummary(
        started_at=_iso(started),
        finished_at=_iso(finished),
        stop_reason=stop_reason,
        load=CompareLoad(
            users=settings.users,
            interval_s=settings.interval,
            duration_s=settings.duration,
            temperature=settings.temperature,
            blocks=settings.blocks,
            order="abba" if paired else "sequential",
        ),
        slo=slo,
        a=stats["a"],
        b=stats["b"],
        diff=diff,
        verdict=verdict,
        verdict_reason=reason,
        load_reasons=unequal,
        regression_limit_pct=limit,
        regression=outcome_gate == "regression",
        gate=outcome_gate,
    )
    summary = write_compare_outputs(summary, frames["a"], frames["b"], out_dir, warnings)
    failure = None
    if (
        stats["a"].requests - stats["a"].failures == 0
        or stats["b"].requests - stats["b"].failures == 0
    ):
        failure = RunFailed(
            f"a version has no successful measured request ({stop_reason}); raw records are in {out_dir}"
        )
    return CompareOutcome(
        summary=summary,
        out_dir=out_dir,
        exit_code=exit_code,
        warnings=warnings,
        failure=failure,
    )
