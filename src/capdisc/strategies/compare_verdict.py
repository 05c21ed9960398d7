"""A comparison's result from what its run kept: figures, checks, verdict and gate, once.

:func:`assess` reads the rows the run kept in memory (never ``requests.csv`` back),
the blocks as the engine closed them, and the plan of the client, and builds the final
:class:`~capdisc.schema.CompareSummary`: each version's figures and blocks, the client
check of each block (a client-bound block gives no verdict), the queue tests of each
block, a version whose failures stopped the run (broken), every metric's verdict and,
from them, the overall verdict and the gate. Nothing here writes a file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from capdisc.errors import RunFailed
from capdisc.loadgen.contract import Step
from capdisc.metrics.blocks import block_stats, queue_reasons
from capdisc.metrics.compare import compare_versions, failure_difference, load_reasons
from capdisc.metrics.decision import Checks, client_bound_text, decide, gate
from capdisc.metrics.figures import measured_tasks, version_stats
from capdisc.metrics.frame import answered, cut_mask, read_records, records_frame
from capdisc.metrics.goodput import goodput
from capdisc.records import RequestRecord
from capdisc.schema import (
    ClientLoad,
    CompareLoad,
    CompareSummary,
    StopReason,
    VersionStats,
    WorkerClock,
    load_summary,
)
from capdisc.servermetrics.figures import combine
from capdisc.settings import CompareSettings
from capdisc.strategies.client import ClientPlan, client_bound_reason, client_info
from capdisc.strategies.preparation import server_checks
from capdisc.strategies.slo import slo_of
from capdisc.verdicts import BlockStats

__all__ = ["Assessed", "Block", "Run", "SavedRun", "assess", "load_saved"]

Side = Literal["a", "b"]


@dataclass
class Block:
    """One block as run: its side and number, measured window, closed step and cut."""

    side: str
    block: int
    window: tuple[float, float] | None
    closed: Step | None
    cut: bool
    clocks: list[WorkerClock] = field(default_factory=list)


@dataclass(frozen=True)
class SavedRun:
    """A version reused from a saved run directory: its summary and measured rows."""

    summary: CompareSummary
    # Its measured task rows (a records frame, ``version`` set to this side).
    rows: Any


def load_saved(side: str, saved_dir: Path) -> SavedRun:
    """Read a saved comparison's summary and ``side``'s measured rows, before any load."""
    summary = load_summary(saved_dir / "summary.json")
    assert isinstance(summary, CompareSummary)  # checked by resolve_source
    saved = summary.a if side == "a" else summary.b
    windows = [(int(w[0]), w[1], w[2]) for w in saved.windows]
    rows = measured_tasks(read_records(saved_dir / "requests.csv"), side, windows)
    return SavedRun(summary, rows.assign(version=side))


@dataclass
class Run:
    """What a comparison's run hands to :func:`assess`."""

    settings: CompareSettings
    # Each side's label, and its saved run directory (None: measured live).
    sources: dict[str, tuple[str, Path | None]]
    # The saved sides, as :func:`load_saved` read them.
    saved: dict[str, SavedRun]
    blocks: list[Block]
    rows: list[RequestRecord]
    plan: ClientPlan
    stop_reason: StopReason
    stop_detail: str
    broken: str | None
    started_at: str
    finished_at: str
    warnings: list[str]
    out_dir: Path
    # The scrapers of the servers' own metrics (loadgen.scraper), one per page read.
    scrapers: list[Any] = field(default_factory=list)


@dataclass
class Assessed:
    """The final summary, each version's measured rows (for the plots), the exit code."""

    summary: CompareSummary
    frames: dict[str, Any]  # each version's measured rows (a records frame)
    records: Any  # every row the run measured live (a records frame)
    exit_code: int = 0
    failure: RunFailed | None = None


@dataclass
class _Side:
    rows: Any  # measured task rows (a records frame), cut ones left out
    stats: VersionStats
    partial: list[int]
    unequal: list[str]


def assess(run: Run) -> Assessed:
    """Every figure, check and verdict of the comparison, from the run's kept rows."""
    settings = run.settings
    records = records_frame(run.rows)
    sides: dict[str, _Side] = {}
    loads: list[tuple[str, ClientLoad | None, float]] = []
    bound: dict[str, str] = {}  # client-bound block -> why
    for side in ("a", "b"):
        label, saved_dir = run.sources[side]
        if saved_dir is not None:
            sides[side] = _saved_side(side, label, saved_dir, run.saved[side], run)
        else:
            sides[side] = _live_side(side, label, records, run, loads, bound)
    paired = not settings.sequential and all(d is None for _, d in run.sources.values())
    if not paired:
        run.warnings.append(
            "A and B were not measured in alternating pairs (--sequential or a saved run): "
            "the interval compares their blocks as two groups and cannot cancel a drift "
            "between them"
        )
    not_compared = _not_compared(run)
    diff = compare_versions(
        sides["a"].rows,
        sides["b"].rows,
        design="paired" if paired else "unpaired",
        margin_pct=settings.margin,
        failure_margin_pts=settings.failure_margin,
        judged=[name for name, _ in settings.judged_with_limits()],
        gate_limits=settings.gate_limits(),
        partial_a=sides["a"].partial,
        partial_b=sides["b"].partial,
        not_compared=not_compared,
    )
    queues = {side: queue_reasons(side, sides[side].stats.blocks) for side in ("a", "b")}
    overloaded: list[Side] = [s for s in ("a", "b") if queues[s] is not None]
    broken, broken_detail = _broken(run, records, sides)
    checks = Checks(
        unequal_load=[*sides["a"].unequal, *sides["b"].unequal],
        overloaded=overloaded,
        overload_reasons=[r for r in queues.values() if r is not None],
        queue_free=[
            s for s in ("a", "b") if not any(b.overload == "fail" for b in sides[s].stats.blocks)
        ],
        broken=broken,
        broken_detail=broken_detail,
        client_bound=list(bound),
    )
    verdict, reason, decided_by = decide(diff, checks)
    gated = settings.gate_limits() is not None
    outcome, exit_code, gate_reason = None, 0, ""
    if gated:
        outcome, exit_code, gate_reason = gate(diff, checks)
    for reason_line in _client_notes(bound, run):
        if reason_line not in run.warnings:
            run.warnings.append(reason_line)
    servers, notes = server_checks(records, run.scrapers)
    run.warnings.extend(n for n in notes if n not in run.warnings)
    info = client_info(run.plan, loads, list(bound), [c for b in run.blocks for c in b.clocks])
    blocks = {name: load for name, load, _ in loads if load is not None}
    summary = CompareSummary(
        started_at=run.started_at,
        finished_at=run.finished_at,
        stop_reason=run.stop_reason,
        stop_detail=run.stop_detail,
        load=CompareLoad(
            users=settings.users,
            interval_s=settings.interval,
            duration_s=settings.duration,
            temperature=settings.temperature,
            blocks=settings.blocks,
            order="abba" if paired else "sequential",
        ),
        slo=slo_of(settings),
        a=sides["a"].stats,
        b=sides["b"].stats,
        diff=diff,
        verdict=verdict,
        verdict_reason=reason,
        load_reasons=[*checks.unequal_load, *([client_bound_text(list(bound))] if bound else [])],
        regression_limit_pct=settings.fail_on_regression,
        regression=outcome in ("regression", "broken"),
        gate=outcome,
        gate_reason=gate_reason,
        decided_by=decided_by,
        broken=broken,
        overloaded=overloaded,
        client=info.model_copy(update={"blocks": blocks}),
        servers=servers,
        warnings=list(run.warnings),
    )
    # No result: a version measured nothing, or neither answered once (one that fails
    # every request beside one that answers is a verdict: failures decide first).
    stats = (sides["a"].stats, sides["b"].stats)
    unmeasured = any(v.requests == 0 for v in stats)
    unanswered = all(v.requests == v.failures for v in stats)
    failure = None
    if broken is None and (unmeasured or unanswered):
        failure = RunFailed(
            f"{'a version has no measured request' if unmeasured else 'no version answered once'} "
            f"({run.stop_reason}); raw records are in {run.out_dir}"
        )
    frames = {side: sides[side].rows for side in ("a", "b")}
    return Assessed(summary, frames, records, exit_code, failure)


def _censor(side: str, rows: Any, warnings: list[str]) -> tuple[Any, int]:
    """A request cut in flight by the stop (Ctrl+C, the threshold) is no answer of the
    target: counted, out of the figures, never a failure."""
    cut = cut_mask(rows)
    censored = int(cut.sum())
    if censored:
        warnings.append(
            f"{side.upper()}: {censored} requests started in a measured block were cut in "
            "flight by the stop: counted as censored, not in the figures"
        )
    return rows[~cut], censored


def _live_side(
    side: str,
    label: str,
    records: Any,
    run: Run,
    loads: list[tuple[str, ClientLoad | None, float]],
    bound: dict[str, str],
) -> _Side:
    settings = run.settings
    mine = [b for b in run.blocks if b.side == side and b.window is not None]
    windows = [(b.block, *b.window) for b in mine if b.window is not None]
    measured = measured_tasks(records, side, windows)
    blocks: list[BlockStats] = []
    for block in mine:
        assert block.window is not None
        start, end = block.window
        closed = block.closed
        load = closed.client if closed is not None else None
        name = f"{side}{block.block}"
        why = client_bound_reason(load)
        if why is not None:
            bound[name] = why
        figures = block_stats(
            measured,
            block=block.block,
            start=start,
            end=end,
            users=settings.users,
            interval_s=settings.interval,
            in_flight_at_start=closed.in_flight_at_start if closed is not None else None,
            in_flight_at_end=closed.in_flight_at_end if closed is not None else None,
            cut=block.cut,
            client_bound=why is not None,
        )
        if closed is not None and closed.server is not None:
            figures = figures.model_copy(update={"server": closed.server})
        blocks.append(figures)
        loads.append((name, load, figures.chunks / max(end - start, 1e-9)))
    rows, censored = _censor(side, measured, run.warnings)
    measured_s = sum(end - start for _, start, end in windows) or None
    offered = settings.users / settings.interval
    stats = _version_stats(rows, label, settings, measured_s)
    achieved = stats.requests / measured_s if measured_s else None
    stats = stats.model_copy(
        update={
            "windows": windows,
            "censored": censored,
            "offered_rps": offered,
            "achieved_rps": achieved,
            "blocks": blocks,
            "server": combine([b.server for b in blocks]),
        }
    )
    unequal = load_reasons(side.upper(), offered, achieved, stats.pacing)
    return _Side(rows, stats, [b.block for b in mine if b.cut], unequal)


def _version_stats(
    rows: Any, label: str, settings: CompareSettings, measured_s: float | None
) -> VersionStats:
    stats = version_stats(rows, label, settings.interval, measured_s)
    slo = slo_of(settings)
    if slo is not None:
        stats = stats.model_copy(update={"goodput": goodput(rows, slo, measured_s)})
    return stats


def _saved_side(side: str, label: str, saved_dir: Path, saved_run: SavedRun, run: Run) -> _Side:
    """A saved side: its measured rows and saved figures, checked against this load."""
    settings = run.settings
    summary = saved_run.summary
    load = summary.load
    if (load.users, load.interval_s, load.temperature) != (
        settings.users,
        settings.interval,
        settings.temperature,
    ):
        run.warnings.append(
            f"{side.upper()} was measured under another load ({load.users} users every "
            f"{load.interval_s:g}s, temperature {load.temperature:g}): the comparison is not like "
            "for like"
        )
    saved = summary.a if side == "a" else summary.b
    windows = [(int(w[0]), w[1], w[2]) for w in saved.windows]
    rows, censored = _censor(side, saved_run.rows, run.warnings)
    measured_s = sum(end - start for _, start, end in windows) or None
    stats = _version_stats(rows, label, settings, measured_s)
    offered = load.users / load.interval_s
    achieved = stats.requests / measured_s if measured_s else None
    stats = stats.model_copy(
        update={
            "run_dir": str(saved_dir),
            "windows": saved.windows,
            "censored": censored,
            "offered_rps": offered,
            "achieved_rps": achieved,
            "blocks": saved.blocks,
            "server": saved.server,
        }
    )
    unequal = load_reasons(side.upper(), offered, achieved, stats.pacing)
    return _Side(rows, stats, [b.block for b in saved.blocks if b.cut], unequal)


def _not_compared(run: Run) -> dict[str, str]:
    """Metrics a saved run cannot be compared on: a schema-1 run's TTFT was the first byte."""
    for side, (_, saved_dir) in run.sources.items():
        if saved_dir is None or not _first_byte_ttft(saved_dir):
            continue
        run.warnings.append(
            f"{side.upper()} ({saved_dir}) was saved before TTFT meant the first token (its "
            "ttft_ms is the first byte of the body): TTFT is not compared"
        )
        note = "not compared: the saved run's TTFT is the first byte"
        return {"ttft_p50": note, "ttft_p95": note}
    return {}


def _first_byte_ttft(saved_dir: Path) -> bool:
    try:
        with (saved_dir / "requests.csv").open(encoding="utf-8") as handle:
            header = handle.readline()
    except OSError:
        return False
    return "ttfb_ms" not in header.split(",")


def _broken(run: Run, records: Any, sides: dict[str, _Side]) -> tuple[Side | None, str]:
    """The version whose failures stopped the run, when it fails more than the other
    beyond the failure margin (or the other has not answered at all), and how."""
    if run.stop_reason != "failure_threshold" or run.broken not in ("a", "b"):
        return None, ""
    who: Side = "b" if run.broken == "b" else "a"
    # Every answer of the run counts (ramp-ups too); a saved side counts what it measured.
    rows = {
        side: sides[side].rows if run.sources[side][1] is not None else answered(records, side)
        for side in ("a", "b")
    }
    counts = failure_difference(rows["a"], rows["b"])
    mine = (
        (counts.failed_a, counts.answered_a) if who == "a" else (counts.failed_b, counts.answered_b)
    )
    theirs = (
        (counts.failed_b, counts.answered_b) if who == "a" else (counts.failed_a, counts.answered_a)
    )
    other = "A" if who == "b" else "B"
    detail = (
        f"{run.stop_detail}; over the run {who.upper()} failed {mine[0]} of its {mine[1]} requests"
    )
    if theirs[1] == 0:
        return who, detail + f", {other} had answered none yet"
    if counts.ci95_pts is None:
        return None, ""
    lo, hi = counts.ci95_pts
    margin = run.settings.failure_margin
    if not (lo > margin if who == "b" else hi < -margin):
        return None, ""  # both fail alike: the metrics decide
    return who, detail + f", {other} {theirs[0]} of its {theirs[1]}"


def _client_notes(bound: dict[str, str], run: Run) -> list[str]:
    return list(run.plan.notes) + [
        f"block {name.upper()} was {why}: the comparison measured capdisc as much as the "
        f"servers, treat its verdict as inconclusive; {run.plan.advice()}"
        for name, why in bound.items()
    ]
