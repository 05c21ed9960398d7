"""The run directory: the one module that writes a run's files.

``check_out_dir`` refuses a directory that cannot be written (or a nearly full disk)
before the target sees a single request; ``create_out_dir`` makes it only once
preflight passed, so a failed preflight leaves nothing behind. Then
:class:`RecordWriter` appends ``requests.csv`` as the run goes (flushed every
second, so a crash loses at most the last second), and once the strategy's
:class:`~capdisc.results.RunResult` is final, :func:`write_run` writes the result
files from it, each once: Locust's pages, ``steps.csv``, the plots, ``compare.md``
and, last and atomically, ``summary.json`` listing the files that exist. Each file is
written on its own: a plot that fails (or a disk that fills up) costs that file and a
warning, never the others.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from capdisc.errors import OutputError
from capdisc.records import RECORD_COLUMNS
from capdisc.results import RunResult
from capdisc.schema import CompareSummary, DiscoverySummary, StepResult, Summary, dump_summary

__all__ = [
    "STEP_COLUMNS",
    "RecordWriter",
    "check_out_dir",
    "create_out_dir",
    "default_out_dir",
    "rebuild_report",
    "utc_now_iso",
    "write_run",
    "write_summary",
    "write_text",
    "write_two_runs",
]

_MIN_FREE_BYTES = 20 * 1024 * 1024


def utc_now_iso() -> str:
    """The current time as an ISO 8601 UTC string (seconds)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def default_out_dir(runs_dir: Path, command: str, profile: str) -> Path:
    """``runs/<UTC timestamp>-<command>-<profile>``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in profile) or "custom"
    return runs_dir / f"{stamp}-{command}-{safe}"


def check_out_dir(path: Path) -> None:
    """Raise ``OutputError`` unless ``path`` can be created and written with room to spare."""
    if path.exists():
        if not path.is_dir():
            raise OutputError(f"--out {path}: exists and is not a directory")
        if any(path.iterdir()):
            raise OutputError(f"--out {path}: directory is not empty (choose a new one)")
    ancestor = path
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputError(f"--out {path}: {ancestor} is not writable")
    free = shutil.disk_usage(ancestor).free
    if free < _MIN_FREE_BYTES:
        raise OutputError(
            f"--out {path}: only {free // 1024} KiB free on that disk (need at least 20 MiB)"
        )


def create_out_dir(path: Path) -> Path:
    """Create the run directory (parents included)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"--out {path}: cannot create: {exc.strerror}") from None
    return path


class RecordWriter:
    """Append-only CSV of raw records with a bounded flush delay."""

    def __init__(
        self,
        path: Path,
        *,
        flush_every_s: float = 1.0,
        append: bool = False,
        columns: Sequence[str] = RECORD_COLUMNS,
    ) -> None:
        self.path = path
        self.rows = 0
        self.error: OSError | None = None
        self._flush_every_s = flush_every_s
        self._last_flush = time.monotonic()
        exists = append and path.exists() and path.stat().st_size > 0
        self._file: IO[str] | None = path.open("a" if append else "w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._file)
        if not exists:
            self._csv.writerow(columns)

    def write(self, row: Sequence[object]) -> None:
        """Append one row; flush when the last flush is older than the flush delay."""
        if self._file is None or self.error is not None:
            return
        try:
            self._csv.writerow(row)
            self.rows += 1
            now = time.monotonic()
            if now - self._last_flush >= self._flush_every_s:
                self._file.flush()
                self._last_flush = now
        except OSError as exc:
            self.error = exc

    def flush(self) -> None:
        """Push buffered rows to the operating system."""
        if self._file is None or self.error is not None:
            return
        try:
            self._file.flush()
            self._last_flush = time.monotonic()
        except OSError as exc:
            self.error = exc

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._file is None

    def close(self) -> None:
        """Flush and close; safe to call twice."""
        if self._file is None:
            return
        self.flush()
        try:
            self._file.close()
        except OSError as exc:
            self.error = self.error or exc
        self._file = None


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
    "ttft_p50_ms",
    "ttft_p95_ms",
    "tpot_p50_ms",
    "tpot_p95_ms",
    "itl_p50_ms",
    "output_tokens_per_s",
    "goodput_pct",
    "good_rps",
    "late_share",
    "slip_p95_ms",
    "new_connection_share",
    "reconnects",
    "duration_cv",
    "round_p50_ms",
    "client_cpu_p50",
    "client_lag_p95_ms",
    "client_bound",
    "server_running_mean",
    "server_running_max",
    "server_waiting_mean",
    "server_waiting_max",
    "server_kv_cache_max",
    "server_tokens_per_s",
    "server_preemptions",
    "server_prefix_hit_rate",
    "verdict",
    "extensions",
    "measured_s",
    "started",
    "censored",
    "in_flight_start",
    "in_flight_end",
    "trend_ms_per_s",
    "trend_low_ms_per_s",
    "trend_high_ms_per_s",
    "backlog_growth",
    "deficit",
    "passed",
    "reasons",
    # Sample sizes: the successes p50/p95/p99 (and ttft/tpot) are over, and the requests
    # an SLO percentile is over (every one started, failures ranked slowest), with its
    # 95% bounds and verdict (issue 24).
    "latency_n",
    "slo_n",
    "slo_ttft_ms",
    "slo_ttft_low_ms",
    "slo_ttft_high_ms",
    "slo_tpot_ms",
    "slo_tpot_low_ms",
    "slo_tpot_high_ms",
    "slo_e2e_ms",
    "slo_e2e_low_ms",
    "slo_e2e_high_ms",
    "slo_verdict",
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
        writer = csv.DictWriter(handle, STEP_COLUMNS)
        writer.writeheader()
        for step in summary.steps:
            writer.writerow(_step_row(step))


def _step_row(s: StepResult) -> dict[str, object]:
    """One line of ``steps.csv`` (its columns are :data:`STEP_COLUMNS`, documented in the README)."""
    good, tests, server = s.goodput, s.tests, s.server
    return {
        "index": s.index,
        "phase": s.phase,
        "users": s.users,
        "offered_rps": round(s.offered_rps, 4),
        "achieved_rps": round(s.achieved_rps, 4),
        "requests": s.requests,
        "failures": s.failures,
        "failure_rate": round(s.failure_rate, 4),
        "p50_ms": _num(s.p50_ms),
        "p95_ms": _num(s.p95_ms),
        "p99_ms": _num(s.p99_ms),
        "avg_ms": _num(s.avg_ms),
        "ttft_p50_ms": _num(s.tokens.ttft.p50_ms),
        "ttft_p95_ms": _num(s.tokens.ttft.p95_ms),
        "tpot_p50_ms": _num(s.tokens.tpot.p50_ms),
        "tpot_p95_ms": _num(s.tokens.tpot.p95_ms),
        "itl_p50_ms": _num(s.tokens.itl.p50_ms),
        "output_tokens_per_s": _num(s.tokens.output_tokens_per_s),
        "goodput_pct": _num(good.pct if good else None),
        "good_rps": _num(good.rps if good else None),
        "late_share": round(s.pacing.late_share, 4),
        "slip_p95_ms": round(s.pacing.slip_p95_ms, 1),
        "new_connection_share": round(s.connections.new_share, 4),
        "reconnects": s.connections.reconnects,
        "duration_cv": _num(s.duration_cv),
        "round_p50_ms": " ".join(f"{v:.1f}" for v in s.round_p50_ms),
        "client_cpu_p50": _num(s.client.cpu_p50 if s.client else None),
        "client_lag_p95_ms": _num(s.client.lag_p95_ms if s.client else None),
        "client_bound": int(s.client_bound),
        "server_running_mean": _num(server.running_mean if server else None),
        "server_running_max": _num(server.running_max if server else None),
        "server_waiting_mean": _num(server.waiting_mean if server else None),
        "server_waiting_max": _num(server.waiting_max if server else None),
        "server_kv_cache_max": _num(server.kv_cache_max if server else None),
        "server_tokens_per_s": _num(server.tokens_per_s if server else None),
        "server_preemptions": _num(server.preemptions if server else None),
        "server_prefix_hit_rate": _num(server.prefix_cache_hit_rate if server else None),
        "verdict": s.verdict or ("pass" if s.passed else "fail"),
        "extensions": s.extensions,
        "measured_s": _num(s.measured_s),
        "started": "" if s.started is None else s.started,
        "censored": s.censored,
        "in_flight_start": "" if s.in_flight_start is None else s.in_flight_start,
        "in_flight_end": "" if s.in_flight_end is None else s.in_flight_end,
        "trend_ms_per_s": _num(tests.trend_ms_per_s if tests else None),
        "trend_low_ms_per_s": _num(tests.trend_low_ms_per_s if tests else None),
        "trend_high_ms_per_s": _num(tests.trend_high_ms_per_s if tests else None),
        "backlog_growth": ""
        if tests is None or tests.backlog_growth is None
        else tests.backlog_growth,
        "deficit": _num(tests.deficit if tests else None),
        "passed": int(s.passed),
        "reasons": "; ".join(s.reasons),
        **_slo_cells(s),
    }


def _slo_cells(s: StepResult) -> dict[str, object]:
    """A step's sample sizes and SLO percentiles with their bounds (``steps.csv``)."""
    good = s.goodput
    cells: dict[str, object] = {
        "latency_n": s.requests - s.failures,
        "slo_n": good.n if good else "",
        "slo_verdict": (good.verdict or "") if good else "",
    }
    for name in ("ttft", "tpot", "e2e"):
        bounds = getattr(good, f"{name}_bounds_ms") if good else None
        low, high = bounds if bounds is not None else (None, None)
        cells[f"slo_{name}_ms"] = _num(getattr(good, f"{name}_ms") if bounds else None)
        cells[f"slo_{name}_low_ms"] = _num(low)
        cells[f"slo_{name}_high_ms"] = _num(high)
    return cells


def _num(value: float | None) -> str | float:
    return "" if value is None else round(value, 3)


def write_run(result: RunResult) -> RunResult:
    """Write every file of a finished run from its result, each once, ``summary.json`` last.

    ``requests.csv``, ``client.csv`` and ``server.csv`` were written as the run went
    (:class:`RecordWriter`); this writes Locust's pages, ``steps.csv`` (discovery), the
    plot, ``compare.md`` (comparison) and then ``summary.json`` listing the files that
    exist. A file that cannot be written costs that file and a warning, never the others;
    only ``summary.json`` itself is an ``OutputError``. Returns the result with the
    summary as written (its files and warnings).
    """
    with _signals_held():
        return _write_run(result)


@contextmanager
def _signals_held() -> Iterator[None]:
    """Ctrl+C or SIGTERM while the files are written waits for them: the run has stopped
    already (a user presses again until the prompt comes back), and each file is whole."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _write_run(result: RunResult) -> RunResult:
    out_dir, summary = result.out_dir, result.summary
    warnings = list(result.warnings)
    for name, html in result.pages.items():
        _write_file(out_dir / name, html, warnings)
    if isinstance(summary, DiscoverySummary):
        _write_discovery_files(summary, out_dir, warnings)
    else:
        _write_compare_files(result, summary, out_dir, warnings)
    _write_report_page(result, summary.model_copy(update={"warnings": warnings}), warnings)
    files = {
        name.replace(".", "_").replace("-", "_"): name
        for name in _RUN_FILES
        if (out_dir / name).is_file()
    }
    files["summary"] = "summary.json"
    summary = summary.model_copy(update={"files": files, "warnings": warnings})
    write_summary(summary, out_dir)
    return replace(result, summary=summary, warnings=warnings)


# Every file a run directory may hold besides summary.json, in the order they are listed.
_RUN_FILES = (
    "requests.csv",
    "client.csv",
    "server.csv",
    "steps.csv",
    "report.html",
    "locust.html",
    "locust-a.html",
    "locust-b.html",
    "capacity.png",
    "compare.png",
    "compare.md",
)


def _write_file(path: Path, text: str, warnings: list[str]) -> None:
    try:
        write_text(path, text)
    except OSError as exc:
        warnings.append(f"{path.name} not written: {exc.strerror}")


def _write_report_page(result: RunResult, summary: Summary, warnings: list[str]) -> None:
    """capdisc's own report.html (a page that cannot be made costs it and a warning)."""
    from capdisc.reports.rebuild import result_page

    try:
        page = result_page(summary, result.records, result.measured, result.client)
    except Exception as exc:  # a page must never cost the result
        warnings.append(f"report.html not written: {exc}")
        return
    _write_file(result.out_dir / "report.html", page, warnings)


def _write_discovery_files(summary: DiscoverySummary, out_dir: Path, warnings: list[str]) -> None:
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


def _write_compare_files(
    result: RunResult, summary: CompareSummary, out_dir: Path, warnings: list[str]
) -> None:
    from capdisc.reports.markdown import compare_markdown
    from capdisc.reports.plots import plot_compare

    a_rows, b_rows = result.measured["a"], result.measured["b"]
    try:
        plot_compare(a_rows, b_rows, summary.a.label, summary.b.label, out_dir / "compare.png")
    except Exception as exc:  # a plot must never cost the result
        warnings.append(f"compare.png not written: {exc}")
    _write_file(out_dir / "compare.md", compare_markdown(summary), warnings)


# -- capdisc report: a finished run's pages again ----------------------------------------

# What marks capdisc's own report.html (Locust's page had that name before locust.html).
_OUR_PAGE = b'<meta name="generator" content="capdisc">'


def _keep_locust_page(run_dir: Path) -> None:
    """A run from before capdisc's own page kept Locust's as report.html: move it aside."""
    page = run_dir / "report.html"
    try:
        with page.open("rb") as handle:
            head = handle.read(4096)
    except OSError:
        return
    if _OUR_PAGE not in head and not (run_dir / "locust.html").exists():
        os.replace(page, run_dir / "locust.html")


def rebuild_report(run_dir: Path, plots: bool = False) -> Summary:
    """``capdisc report RUN_DIR``: write report.html again from the run's files (any schema).

    With ``plots`` the PNG (capacity.png or compare.png) is drawn again too. Locust's page
    of an older run, which was called report.html, is kept as locust.html. Returns the
    summary read. Raises ``ValueError`` (``NotARun``) when the directory holds no summary
    and ``OutputError`` when the page cannot be written.
    """
    from capdisc.reports.rebuild import load_run, run_page

    run = load_run(run_dir)
    page = run_page(run)
    try:
        _keep_locust_page(run_dir)
        write_text(run_dir / "report.html", page)
    except OSError as exc:
        raise OutputError(f"cannot write {run_dir / 'report.html'}: {exc.strerror}") from None
    if plots:
        from capdisc.reports.plots import plot_capacity, plot_compare

        summary = run.summary
        if isinstance(summary, DiscoverySummary):
            plot_capacity(summary, run_dir / "capacity.png")
        else:
            rows = run.records
            a_rows, b_rows = rows[rows["version"] == "a"], rows[rows["version"] == "b"]
            plot_compare(a_rows, b_rows, summary.a.label, summary.b.label, run_dir / "compare.png")
    return run.summary


def write_two_runs(run_a: Path, run_b: Path, path: Path) -> tuple[Summary, Summary]:
    """``capdisc report RUN_A RUN_B``: the page of two discoveries side by side, at ``path``."""
    from capdisc.reports.rebuild import load_run, two_runs_page

    a, b = load_run(run_a), load_run(run_b)
    page = two_runs_page(a, b)
    try:
        write_text(path, page)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror}") from None
    return a.summary, b.summary
