"""Helpers shared by the end-to-end tests: run the real command, read what it wrote."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CAPDISC = [sys.executable, "-m", "capdisc"]


def run_capdisc(
    *args: str,
    timeout: float = 120,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """``capdisc ARGS`` in a subprocess, as a user runs it; output captured as text."""
    return subprocess.run(
        [*CAPDISC, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
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


def wait_until(condition: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    """Poll ``condition`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g}s"
        time.sleep(0.1)


def wait_for_file(path: Path, timeout: float = 30.0) -> None:
    """Wait until ``path`` exists (a run has started writing), at most ``timeout`` seconds."""
    wait_until(path.exists, f"{path} to appear", timeout)


def rows_so_far(run: Path) -> list[dict[str, str]]:
    """The rows of a running run's requests.csv (a line still being written is skipped)."""
    if not (run / "requests.csv").exists():
        return []
    text = (run / "requests.csv").read_text()
    complete = text[: text.rfind("\n") + 1]
    return list(csv.DictReader(complete.splitlines()))


def simulator_profile(directory: Path, name: str, simulator: str) -> Path:
    """A profile ``name.toml`` with an embedded simulator of the ``[simulator]`` lines given
    (max_tokens 64, timeout 10 s), as a user would write one."""
    path = directory / f"{name}.toml"
    path.write_text(
        f'[target]\nembedded = true\nmax_tokens = 64\ntimeout = "10s"\n\n[simulator]\n{simulator}\n'
    )
    return path
