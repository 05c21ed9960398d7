"""A finished run read back from its files, and its pages rendered again (``capdisc report``).

:func:`load_run` reads what a run directory holds (``summary.json`` of any schema,
``requests.csv`` and ``client.csv`` when they exist); :func:`run_page` renders its
``report.html`` and :func:`two_runs_page` the page of two discoveries side by side.
Nothing here writes a file: :func:`capdisc.rundir.rebuild_report` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from capdisc.metrics.frame import read_client, read_records
from capdisc.schema import CompareSummary, DiscoverySummary, Summary, load_summary

__all__ = [
    "NotARun",
    "SavedRun",
    "load_run",
    "measured_rows",
    "result_page",
    "run_label",
    "run_page",
    "two_runs_page",
]


@dataclass(frozen=True)
class SavedRun:
    """What a finished run's directory holds, as the renderers take it."""

    path: Path
    summary: Summary
    records: pd.DataFrame
    client: pd.DataFrame | None


class NotARun(ValueError):
    """The directory holds no readable capdisc summary (the message says which file and why)."""


def load_run(run_dir: Path) -> SavedRun:
    """Read a run directory back; a missing ``requests.csv`` gives no records, not an error.

    Raises :class:`NotARun` when ``summary.json`` is missing or is not a capdisc summary.
    """
    from pydantic import ValidationError

    path = run_dir / "summary.json"
    if not path.is_file():
        raise NotARun(f"{run_dir} holds no summary.json")
    try:
        summary = load_summary(path)
    except (ValueError, ValidationError) as exc:
        raise NotARun(f"{path}: not a capdisc summary ({str(exc).splitlines()[0]})") from None
    records_path = run_dir / "requests.csv"
    if records_path.is_file():
        records = read_records(records_path)
    else:
        from capdisc.metrics.frame import records_frame

        records = records_frame([])
    if isinstance(summary, CompareSummary):
        records = measured_rows(summary, records)
    return SavedRun(run_dir, summary, records, read_client(run_dir / "client.csv"))


def measured_rows(summary: CompareSummary, records: pd.DataFrame) -> pd.DataFrame:
    """A comparison's rows as its page draws them: each version's measured tasks (in its
    blocks' windows), cut ones left out, as the run kept them in memory."""
    from capdisc.metrics.figures import measured_tasks
    from capdisc.metrics.frame import cut_mask

    frames = []
    for side, stats in (("a", summary.a), ("b", summary.b)):
        windows = [(int(w[0]), w[1], w[2]) for w in stats.windows]
        rows = measured_tasks(records, side, windows)
        frames.append(rows[~cut_mask(rows)].assign(version=side))
    return pd.concat(frames, ignore_index=True)


def run_page(run: SavedRun) -> str:
    """The run's ``report.html``: a discovery's or a comparison's page."""
    from capdisc.reports.html import render_compare_page, render_discovery_page

    if isinstance(run.summary, CompareSummary):
        return render_compare_page(run.summary, run.records, run.client)
    return render_discovery_page(run.summary, run.records, run.client)


def result_page(
    summary: Summary,
    records: pd.DataFrame,
    measured: Mapping[str, pd.DataFrame],
    client: pd.DataFrame | None,
) -> str:
    """A run's ``report.html`` as it ends, from its result (``rundir.write_run``).

    A discovery's page draws its records; a comparison's the measured rows of both
    versions (a saved version's come from its own run), beside the client's samples.
    """
    from capdisc.reports.html import render_compare_page, render_discovery_page

    if isinstance(summary, CompareSummary):
        frames = [frame for frame in measured.values() if not frame.empty]
        rows = pd.concat(frames, ignore_index=True) if frames else records
        return render_compare_page(summary, rows, client)
    return render_discovery_page(summary, records, client)


def run_label(path: Path, other: Path | None = None) -> str:
    """How a run is named beside another: its directory name (its path when both are alike)."""
    name = path.resolve().name
    if other is not None and other.resolve().name == name:
        return str(path)
    return name


def two_runs_page(a: SavedRun, b: SavedRun) -> str:
    """Two discoveries side by side (capacity of each, the difference, both curves)."""
    from capdisc.reports.html import render_discoveries_page

    runs: list[tuple[str, DiscoverySummary]] = []
    for run, other in ((a, b), (b, a)):
        if not isinstance(run.summary, DiscoverySummary):
            raise NotARun(f"{run.path} is a comparison: only two discoveries go side by side")
        runs.append((run_label(run.path, other.path), run.summary))
    return render_discoveries_page(runs)
