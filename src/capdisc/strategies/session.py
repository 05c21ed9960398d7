"""What every strategy does around its load: resolve the target, check it, open the outputs.

``open_target`` starts the embedded simulator when the profile asks for one (and
stops it afterwards, whatever happens); ``prepare_run`` checks the output
directory before any load, imports the load engine (which patches the standard
library), runs preflight and only then creates the run directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from capdisc.profiles import Profile
from capdisc.rundir import check_out_dir, create_out_dir
from capdisc.target import Target, target_from_profile

__all__ = ["open_target", "prepare_run"]


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


def prepare_run(target: Target, out_dir: Path, *, stream: bool = False) -> Path:
    """Check the output, the target (preflight, streamed with ``stream``), then create
    the run directory."""
    check_out_dir(out_dir)
    load_engine()
    from capdisc.clients.preflight import preflight

    preflight(target, stream=stream)
    return create_out_dir(out_dir)
