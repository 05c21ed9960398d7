"""``requests.csv`` written while the run goes: one row per request, flushed every second.

Rows go straight to disk, so memory stays flat however long the run is, and a
crash of capdisc itself loses at most the last second. A write error (a full disk)
is kept, not raised into a user greenlet: the engine stops the run and says so.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from capdisc.records import RECORD_COLUMNS

__all__ = ["RecordWriter"]


class RecordWriter:
    """Append-only CSV of raw records with a bounded flush delay."""

    def __init__(self, path: Path, *, flush_every_s: float = 1.0, append: bool = False) -> None:
        self.path = path
        self.rows = 0
        self.error: OSError | None = None
        self._flush_every_s = flush_every_s
        self._last_flush = time.monotonic()
        exists = append and path.exists() and path.stat().st_size > 0
        self._file: IO[str] | None = path.open("a" if append else "w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._file)
        if not exists:
            self._csv.writerow(RECORD_COLUMNS)

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
