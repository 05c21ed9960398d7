"""``compare stream A B``: the same fixed streaming load on two versions, and a verdict.

Streaming connections make true capacity hard to reach, so this strategy holds
the load fixed (users, pacing interval, prompt, seed, temperature 0) and compares
request durations. Live versions run in alternating blocks (A B A B ...) so drift
of the machine or network hits both alike; each block's ramp-up (one interval
after its users spawned) is excluded. A version may also be a saved run
directory, whose measured rows are reused instead of run again.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from capdisc.errors import RunFailed, UsageError
from capdisc.loadgen.plan import ProgressSink, SessionResult, Step, Workload
from capdisc.metrics import compare_versions, measured_tasks, read_records, version_stats
from capdisc.profiles import Profile, load_profile, plain_host_profile
from capdisc.reports.summary import (
    CompareLoad,
    CompareSummary,
    StopReason,
    VersionStats,
    load_summary,
)
from capdisc.rundir import check_out_dir, create_out_dir
from capdisc.strategies.session import load_engine, open_target
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
    users: int
    interval_s: float
    duration_s: float
    temperature: float
    blocks: int
    failure_threshold: int
    out_dir: Path
    sequential: bool = False
    seed: int = 0
    fail_on_regression_pct: float | None = None
    stop_timeout_s: float = 5.0
    workers: int = 0
    expect_workers: int = 0


@dataclass
class CompareOutcome:
    """The summary, where the files are, and the exit code the verdict asks for."""

    summary: CompareSummary
    out_dir: Path
    exit_code: int = 0
    warnings: list[str] = field(default_factory=list)
    # Set when the run produced no result (exit 4); the outputs are written anyway.
    failure: RunFailed | None = None


def resolve_source(spec: str, side: Side, profiles_dir: Path | None) -> VersionSource:
    """A profile name or path, a base URL, or a saved run directory."""
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
        return VersionSource(side=side, label=spec, profile=plain_host_profile(spec))
    profile = load_profile(spec, profiles_dir)
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

    def abandon_step(self, step: Step, rows: object, stopped_at: float, why: str) -> None:
        assert step.window_start is not None
        self.window = (step.window_start, stopped_at)

    def describe(self) -> str:
        return f"{self.label} block {self.step.index}"


def _block_order(request: CompareRequest, live: list[Side]) -> list[tuple[Side, int]]:
    if request.sequential:
        return [(side, n) for side in live for n in range(1, request.blocks + 1)]
    return [(side, n) for n in range(1, request.blocks + 1) for side in live]


def _saved_rows(
    source: VersionSource, request: CompareRequest, warnings: list[str]
) -> tuple[Any, VersionStats | None]:
    assert source.saved_dir is not None
    summary = load_summary(source.saved_dir / "summary.json")
    assert isinstance(summary, CompareSummary)  # checked by resolve_source
    load = summary.load
    if (load.users, load.interval_s, load.temperature) != (
        request.users,
        request.interval_s,
        request.temperature,
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
    return rows, saved


def _append_rows(rows: Any, side: str, path: Path, warnings: list[str]) -> None:
    """Copy a saved version's measured rows into this run's requests.csv."""
    try:
        rows.assign(version=side).to_csv(path, mode="a", header=False, index=False)
    except OSError as exc:
        warnings.append(f"saved rows of {side.upper()} not copied to requests.csv: {exc.strerror}")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_compare(request: CompareRequest, progress: ProgressSink | None) -> CompareOutcome:
    """Run (or reuse) both versions, compare them and write every output."""
    check_out_dir(request.out_dir)
    sources = {"a": request.a, "b": request.b}
    live: list[Side] = [side for side in ("a", "b") if sources[side].profile is not None]
    warnings: list[str] = []
    sessions: dict[str, list[SessionResult]] = {"a": [], "b": []}
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
        from capdisc.loadgen.engine import (
            RunControl,
            ensure_file_limit,
            run_session,
            write_merged_report,
        )
        from capdisc.loadgen.recorder import RecordWriter

        for side in live:
            preflight(targets[side])
        out_dir = create_out_dir(request.out_dir)
        if live:
            limit = ensure_file_limit(request.users)
            if limit:
                warnings.append(limit)
        control = RunControl(
            failure_threshold=request.failure_threshold, stop_timeout=request.stop_timeout_s
        )
        handlers = control.install_signal_handlers()
        writer = RecordWriter(out_dir / "requests.csv")
        hold_s = request.duration_s / request.blocks
        try:
            for side, block in _block_order(request, live):
                workload = Workload(
                    kind="stream",
                    target=targets[side],
                    interval_s=request.interval_s,
                    temperature=request.temperature,
                    seed=request.seed,
                    version=side,
                )
                planner = HoldPlanner(
                    block,
                    request.users,
                    hold_s,
                    request.interval_s,
                    f"{side.upper()} ({sources[side].label})",
                )
                result = run_session(
                    workload,
                    planner,
                    writer=writer,
                    control=control,
                    progress=progress,
                    html_path=None,
                )
                sessions[side].append(result)
                if planner.window is not None:
                    windows[side].append((block, *planner.window))
                if result.stop_reason != "completed":
                    stop_reason = result.stop_reason
                    break
        finally:
            writer.close()
            for handler in handlers:
                handler.cancel()
        for side in live:
            write_merged_report(sessions[side], out_dir / f"report-{side}.html")
    finished = datetime.now(UTC).timestamp()
    return _finish(request, out_dir, sources, windows, stop_reason, started, finished, warnings)


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
    from capdisc.reports.writers import write_compare_outputs

    records = read_records(out_dir / "requests.csv")
    frames: dict[str, Any] = {}
    stats: dict[str, VersionStats] = {}
    for side in ("a", "b"):
        source = sources[side]
        if source.saved_dir is not None:
            rows, saved = _saved_rows(source, request, warnings)
            frames[side] = rows
            base = version_stats(rows, source.label, request.interval_s)
            stats[side] = base.model_copy(
                update={"run_dir": str(source.saved_dir), "windows": saved.windows if saved else []}
            )
            _append_rows(rows, side, out_dir / "requests.csv", warnings)
        else:
            rows = measured_tasks(records, side, windows[side])
            frames[side] = rows
            stats[side] = version_stats(rows, source.label, request.interval_s).model_copy(
                update={"windows": windows[side]}
            )
    diff, verdict = compare_versions(
        frames["a"], frames["b"], block_s=max(request.interval_s, 1.0), seed=request.seed
    )
    regression = bool(
        request.fail_on_regression_pct is not None
        and verdict == "b_slower"
        and diff.p50_pct is not None
        and diff.p50_pct > request.fail_on_regression_pct
    )
    summary = CompareSummary(
        started_at=_iso(started),
        finished_at=_iso(finished),
        stop_reason=stop_reason,
        load=CompareLoad(
            users=request.users,
            interval_s=request.interval_s,
            duration_s=request.duration_s,
            temperature=request.temperature,
            blocks=request.blocks,
            order="sequential" if request.sequential else "alternating",
        ),
        a=stats["a"],
        b=stats["b"],
        diff=diff,
        verdict=verdict,
        regression_limit_pct=request.fail_on_regression_pct,
        regression=regression,
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
        exit_code=1 if regression else 0,
        warnings=warnings,
        failure=failure,
    )
