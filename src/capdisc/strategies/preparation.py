"""What every strategy does around its load: resolve the target, check it, open the outputs.

``open_target`` starts the embedded simulator when the profile asks for one (and
stops it afterwards, whatever happens); ``prepare_run`` checks the output
directory before any load, imports the load engine (which patches the standard
library), runs preflight, finds the server's own metrics (``--server-metrics``) and
only then creates the run directory. ``server_checks`` sums up, after the run, what
each scraped ``/metrics`` page said against capdisc's rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from capdisc.durations import format_duration
from capdisc.loadgen.contract import ProgressSink
from capdisc.profiles import Profile
from capdisc.rundir import check_out_dir, create_out_dir
from capdisc.servermetrics.figures import ServerInfo
from capdisc.target import Target, target_from_profile

if TYPE_CHECKING:
    from capdisc.apis.server_metrics import MetricsEndpoint
    from capdisc.loadgen.scraper import ServerScraper

__all__ = [
    "find_server_metrics",
    "open_target",
    "prepare_run",
    "server_checks",
    "suggested_interval",
    "unmet_interval",
]


def suggested_interval(latency_s: float) -> float:
    """An interval with room for the measured latency to grow with load: 1.5 x it, whole
    seconds (latency rises with load, and constant pacing needs it within the interval)."""
    return float(math.ceil(1.5 * latency_s))


def unmet_interval(interval_s: float, latency_s: float, where: str) -> str:
    """One line naming pacing the server cannot meet, with the measured latency."""
    return (
        f"--interval {format_duration(interval_s)}: {where} took {format_duration(latency_s)}, "
        "and constant pacing needs every answer within the interval (a longer one makes the "
        "next task late, which reads as overload); try "
        f"--interval {format_duration(suggested_interval(latency_s))}"
    )


@contextmanager
def open_target(profile: Profile) -> Iterator[Target]:
    """The profile's target, with its embedded simulator running for the duration."""
    if not profile.embedded:
        yield target_from_profile(profile)
        return
    from capdisc.simulator.process import EmbeddedSimulator

    with EmbeddedSimulator(profile.simulator_config) as simulator:
        yield target_from_profile(profile, base_url=simulator.base_url)


def load_engine() -> None:
    """Import the load engine now: gevent must patch before any client is made."""
    import capdisc.loadgen.engine  # noqa: F401


def find_server_metrics(target: Target, progress: ProgressSink | None) -> MetricsEndpoint | None:
    """The target's ``/metrics`` page to read during the run (``--server-metrics``), said
    on the progress line; an explicit URL that cannot be read is ``TargetUnreachable``."""
    from capdisc.apis.server_metrics import probe_server_metrics

    endpoint, note = probe_server_metrics(target)
    if progress is not None:
        progress.message(note)
    return endpoint


def prepare_run(
    target: Target, out_dir: Path, progress: ProgressSink | None = None, *, stream: bool = False
) -> tuple[Path, MetricsEndpoint | None]:
    """Check the output, the target (preflight, streamed with ``stream``) and its metrics,
    then create the run directory; returns it with the metrics page to read (None: none)."""
    check_out_dir(out_dir)
    load_engine()
    from capdisc.apis.preflight import preflight

    preflight(target, stream=stream)
    endpoint = find_server_metrics(target, progress)
    return create_out_dir(out_dir), endpoint


def server_checks(
    frame: Any, scrapers: Iterable[ServerScraper]
) -> tuple[list[ServerInfo], list[str]]:
    """Each scraped page's summary and cross-checks against the run's rows (a records
    frame), and the warnings they raise."""
    from capdisc.metrics.server import check_server

    infos: list[ServerInfo] = []
    warnings: list[str] = []
    for scraper in scrapers:
        info, notes = check_server(
            frame,
            scraper.readings,
            url=scraper.endpoint.url,
            family=scraper.family,
            label=scraper.endpoint.family.label,
            versions=scraper.versions,
            failed=scraper.failed,
            last_error=scraper.last_error,
        )
        infos.append(info)
        warnings.extend(notes)
    return infos, warnings
