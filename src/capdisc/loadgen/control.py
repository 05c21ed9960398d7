"""Stopping a command's sessions: the failure threshold, Ctrl+C and SIGTERM, shared by all.

One :class:`RunControl` lives for a whole command (every session of a comparison or a
discovery shares it): the first reason to stop wins, a second Ctrl+C forces the stop,
and the time the stop was asked for ends the step or block it cut.
"""

from __future__ import annotations

import signal
import time
from typing import Any

import gevent
import gevent.event

from capdisc.loadgen.threshold import FailureThreshold
from capdisc.schema import StopReason

__all__ = ["RunControl"]


class RunControl:
    """Stop requests shared by every session of one command (threshold, Ctrl+C, SIGTERM)."""

    def __init__(
        self,
        *,
        failure_threshold: int,
        stop_timeout: float,
        threshold: FailureThreshold | None = None,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.threshold = threshold or FailureThreshold(failure_threshold)
        self.stop_timeout = stop_timeout
        self.reason: StopReason | None = None
        self.detail = ""
        # When the first stop was asked for: a step or block cut by it ends there, not
        # after the wait for the requests in flight.
        self.requested_at: float | None = None
        self.forced = False
        self.event = gevent.event.Event()
        # Set by the running session: how to stop at once on a second Ctrl+C.
        self.force_stop: Any = None

    def request_stop(self, reason: StopReason, detail: str) -> None:
        """Ask the running session to stop; the first reason wins."""
        if self.reason is None:
            self.reason = reason
            self.detail = detail
            self.requested_at = time.time()
        self.event.set()

    @property
    def failures(self) -> int:
        """Failed requests of the whole run so far."""
        return self.threshold.failures

    def on_signal(self, signum: int) -> None:
        """First Ctrl+C stops gracefully; a second one forces the stop at once."""
        if self.reason is not None and self.event.is_set():
            self.forced = True
            if self.force_stop is not None:
                self.force_stop()
            return
        name = signal.Signals(signum).name
        self.request_stop("interrupted", f"{name} received")

    def install_signal_handlers(self) -> list[Any]:
        """Route SIGINT and SIGTERM to :meth:`on_signal` (returns handles to cancel)."""
        return [
            gevent.signal_handler(sig, self.on_signal, sig)
            for sig in (signal.SIGINT, signal.SIGTERM)
        ]
