"""Bad answers from the target are counted correctly and never crash a user.

Each mode answers preflight properly, then misbehaves; capdisc must record every
request with the right verdict and its cause, and finish with its reports.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.e2e.badserver import bad_server
from tests.e2e.helpers import run_capdisc

pytestmark = pytest.mark.slow

# mode -> (ok expected, error text expected in failed rows)
STREAM_CASES = {
    "crlf": (True, ""),
    "garbage": (False, "only 0 content chunks"),
    "partial": (False, "only 2 content chunks"),
    "bad_utf8": (True, ""),
    "huge_line": (False, "only 1 content chunks"),
    "close": (False, "connection closed"),
    "error_event": (False, "error event in the stream: out of memory"),
    "zero_tokens": (False, "only 0 content chunks"),
}


@pytest.mark.parametrize("mode", sorted(STREAM_CASES))
def test_stream_answers_are_judged_by_chunks(tmp_path: Path, mode: str) -> None:
    """Streams: garbage, cut lines, invalid UTF-8, huge lines, CRLF, closed connections."""
    ok_expected, error = STREAM_CASES[mode]
    with bad_server(mode) as url:
        result = run_capdisc(
            "compare",
            "stream",
            url,
            url,
            "--users",
            "2",
            "--interval",
            "0.5s",
            "--duration",
            "2s",
            "--blocks",
            "1",
            "--failure-threshold",
            "0",
            "--quiet",
            "--out",
            str(tmp_path / "run"),
            timeout=120,
        )
    assert "Traceback" not in result.stderr
    with (tmp_path / "run" / "requests.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows
    assert all((r["ok"] == "1") == ok_expected for r in rows), rows[:3]
    if not ok_expected:
        assert all(error in r["error"] for r in rows), {r["error"] for r in rows}
        assert result.returncode == 4  # no successful request on either side


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("error_json", "answer is an error: model overloaded"),
        ("garbage", "not JSON"),
        ("wrong_type", ""),
    ],
)
def test_batch_answers_are_checked(tmp_path: Path, mode: str, error: str) -> None:
    """Batch: HTTP 200 with an error object or garbage is a failure, with its cause."""
    with bad_server(mode) as url:
        result = run_capdisc(
            "discover",
            "batch",
            "--host",
            url,
            "--start-users",
            "2",
            "--max-users",
            "2",
            "--step-duration",
            "2s",
            "--interval",
            "0.5s",
            "--failure-threshold",
            "0",
            "--quiet",
            "--out",
            str(tmp_path / "run"),
            timeout=120,
        )
    assert "Traceback" not in result.stderr
    with (tmp_path / "run" / "requests.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows
    if error:
        assert all(r["ok"] == "0" and error in r["error"] for r in rows), rows[:2]
    else:  # a wrong content type with a valid body is still a completion
        assert all(r["ok"] == "1" for r in rows)


def test_a_target_that_hangs_mid_run_times_out(tmp_path: Path) -> None:
    """Requests that never get an answer fail as timeouts; the threshold ends the run on time."""
    import time

    started = time.monotonic()
    with bad_server("hang") as url:
        result = run_capdisc(
            "discover",
            "batch",
            "--host",
            url,
            "--start-users",
            "3",
            "--max-users",
            "3",
            "--step-duration",
            "60s",
            "--interval",
            "0.5s",
            "--timeout",
            "1s",
            "--failure-threshold",
            "3",
            "--quiet",
            "--out",
            str(tmp_path / "run"),
            timeout=120,
        )
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 30
    with (tmp_path / "run" / "requests.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) >= 3
    assert all(r["ok"] == "0" and r["error"] == "timeout after 1s" for r in rows)
    assert all(900 <= float(r["duration_ms"]) < 3000 for r in rows)
