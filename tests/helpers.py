"""Helpers shared by the end-to-end tests: run the real command, read what it wrote."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

CAPDISC = [sys.executable, "-m", "capdisc"]


def run_capdisc(
    *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``capdisc ARGS`` in a subprocess, as a user runs it; output captured as text."""
    return subprocess.run(
        [*CAPDISC, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def rows_of(run: Path) -> list[dict[str, str]]:
    """The rows of a run's requests.csv."""
    with (run / "requests.csv").open() as handle:
        return list(csv.DictReader(handle))


def summary_of(run: Path) -> dict[str, Any]:
    """A run's summary.json."""
    return json.loads((run / "summary.json").read_text())


def start_capdisc(*args: str) -> subprocess.Popen[str]:
    """``capdisc ARGS`` running in the background (for signals sent mid-run)."""
    return subprocess.Popen(
        [*CAPDISC, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for_file(path: Path, timeout: float = 30.0) -> None:
    """Wait until ``path`` exists (a run has started writing), at most ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not path.exists():
        time.sleep(0.2)
    assert path.exists(), f"{path} did not appear within {timeout:g}s"
