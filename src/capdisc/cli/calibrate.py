"""``capdisc calibrate``: measure (or show) what one capdisc process drives on this machine."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from capdisc.cli.app import app, out
from capdisc.cli.common import progress_sink
from capdisc.cli.options import QuietOpt

__all__ = ["calibrate"]


@app.command("calibrate")
def calibrate(
    workload: Annotated[
        Optional[list[str]],  # noqa: UP045  (typer needs Optional at runtime on 3.11)
        typer.Option(
            "--workload",
            "-w",
            metavar="batch|stream|tools",
            help="Measure only this workload (repeatable; default: batch, stream and tools).",
            show_default=False,
        ),
    ] = None,
    show: Annotated[
        bool, typer.Option("--show", help="Show the cached ceiling without measuring.")
    ] = False,
    json_out: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the ceiling as JSON instead of the table.",
            rich_help_panel="Output",
        ),
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Measure the client ceiling: what one capdisc process drives on this machine.

    For each workload (batch requests/s, stream chunks/s, tool rounds/s) it holds
    100 paced users every 20 ms on the real load engine against the embedded
    simulator with no service time (so the server is never the limit) and reads
    the process's own CPU: about 6 s per workload.

    The result is cached per machine and capdisc version, in CAPDISC_CACHE_DIR or
    else the user's cache directory (the path is printed), and reused: every run
    says how many --workers its planned peak needs, and --workers auto starts that
    many. A run whose planned peak is high calibrates its workload first when
    nothing is cached.
    """
    from capdisc.errors import UsageError
    from capdisc.settings import load_settings
    from capdisc.strategies.calibrate import KINDS, cache_dir, cache_path, load_ceiling

    directory = cache_dir(load_settings())
    if show:
        ceiling = load_ceiling(directory)
        if ceiling is None:
            raise UsageError(
                f"--show: nothing is cached for this machine and capdisc version "
                f"({cache_path(directory)}); run 'capdisc calibrate'"
            )
        path = cache_path(directory)
    else:
        from capdisc.strategies.calibrate import calibrate as measure

        kinds = [k for k in KINDS if k in workload] if workload else list(KINDS)
        unknown = sorted(set(workload or ()) - set(KINDS))
        if unknown:
            raise UsageError(f"--workload: {unknown[0]!r} is not batch, stream or tools")
        with progress_sink(quiet) as progress:
            if progress is not None:
                progress.message(
                    f"capdisc calibrate: {', '.join(kinds)}, about {6 * len(kinds)} s; "
                    f"cache {cache_path(directory)}"
                )
            ceiling, path = measure(kinds, directory, progress)
    if json_out:
        out.print_json(ceiling.model_dump_json())
        return
    from capdisc.reports.client import render_ceiling

    render_ceiling(ceiling, path, out)
