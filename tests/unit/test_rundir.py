"""Outputs survive trouble: a full disk costs a warning, not the measurements; saved runs re-render."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from capdisc.durations import parse_duration
from capdisc.errors import OutputError
from capdisc.records import RECORD_COLUMNS
from capdisc.rundir import RecordWriter, write_summary
from capdisc.schema import DiscoverySummary, load_summary
from tests.summaries import discovery

DEV_FULL = Path("/dev/full")


@pytest.mark.skipif(not DEV_FULL.exists(), reason="needs /dev/full")
def test_record_writer_keeps_a_disk_full_error_instead_of_raising() -> None:
    """Writing to a full disk never raises into a Locust user; the error is kept for the engine."""
    writer = RecordWriter(DEV_FULL, flush_every_s=0.0)
    for _ in range(100):
        writer.write(tuple(range(len(RECORD_COLUMNS))))
    writer.close()
    assert writer.error is not None and writer.error.errno == 28  # ENOSPC


def test_record_writer_flushes_within_the_delay(tmp_path: Path) -> None:
    """Rows reach the file as the run goes, not only at the end."""
    path = tmp_path / "requests.csv"
    writer = RecordWriter(path, flush_every_s=0.0)
    writer.write(tuple(range(len(RECORD_COLUMNS))))
    assert path.read_text().count("\n") == 2  # header + the row, before close()
    writer.close()


def test_unwritable_summary_is_an_output_error(tmp_path: Path) -> None:
    """summary.json that cannot be written is a one-line OutputError."""
    summary = discovery()
    with pytest.raises(OutputError, match=r"summary\.json"):
        write_summary(summary, tmp_path / "missing-dir")


@given(st.text(max_size=20))
def test_parse_duration_accepts_or_names_the_flag(text: str) -> None:
    """Any text is a duration or a ValueError that names the flag; never another error."""
    try:
        seconds = parse_duration(text, name="--interval")
    except ValueError as exc:
        assert "--interval" in str(exc)
    else:
        assert seconds >= 0


@pytest.mark.parametrize(
    ("text", "seconds"), [("500ms", 0.5), ("30s", 30), ("8m", 480), ("1h", 3600), ("2.5", 2.5)]
)
def test_durations(text: str, seconds: float) -> None:
    """The forms the contract names."""
    assert parse_duration(text) == seconds


def test_report_re_renders_a_saved_run(tmp_path: Path) -> None:
    """capdisc report prints the table of a saved run and --json its summary."""
    summary = discovery()
    write_summary(summary, tmp_path)
    table = subprocess.run(
        [sys.executable, "-m", "capdisc", "report", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert table.returncode == 0 and "Capacity: 18 users" in table.stdout
    raw = subprocess.run(
        [sys.executable, "-m", "capdisc", "report", str(tmp_path), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(raw.stdout)["capacity"]["users"] == 18
    assert load_summary(tmp_path / "summary.json").capacity is not None
    (tmp_path / "summary.json").write_text("{}")
    broken = subprocess.run(
        [sys.executable, "-m", "capdisc", "report", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert broken.returncode == 2 and "not a capdisc summary" in broken.stderr


def test_open_files_limit_is_raised_or_explained() -> None:
    """Users need file descriptors: the soft limit is raised, a low hard limit is explained."""
    code = (
        "import resource\n"
        "from capdisc.loadgen.engine import ensure_file_limit\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (128, 4096))\n"
        "print(ensure_file_limit(1000), resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (128, 300))\n"
        "print(ensure_file_limit(1000))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    first, second = result.stdout.strip().splitlines()
    assert first == "None 2256"
    assert "open-files limit is 300" in second and "1000 users" in second


def test_a_discovery_run_is_refused_as_a_compare_side(tmp_path: Path) -> None:
    """A saved run that is not a comparison is refused before anything runs (exit 2)."""
    summary = discovery()
    write_summary(summary, tmp_path)
    (tmp_path / "requests.csv").write_text(",".join(RECORD_COLUMNS) + "\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "capdisc",
            "compare",
            "stream",
            str(tmp_path),
            "v2",
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "is not a compare stream run" in result.stderr
    assert not (tmp_path / "out").exists()


def test_report_reads_a_schema_1_discovery(tmp_path: Path) -> None:
    """A discovery saved before schema 2 (no verdicts, no interval) still reads and renders."""
    fixture = Path(__file__).parents[1] / "fixtures" / "summaries" / "discovery-schema-1.json"
    (tmp_path / "summary.json").write_text(fixture.read_text())
    old = load_summary(tmp_path / "summary.json")
    assert isinstance(old, DiscoverySummary) and old.schema_ == 1
    assert old.capacity is not None and old.capacity.confirmed is None
    assert all(step.verdict is None for step in old.steps)
    table = subprocess.run(
        [sys.executable, "-m", "capdisc", "report", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert table.returncode == 0, table.stderr
    assert "Capacity: at least 12 users" in table.stdout and "confirmed" not in table.stdout
