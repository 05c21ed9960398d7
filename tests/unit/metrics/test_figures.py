"""Records to figures: reading requests.csv, one step's figures, the run at stop, a version."""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from capdisc.errors import RunFailed
from capdisc.metrics.figures import (
    at_stop,
    measured_tasks,
    pacing_stats,
    step_figures,
    version_stats,
)
from capdisc.metrics.frame import read_records, records_frame, rounds, tasks
from capdisc.records import RECORD_COLUMNS, RequestRecord


def row(
    ts_end: float,
    duration_ms: float,
    *,
    ok: int = 1,
    slip_s: float = 0.0,
    name: str = "batch",
    user: int = 1,
    step: int = 0,
    status: int | None = None,
    ttft_ms: float | None = None,
    chunks: int | None = None,
    tool_calls: int | None = None,
    error: str = "",
    version: str = "demo",
) -> list[object]:
    """One record in RECORD_COLUMNS order, consistent in its times."""
    ts_start = ts_end - duration_ms / 1000
    return list(
        RequestRecord(
            ts_scheduled=ts_start - slip_s,
            ts_start=ts_start,
            ts_end=ts_end,
            user=user,
            step=step,
            version=version,
            name=name,
            status=(200 if ok else 500) if status is None else status,
            ok=ok,
            duration_ms=duration_ms,
            ttft_ms="" if ttft_ms is None else ttft_ms,
            chunks="" if chunks is None else chunks,
            tool_calls="" if tool_calls is None else tool_calls,
            error=error if not ok else "",
        )
    )


def write_csv(path: Path, rows: list[list[object]]) -> None:
    """Write rows the way the load engine's recorder does (csv module, None as empty)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(RECORD_COLUMNS)
        writer.writerows(rows)


SAMPLE = [
    row(100.5, 420.0, name="stream", ttft_ms=80.0, chunks=31),
    row(101.0, 510.5, name="stream", ttft_ms=95.5, chunks=29),
    row(101.2, 30000.0, ok=0, name="stream", status=0, error='timeout, "read" after 30s', chunks=0),
    row(102.0, 55.0, name="round 1", tool_calls=1),
]


# -- reading ---------------------------------------------------------------------------


def test_read_records_round_trips_values_and_dtypes(tmp_path: Path) -> None:
    """A written requests.csv reads back with the values and the documented dtypes."""
    path = tmp_path / "requests.csv"
    write_csv(path, SAMPLE)
    df = read_records(path)

    assert list(df.columns) == list(RECORD_COLUMNS)
    assert len(df) == 4
    for col in ("ts_scheduled", "ts_start", "ts_end", "duration_ms", "ttft_ms"):
        assert df[col].dtype == np.float64, col
    for col in ("user", "step", "status", "ok"):
        assert df[col].dtype == np.int64, col
    for col in ("chunks", "tool_calls"):
        assert str(df[col].dtype) == "Int64", col
    for col in ("version", "name", "error"):
        assert pd.api.types.is_string_dtype(df[col]), col

    assert df["duration_ms"].tolist() == [420.0, 510.5, 30000.0, 55.0]
    assert df.loc[0, "ttft_ms"] == 80.0
    assert np.isnan(df.loc[3, "ttft_ms"])
    assert df.loc[1, "chunks"] == 29
    assert df["chunks"].isna().tolist() == [False, False, False, True]
    assert df.loc[3, "tool_calls"] == 1
    assert df.loc[2, "error"] == 'timeout, "read" after 30s'
    assert df.loc[0, "error"] == ""
    assert df["status"].tolist() == [200, 200, 0, 200]


def test_read_records_drops_a_truncated_last_line(tmp_path: Path) -> None:
    """A crash mid-write leaves a partial last row: it is dropped, the rest is kept."""
    path = tmp_path / "requests.csv"
    write_csv(path, SAMPLE[:2])
    with path.open("a", encoding="utf-8") as handle:
        # A row cut inside its duration: "5" would parse as a (wrong) number.
        handle.write("1700000000.1,1700000000.2,1700000000.9,3,0,demo,stream,200,1,5")
    df = read_records(path)
    assert df["duration_ms"].tolist() == [420.0, 510.5]


def test_read_records_survives_a_cut_inside_a_quoted_error(tmp_path: Path) -> None:
    """An error text cut inside its quotes (with a newline in it) does not break reading."""
    path = tmp_path / "requests.csv"
    write_csv(path, SAMPLE[:2])
    with path.open("a", encoding="utf-8") as handle:
        figures = "1.0,1.0,2.0,3,0,demo,stream,500,0,1000.0"
        empty = "," * (len(RECORD_COLUMNS) - 11)  # every optional column, then error
        handle.write(f'{figures}{empty},"connection reset\nby pe')
    df = read_records(path)
    # The cut field is the last column: the row's figures are whole, so it is kept.
    assert df["duration_ms"].tolist() == [420.0, 510.5, 1000.0]
    assert df.loc[2, "error"].startswith("connection reset")


def test_read_records_drops_a_row_whose_numbers_do_not_parse(tmp_path: Path) -> None:
    """A garbled row is not a measurement: it is dropped, its neighbours are kept."""
    path = tmp_path / "requests.csv"
    write_csv(path, [SAMPLE[0], ["x", 1.0, 2.0, 1, 0, "demo", "batch", 200, 1, "1e"], SAMPLE[1]])
    df = read_records(path)
    assert df["duration_ms"].tolist() == [420.0, 510.5]
    assert df["ts_scheduled"].dtype == np.float64


def test_read_records_header_only_and_empty_file(tmp_path: Path) -> None:
    """A run that recorded nothing gives an empty, typed frame (not an error)."""
    header_only = tmp_path / "header.csv"
    write_csv(header_only, [])
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    for path in (header_only, empty):
        df = read_records(path)
        assert df.empty
        assert list(df.columns) == list(RECORD_COLUMNS)
        assert df["duration_ms"].dtype == np.float64


def test_read_records_rejects_a_file_that_is_not_requests_csv(tmp_path: Path) -> None:
    """A CSV without the record columns is a RunFailed naming what is missing."""
    path = tmp_path / "steps.csv"
    path.write_text("index,users\n0,10\n", encoding="utf-8")
    with pytest.raises(RunFailed, match="ts_scheduled"):
        read_records(path)
    with pytest.raises(RunFailed, match="cannot read"):
        read_records(tmp_path / "missing.csv")


def test_records_frame_matches_read_records(tmp_path: Path) -> None:
    """In-memory rows give the same frame as the same rows written and read back."""
    path = tmp_path / "requests.csv"
    write_csv(path, SAMPLE)
    pd.testing.assert_frame_equal(records_frame(SAMPLE), read_records(path))
    assert records_frame([]).empty


def test_tasks_and_rounds_split_by_name() -> None:
    """Tool rounds ("round N") are apart from whole tasks."""
    df = records_frame(SAMPLE)
    assert tasks(df)["name"].tolist() == ["stream", "stream", "stream"]
    assert rounds(df)["name"].tolist() == ["round 1"]


# -- figures ---------------------------------------------------------------------------


def step_rows() -> list[list[object]]:
    """A 10 s window [100, 110) with 8 successes (100..800 ms), 2 failures, 2 late tasks.

    Tasks belong to the window they started in: the failure started at 108.5 ends after
    the window and still counts; the one started before it does not, though it ends in it.
    """
    rows = [
        row(100.0 + i + 0.1 * (i + 1), 100.0 * (i + 1), slip_s=1.0 if i in (0, 1) else 0.01, user=i)
        for i in range(8)
    ]
    rows.append(row(111.5, 3000.0, ok=0, status=503, error="503"))
    rows.append(row(109.95, 50.0, ok=0, status=0, error="connection refused"))
    # Started outside the window (half-open at the end): not counted.
    rows.append(row(100.001, 5.0))
    rows.append(row(110.005, 5.0))
    # Tool rounds in the window, numbered past 9 to check numeric order.
    rows += [row(105.0, 40.0, name="round 1"), row(106.0, 60.0, name="round 1")]
    rows += [row(105.0, 70.0, name="round 2"), row(107.0, 900.0, name="round 10")]
    rows.append(row(107.5, 5000.0, ok=0, name="round 2"))  # a failed round: not in the p50
    return rows


def test_step_figures_on_known_rows() -> None:
    """Counts, percentiles (linear), throughput and pacing of one step window."""
    step = step_figures(
        records_frame(step_rows()),
        index=3,
        users=5,
        interval_s=10.0,
        window_start=100.0,
        window_end=110.0,
        phase="refine",
    )
    durations = [100.0 * (i + 1) for i in range(8)]
    assert (step.index, step.users, step.phase) == (3, 5, "refine")
    assert step.requests == 10
    assert step.failures == 2
    assert step.failure_rate == pytest.approx(20.0)
    assert step.p50_ms == pytest.approx(450.0)
    assert step.p95_ms == pytest.approx(100.0 + 0.95 * 7 * 100.0)
    assert step.p99_ms == pytest.approx(100.0 + 0.99 * 7 * 100.0)
    assert step.avg_ms == pytest.approx(450.0)
    assert step.offered_rps == pytest.approx(0.5)
    # Delivered: the 8 successes started in the window and one started just before it
    # that ended in it, in 10 s (throughput is what the server completed in the window).
    assert step.achieved_rps == pytest.approx(0.9)
    assert step.started == 10 and step.measured_s == pytest.approx(10.0)
    assert step.duration_cv == pytest.approx(
        statistics.stdev(durations) / statistics.mean(durations)
    )
    assert step.round_p50_ms == pytest.approx([50.0, 70.0, 900.0])
    # Late: slip above max(5% of 10 s, 50 ms) = 500 ms; 2 of the 10 tasks.
    assert step.pacing.tasks == 10
    assert step.pacing.late == 2
    assert step.pacing.late_share == pytest.approx(0.2)
    assert step.pacing.slip_max_ms == pytest.approx(1000.0)
    assert step.pacing.slip_p50_ms == pytest.approx(10.0)
    # The strategy judges the step, not the metrics.
    assert step.passed is False
    assert step.reasons == []


def test_step_figures_empty_window() -> None:
    """A window without tasks gives zero counts and no latency, never an exception."""
    step = step_figures(
        records_frame(step_rows()),
        index=0,
        users=2,
        interval_s=20.0,
        window_start=500.0,
        window_end=520.0,
    )
    assert (step.requests, step.failures, step.failure_rate) == (0, 0, 0.0)
    assert step.p50_ms is None and step.p95_ms is None and step.avg_ms is None
    assert step.duration_cv is None
    assert step.achieved_rps == 0.0
    assert step.offered_rps == pytest.approx(0.1)
    assert step.round_p50_ms == []
    assert step.pacing.tasks == 0


def test_pacing_threshold_has_a_floor_of_50_ms() -> None:
    """With a short interval, 5% would be below 50 ms: the floor decides lateness."""
    rows = [row(10.0 + i, 100.0, slip_s=s) for i, s in enumerate([0.04, 0.06, 0.0, -0.001])]
    pacing = pacing_stats(tasks(records_frame(rows)), interval_s=0.5)
    assert pacing.late == 1
    assert pacing.late_share == pytest.approx(0.25)
    assert pacing.slip_max_ms == pytest.approx(60.0)
    assert pacing_stats(tasks(records_frame([])), 20.0).tasks == 0


def test_at_stop_counts_every_task_of_the_run() -> None:
    """At stop: all task rows (rounds excluded); the mean includes failures, as Locust's."""
    figures = at_stop(records_frame(step_rows()), users=40)
    assert figures.users == 40
    assert figures.total_requests == 12
    assert figures.failure_rate == pytest.approx(100 * 2 / 12)
    expected_mean = (sum(100.0 * (i + 1) for i in range(8)) + 3000 + 50 + 5 + 5) / 12
    assert figures.avg_ms == pytest.approx(expected_mean)
    empty = at_stop(records_frame([]), users=0)
    assert (empty.total_requests, empty.failure_rate, empty.avg_ms) == (0, 0.0, None)


def test_version_stats_on_known_rows() -> None:
    """A version's figures: successful e2e percentiles, ttft, chunks and pacing."""
    rows = [
        row(
            200.0 + i,
            1000.0 + 10 * i,
            name="stream",
            ttft_ms=100.0 + i,
            chunks=20 + i,
            slip_s=0.0 if i else 2.0,
        )
        for i in range(11)
    ]
    rows.append(row(220.0, 60000.0, ok=0, name="stream", status=0, error="timeout", chunks=0))
    stats = version_stats(records_frame(rows), "v1", interval_s=20.0)
    assert stats.label == "v1"
    assert (stats.requests, stats.failures) == (12, 1)
    assert stats.p50_ms == pytest.approx(1050.0)
    assert stats.p95_ms == pytest.approx(1000.0 + 0.95 * 100)
    assert stats.p99_ms == pytest.approx(1000.0 + 0.99 * 100)
    assert stats.ttft_p50_ms == pytest.approx(105.0)
    assert stats.ttft_p95_ms == pytest.approx(109.5)
    assert stats.chunks_p50 == pytest.approx(25.0)
    assert stats.pacing.late == 1  # 2 s slip > 1 s (5% of 20 s)


def test_version_stats_without_ttft_or_success() -> None:
    """A batch-like version (no ttft) and an all-failed version give None figures."""
    no_ttft = version_stats(records_frame([row(1.0, 200.0), row(2.0, 300.0)]), "x", 20.0)
    assert no_ttft.p50_ms == pytest.approx(250.0)
    assert no_ttft.ttft_p50_ms is None and no_ttft.chunks_p50 is None
    failed = version_stats(records_frame([row(1.0, 200.0, ok=0, error="x")]), "y", 20.0)
    assert (failed.requests, failed.failures, failed.p50_ms) == (1, 1, None)


def test_a_comparison_block_keeps_the_requests_started_in_its_window() -> None:
    """Block 1 measures [100, 110): a slow request started at 109 s and ending at 112 s
    is its (by end time it vanished); one started at 99 s, before the window, is not."""
    rows = [
        row(112.0, 3000.0, step=1, version="a"),  # started 109: in
        row(101.0, 2000.0, step=1, version="a"),  # started 99: ramp-up, out
        row(105.0, 400.0, step=1, version="a"),  # in
        row(105.0, 400.0, step=2, version="a"),  # another block
        row(105.0, 400.0, step=1, version="b"),  # the other version
        row(111.0, 400.0, step=1, version="a", name="round 1"),  # a tool round, not a task
    ]
    df = records_frame([RequestRecord(*r) for r in rows])
    kept = measured_tasks(df, "a", [(1, 100.0, 110.0)])
    assert sorted(kept["ts_start"].round(3).tolist()) == [104.6, 109.0]
