"""One command's load: the stop control, ``requests.csv``, signals, the sessions, the close.

Every strategy (and every benchmark) runs its Locust sessions through a
:class:`RunContext`, so the run set-up is written once: the failure threshold and
Ctrl+C/SIGTERM handling are shared by all sessions of the command, every row goes to
the run directory's ``requests.csv`` as it happens (and every load process's CPU and
loop lag to ``client.csv``, and the server's own metrics to ``server.csv``, once a
second), and whatever stops the run, the file is flushed and closed and the signal
handlers are removed.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from capdisc.apis.server_metrics import MetricsEndpoint
from capdisc.loadgen.contract import ProgressSink, SessionResult, StepPlanner, Workload
from capdisc.loadgen.control import RunControl
from capdisc.loadgen.engine import ensure_file_limit, html_report, run_session
from capdisc.loadgen.scraper import SERVER_COLUMNS, ServerScraper
from capdisc.loadgen.selfcheck import SelfCheck
from capdisc.loadgen.threshold import FailureThreshold
from capdisc.records import CLIENT_COLUMNS, RequestRecord
from capdisc.rundir import RecordWriter

__all__ = ["RunContext"]


class RunContext:
    """Sessions of one command against one run directory, stopped together.

    ``users`` is the most users the command will run at once (to raise the
    open-files limit); a limit that cannot be raised enough becomes a warning.
    ``threshold`` is how failures stop the run (default: ``failure_threshold``
    failures over the run); ``keep_rows`` keeps every row in :attr:`rows`.
    ``server_metrics`` maps each version (``Workload.version``) to the ``/metrics`` page
    read for it; one scraper reads each page, from before the first session to after
    the last.
    """

    def __init__(
        self,
        out_dir: Path,
        *,
        failure_threshold: int,
        users: int,
        progress: ProgressSink | None = None,
        stop_timeout: float = 5.0,
        workers: int | Literal["auto"] = 0,
        expect_workers: int = 0,
        records_name: str = "requests.csv",
        master_bind: str = "127.0.0.1:5557",
        threshold: FailureThreshold | None = None,
        keep_rows: bool = False,
        server_metrics: Mapping[str, MetricsEndpoint] | None = None,
    ) -> None:
        if workers == "auto":  # the strategy resolves it from the client ceiling first
            raise ValueError("resolve --workers auto before the run (strategies.client)")
        self.out_dir = out_dir
        self.progress = progress
        self.workers = workers
        self.expect_workers = expect_workers
        self.master_bind = master_bind
        self.warnings: list[str] = []
        self.sessions: list[SessionResult] = []
        self.control = RunControl(
            failure_threshold=failure_threshold, stop_timeout=stop_timeout, threshold=threshold
        )
        # Every row of the run, in memory, for a command that computes its figures from
        # them at the end (instead of reading requests.csv back).
        self.rows: list[RequestRecord] | None = [] if keep_rows else None
        limit = ensure_file_limit(users)
        if limit:
            self._warn(limit)
        self.writer = RecordWriter(out_dir / records_name)
        # Every load process's CPU and loop lag, once a second (client.csv).
        client_name = records_name.replace("requests", "client", 1)
        if client_name == records_name:
            client_name = f"client-{records_name}"
        self.selfcheck = SelfCheck(RecordWriter(out_dir / client_name, columns=CLIENT_COLUMNS))
        # The server's own metrics (server.csv): one scraper per page, whichever
        # versions it serves (an A/A comparison of one server reads it once).
        self.scrapers: dict[str, ServerScraper] = {}
        if server_metrics:
            server_name = records_name.replace("requests", "server", 1)
            if server_name == records_name:
                server_name = f"server-{records_name}"
            writer = RecordWriter(out_dir / server_name, columns=SERVER_COLUMNS)
            for version, endpoint in server_metrics.items():
                scraper = self.scrapers.setdefault(
                    endpoint.url, ServerScraper(endpoint, writer=writer)
                )
                scraper.versions.add(version)
        self._handlers: list[Any] = []

    def __enter__(self) -> Self:
        self._handlers = self.control.install_signal_handlers()
        for scraper in self.scrapers.values():
            scraper.start()
        return self

    def scraper_for(self, version: str) -> ServerScraper | None:
        """The scraper of the page read for ``version`` (None: none is read)."""
        return next((s for s in self.scrapers.values() if version in s.versions), None)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close_records()
        for handler in self._handlers:
            handler.cancel()
        self._handlers = []
        if (
            self.control.reason == "interrupted"
            and threading.current_thread() is threading.main_thread()
        ):
            # The user stopped the run and may press again until the prompt comes back:
            # further signals are ignored, so the result is still built and written.
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: None)

    def close_records(self) -> None:
        """Flush and close ``requests.csv``, ``client.csv`` and ``server.csv``; safe to call twice.

        The signal handlers stay until the context exits, so a Ctrl+C pressed while
        the results are written cannot cut them short.
        """
        if self.writer.closed:
            return
        for scraper in self.scrapers.values():
            scraper.stop()
        self.writer.close()
        if self.selfcheck.writer is not None:
            self.selfcheck.writer.close()
        for scraper in self.scrapers.values():
            if scraper.writer is not None:
                scraper.writer.close()
        if self.writer.error is not None:
            self.warnings.append(f"requests.csv is incomplete: {self.writer.error.strerror}")

    def _warn(self, note: str) -> None:
        self.warnings.append(note)
        if self.progress is not None:
            self.progress.message(f"warning: {note}")

    @property
    def stopped(self) -> bool:
        """True once the threshold, a signal or a write error asked the run to stop."""
        return self.control.reason is not None

    def run(self, workload: Workload, planner: StepPlanner) -> SessionResult:
        """One Locust session until the planner, the threshold or a signal ends it."""
        result = run_session(
            workload,
            planner,
            writer=self.writer,
            control=self.control,
            progress=self.progress,
            workers=self.workers,
            expect_workers=self.expect_workers,
            selfcheck=self.selfcheck,
            master_bind=self.master_bind,
            sink=self.rows.append if self.rows is not None else None,
            server=self.scraper_for(workload.version),
        )
        self.sessions.append(result)
        self.warnings.extend(w for w in result.warnings if w not in self.warnings)
        return result

    def copy_rows(self, rows: Sequence[RequestRecord]) -> None:
        """Write rows measured by an earlier run (a saved comparison version) to this
        run's ``requests.csv``, through the same writer; they are not kept in :attr:`rows`."""
        for row in rows:
            self.writer.write(row)

    def locust_page(self, sessions: Sequence[SessionResult] | None = None) -> str | None:
        """Locust's HTML report of ``sessions`` (default: all of them); None without stats."""
        return html_report(self.sessions if sessions is None else sessions)
