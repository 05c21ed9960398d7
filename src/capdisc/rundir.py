"""The run directory: where every output of one run goes, checked before any load.

``check_out_dir`` refuses a directory that cannot be written (or a nearly full
disk) before the target sees a single request; ``create_out_dir`` makes it only
once preflight passed, so a failed preflight leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

from capdisc.errors import OutputError

__all__ = ["check_out_dir", "create_out_dir", "default_out_dir", "utc_now_iso"]

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
