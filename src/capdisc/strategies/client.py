"""Is capdisc itself the bottleneck? The limits, a run's client plan, its summary section.

- :func:`client_bound_reason` is the one judgement of a
  :class:`~capdisc.schema.ClientLoad` (a step's or a block's): client-bound when the
  busiest load process used more than :data:`MAX_CPU` of a core for most of the
  window (its median second), or when the event loop of one of them lagged more than
  :data:`MAX_LAG_P95_MS` at the 95th percentile. Such a step is never a server verdict.
- :func:`plan_client`, before a run: its planned peak against the calibrated ceiling
  of one process (``strategies.calibrate``; calibrating first when nothing is cached
  and the peak is high), how many ``--workers`` it needs, and ``--workers auto``.
- :func:`client_info`, after it: the ``client`` section of ``summary.json``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from capdisc.loadgen.contract import ProgressSink, WorkloadKind
from capdisc.schema import ClientCeiling, ClientInfo, ClientLoad, WorkerClock, WorkloadCeiling
from capdisc.strategies.client_limits import MAX_CPU, MAX_LAG_P95_MS, MIN_SECONDS, PLAN_SHARE

__all__ = [
    "ClientPlan",
    "Demand",
    "client_bound_reason",
    "client_info",
    "plan_client",
    "workers_needed",
]

# Deliberately low ceilings (a slow machine's), used only before any calibration to
# decide whether one is needed: a peak under half of these is safe anywhere.
GUESS: dict[str, WorkloadCeiling] = {
    kind: WorkloadCeiling(
        unit=unit, rate=rate, tasks_per_s=tasks, achieved=0.0, cpu=0.0, saturated=False
    )
    for kind, unit, rate, tasks in (
        ("batch", "req/s", 1000.0, 1000.0),
        ("stream", "chunks/s", 20000.0, 300.0),
        ("tools", "rounds/s", 1000.0, 330.0),
    )
}


def client_bound_reason(load: ClientLoad | None) -> str | None:
    """Why ``load`` shows capdisc at its own limit, with the figures; None when it does not."""
    if load is None or load.seconds < MIN_SECONDS:
        return None
    parts = []
    if load.cpu_p50 > MAX_CPU:
        parts.append(
            f"{load.busiest} used {load.cpu_p50:.0%} of a CPU core (median of {load.seconds} s; "
            f"limit {MAX_CPU:.0%})"
        )
    if load.lag_p95_ms > MAX_LAG_P95_MS:
        parts.append(
            f"{load.lagging}'s event loop lagged {load.lag_p95_ms:.0f} ms at p95 "
            f"(limit {MAX_LAG_P95_MS:.0f} ms)"
        )
    if not parts:
        return None
    return f"client-bound: {' and '.join(parts)}; capdisc, not the server, was the limit"


@dataclass(frozen=True)
class Demand:
    """The planned peak of a run: tasks per second, and units (requests, chunks, rounds) per task."""

    kind: WorkloadKind
    tasks_per_s: float
    per_task: float = 1.0

    @property
    def units_per_s(self) -> float:
        return self.tasks_per_s * self.per_task

    def share(self, ceiling: WorkloadCeiling) -> float:
        """The share of one process's ceiling this peak takes (the larger of units and tasks)."""
        shares = [self.units_per_s / ceiling.rate if ceiling.rate > 0 else math.inf]
        if ceiling.tasks_per_s > 0:
            shares.append(self.tasks_per_s / ceiling.tasks_per_s)
        return max(shares)


def workers_needed(share: float) -> int:
    """Worker processes for a peak of ``share`` x one process's ceiling (0: in-process)."""
    return 0 if share <= PLAN_SHARE else math.ceil(share / PLAN_SHARE - 1e-9)


def cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass
class ClientPlan:
    """What a run knows of its client before it starts."""

    demand: Demand
    cache: Path
    workers: int
    expect_workers: int = 0
    calibration: ClientCeiling | None = None
    needed: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def unit(self) -> str:
        return GUESS[self.demand.kind].unit

    @property
    def ceiling(self) -> WorkloadCeiling | None:
        if self.calibration is None:
            return None
        return self.calibration.workloads.get(self.demand.kind)

    @property
    def processes(self) -> int:
        """Processes generating the load: this one, or the workers."""
        return max(1, self.workers + self.expect_workers)

    def advice(self) -> str:
        """What to run instead, for a reason or a note."""
        if self.needed is None:
            return "calibrate this machine ('capdisc calibrate') and run with --workers auto"
        if self.needed <= self.processes:
            return "run with more --workers, or on a less busy machine"
        return f"run with --workers {self.needed}, or --workers auto"


def plan_client(
    demand: Demand,
    workers: int | Literal["auto"],
    expect_workers: int,
    cache: Path,
    progress: ProgressSink | None,
) -> ClientPlan:
    """The plan of a run's client; calibrates this workload first when that is needed.

    Needed when nothing is cached for this machine and version and the peak is above
    half of a slow machine's ceiling (:data:`GUESS`); below that one process is enough
    anywhere, and ``--workers auto`` starts none.
    """
    from capdisc.errors import OutputError
    from capdisc.strategies.calibrate import cache_path, load_ceiling, measure, save_ceiling

    kind = demand.kind
    calibration = load_ceiling(cache)
    notes: list[str] = []
    if (calibration is None or kind not in calibration.workloads) and demand.share(
        GUESS[kind]
    ) > PLAN_SHARE:
        if progress is not None:
            progress.message(
                f"client: calibrating what one capdisc process drives of {kind} on this "
                f"machine first (about 6 s; cached in {cache_path(cache)})"
            )
        calibration = measure([kind], cache, progress)
        try:
            save_ceiling(calibration, cache)
        except OutputError as exc:  # the run goes on with what was measured
            notes.append(f"client ceiling not cached: {exc.message}")
    plan = ClientPlan(demand, cache_path(cache), 0, expect_workers, calibration, notes=notes)
    ceiling = plan.ceiling
    share = demand.share(ceiling) if ceiling is not None else None
    # Without a calibration, the peak is below half of a slow machine's ceiling.
    plan.needed = workers_needed(share) if share is not None else None
    available = cores()
    if workers == "auto":
        wanted = (plan.needed or 0) - expect_workers
        plan.workers = min(max(wanted, 0), available)
        if wanted > available:
            plan.notes.append(
                f"the planned peak needs {plan.needed} load processes but this machine has "
                f"{available} cores: --workers auto starts {available}; add machines "
                "(--expect-workers)"
            )
    else:
        plan.workers = workers
    if ceiling is not None and share is not None:
        if progress is not None:
            needs = f"it needs --workers {plan.needed}" if plan.needed else "one is enough"
            pct = f"{share:.0%}" if share >= 0.01 else "<1%"
            running = f"{plan.processes} load process{'es' if plan.processes > 1 else ''}"
            progress.message(
                f"client: planned peak {demand.units_per_s:,.0f} {plan.unit} is {pct} of one "
                f"capdisc process's ceiling ({ceiling.rate:,.0f} {plan.unit}, cached in "
                f"{plan.cache}): {needs}; running {running}"
            )
        if plan.needed is not None and plan.needed > plan.processes and workers != "auto":
            plan.notes.append(
                f"the planned peak ({demand.units_per_s:,.0f} {plan.unit}) is {share:.0%} of one "
                f"capdisc process's ceiling and needs --workers {plan.needed}: where capdisc "
                "reaches its limit, the run is reported client-bound"
            )
    return plan


def client_info(
    plan: ClientPlan,
    loads: Iterable[tuple[str, ClientLoad | None, float]],
    bound: list[str],
    clocks: Iterable[WorkerClock] = (),
) -> ClientInfo:
    """The summary's ``client`` section from the plan and each step's (block's) load.

    ``loads`` holds (name, load, achieved units per second) per step or block.
    """
    ceiling = plan.ceiling
    items = list(loads)
    capacity = ceiling.rate * plan.processes if ceiling is not None else None
    peak = max((achieved for _, _, achieved in items), default=None)
    measured = [load for _, load, _ in items if load is not None]
    return ClientInfo(
        unit=plan.unit,
        ceiling=ceiling.rate if ceiling is not None else None,
        calibrated_at=plan.calibration.measured_at if plan.calibration else None,
        cache=str(plan.cache) if ceiling is not None else None,
        processes=plan.processes,
        workers_needed=plan.needed,
        planned_peak=round(plan.demand.units_per_s, 3),
        planned_share=round(plan.demand.units_per_s / capacity, 4) if capacity else None,
        peak=round(peak, 3) if peak is not None else None,
        peak_share=round(peak / capacity, 4) if capacity and peak is not None else None,
        cpu_max=max((load.cpu_p50 for load in measured), default=None),
        lag_p95_max_ms=max((load.lag_p95_ms for load in measured), default=None),
        limits={"cpu": MAX_CPU, "lag_p95_ms": MAX_LAG_P95_MS, "plan_share": PLAN_SHARE},
        bound=bound,
        clocks=list(clocks),
    )
