"""Live progress on stderr: a rich status line on a terminal, plain lines elsewhere.

Results go to stdout; everything here goes to stderr, so ``--json`` output stays
machine-readable. ``--quiet`` uses no sink at all.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.live import Live
from rich.text import Text

from capdisc.durations import format_duration
from capdisc.loadgen.contract import ProgressSnapshot

__all__ = ["ConsoleProgress"]

# Without a terminal, a line every so often is enough for a log.
_PLAIN_EVERY_S = 10.0


def _line(s: ProgressSnapshot) -> Text:
    threshold = f"/{s.failure_threshold}" if s.failure_threshold else ""
    if s.threshold_note:
        threshold = f" ({s.threshold_note})"
    p95 = "-" if s.p95_ms is None else f"{s.p95_ms:,.0f} ms"
    remaining = "" if s.remaining_s is None else f", step ends in {format_duration(s.remaining_s)}"
    text = Text()
    text.append(s.label, style="bold cyan")
    text.append(
        f"  users {s.users}  {s.rps:.1f} req/s  requests {s.requests}  "
        f"failures {s.failures}{threshold}  p95 {p95}  "
        f"elapsed {format_duration(s.elapsed_s)}{remaining}"
    )
    return text


class ConsoleProgress:
    """A :class:`~capdisc.loadgen.contract.ProgressSink` on stderr."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._live: Live | None = None
        self._last_plain = 0.0
        self._last_label = ""

    def __enter__(self) -> ConsoleProgress:
        if self.console.is_terminal:
            self._live = Live(console=self.console, refresh_per_second=2, transient=True)
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def update(self, snapshot: ProgressSnapshot) -> None:
        line = _line(snapshot)
        if self._live is not None:
            self._live.update(line)
            return
        now = time.monotonic()
        if snapshot.label != self._last_label or now - self._last_plain >= _PLAIN_EVERY_S:
            self._last_label = snapshot.label
            self._last_plain = now
            self.console.print(line, highlight=False)

    def message(self, text: str) -> None:
        self.console.print(text, style="yellow", highlight=False)
