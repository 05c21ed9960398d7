"""Write a run's result files: ``summary.json``, ``steps.csv`` and the plots.

Each file is written on its own: a plot that fails (or a disk that fills up)
costs that file and a warning, never the others. ``summary.json`` is written
last, atomically, listing the files that exist.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pandas as pd

from capdisc.errors import OutputError
from capdisc.reports.summary import CompareSummary, DiscoverySummary, Summary, dump_summary

__all__ = [
    "STEP_COLUMNS",
    "write_compare_outputs",
    "write_discovery_outputs",
    "write_summary",
    "write_text",
]

STEP_COLUMNS = (
    "index",
    "phase",
    "users",
    "offered_rps",
    "achieved_rps",
    "requests",
    "failures",
    "failure_rate",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "avg_ms",
    "late_share",
    "slip_p95_ms",
    "duration_cv",
    "round_p50_ms",
    "passed",
    "reasons",
)


def write_text(path: Path, text: str) -> None:
    """Write ``text`` atomically (temporary file, then rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def write_summary(summary: Summary, out_dir: Path) -> None:
    """Write ``summary.json``; a failure here is an ``OutputError`` (it is the result)."""
    try:
        write_text(out_dir / "summary.json", dump_summary(summary))
    except OSError as exc:
        raise OutputError(f"cannot write {out_dir / 'summary.json'}: {exc.strerror}") from None


def _write_steps(summary: DiscoverySummary, path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(STEP_COLUMNS)
        for s in summary.steps:
            writer.writerow(
                (
                    s.index,
                    s.phase,
                    s.users,
                    round(s.offered_rps, 4),
                    round(s.achieved_rps, 4),
                    s.requests,
                    s.failures,
                    round(s.failure_rate, 4),
                    _num(s.p50_ms),
                    _num(s.p95_ms),
                    _num(s.p99_ms),
                    _num(s.avg_ms),
                    round(s.pacing.late_share, 4),
                    round(s.pacing.slip_p95_ms, 1),
                    _num(s.duration_cv),
                    " ".join(f"{v:.1f}" for v in s.round_p50_ms),
                    int(s.passed),
                    "; ".join(s.reasons),
                )
            )


def _num(value: float | None) -> str | float:
    return "" if value is None else round(value, 3)


def _existing(out_dir: Path, names: list[str]) -> dict[str, str]:
    """Files that exist, keyed by a name without dots or dashes (``report_html``)."""
    return {n.replace(".", "_").replace("-", "_"): n for n in names if (out_dir / n).is_file()}


def write_discovery_outputs(
    summary: DiscoverySummary, out_dir: Path, warnings: list[str]
) -> DiscoverySummary:
    """Write steps.csv, capacity.png and summary.json; return the summary with its files."""
    from capdisc.reports.plots import plot_capacity

    try:
        _write_steps(summary, out_dir / "steps.csv")
    except OSError as exc:
        warnings.append(f"steps.csv not written: {exc.strerror}")
    if summary.steps:
        try:
            plot_capacity(summary, out_dir / "capacity.png")
        except Exception as exc:  # a plot must never cost the result
            warnings.append(f"capacity.png not written: {exc}")
    files = _existing(out_dir, ["requests.csv", "steps.csv", "report.html", "capacity.png"])
    files["summary"] = "summary.json"
    summary = summary.model_copy(update={"files": files, "warnings": list(warnings)})
    write_summary(summary, out_dir)
    return summary


def write_compare_outputs(
    summary: CompareSummary,
    a_rows: pd.DataFrame,
    b_rows: pd.DataFrame,
    out_dir: Path,
    warnings: list[str],
) -> CompareSummary:
    """Write compare.png, compare.md and summary.json; return the summary with its files."""
    from capdisc.reports.markdown import compare_markdown
    from capdisc.reports.plots import plot_compare

    try:
        plot_compare(a_rows, b_rows, summary.a.label, summary.b.label, out_dir / "compare.png")
    except Exception as exc:  # a plot must never cost the result
        warnings.append(f"compare.png not written: {exc}")
    try:
        write_text(out_dir / "compare.md", compare_markdown(summary))
    except OSError as exc:
        warnings.append(f"compare.md not written: {exc.strerror}")
    names = ["requests.csv", "report-a.html", "report-b.html", "compare.png", "compare.md"]
    files = _existing(out_dir, names)
    files["summary"] = "summary.json"
    summary = summary.model_copy(update={"files": files, "warnings": list(warnings)})
    write_summary(summary, out_dir)
    return summary
