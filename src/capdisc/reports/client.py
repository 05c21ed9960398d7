"""capdisc's own side of a run: the calibrated ceiling, and the load it put on itself."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from capdisc.schema import ClientCeiling, ClientInfo

__all__ = ["client_line", "render_ceiling"]


def _share(value: float | None) -> str:
    if value is None:
        return ""
    return f" ({value:.0%} of the ceiling)" if value >= 0.01 else " (<1% of the ceiling)"


def client_line(info: ClientInfo) -> str:
    """``Client: 1 process, ceiling 9,169 req/s each; planned peak 60 req/s (1% ...); ...``."""
    unit = info.unit
    processes = f"{info.processes} load process{'es' if info.processes != 1 else ''}"
    if info.ceiling is None:
        head = f"Client: {processes}, not calibrated (capdisc calibrate measures this machine)"
    else:
        head = f"Client: {processes}, ceiling {info.ceiling:,.0f} {unit} each"
    parts = [f"planned peak {info.planned_peak:,.0f} {unit}{_share(info.planned_share)}"]
    if info.peak is not None:
        parts.append(f"achieved peak {info.peak:,.0f} {unit}{_share(info.peak_share)}")
    if info.cpu_max is not None and info.lag_p95_max_ms is not None:
        parts.append(
            f"busiest {info.cpu_max:.0%} of a core, loop lag p95 up to {info.lag_p95_max_ms:.0f} ms"
        )
    line = f"{head}; {', '.join(parts)}"
    if info.workers_needed:
        line += f"; needs --workers {info.workers_needed}"
    if info.bound:
        line += f"; client-bound: {', '.join(info.bound)}"
    return line


def render_ceiling(ceiling: ClientCeiling, path: Path, console: Console) -> None:
    """The calibration as a table, and where it is cached."""
    machine = ceiling.machine
    table = Table(
        title=Text(
            f"client ceiling of one capdisc process on {machine.get('host', '?')} "
            f"({machine.get('cores', '?')} cores, {machine.get('cpu', '?')}), capdisc "
            f"{ceiling.capdisc}, measured {ceiling.measured_at} in {ceiling.duration_s:g} s"
        ),
        title_justify="left",
    )
    for header in ("workload", "ceiling", "tasks/s", "drove", "CPU", "how"):
        table.add_column(header, justify="left" if header in ("workload", "how") else "right")
    for kind, entry in ceiling.workloads.items():
        table.add_row(
            kind,
            f"{entry.rate:,.0f} {entry.unit}",
            f"{entry.tasks_per_s:,.0f}",
            f"{entry.achieved:,.0f} {entry.unit}",
            f"{entry.cpu:.0%}",
            "at its limit" if entry.saturated else "scaled to one whole core",
        )
    console.print(table)
    console.print(
        f"Cached in {path}; runs reuse it until capdisc or this machine changes "
        "('capdisc calibrate' measures again).",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
