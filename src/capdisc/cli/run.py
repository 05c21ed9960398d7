"""``capdisc report RUN_DIR`` (a saved run again) and ``capdisc worker`` (join a run)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from capdisc.cli.app import app
from capdisc.cli.common import print_summary
from capdisc.cli.options import JsonOpt

__all__ = ["report", "worker"]


@app.command("report")
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory holding summary.json.")],
    json_out: JsonOpt = False,
    plots: Annotated[
        bool, typer.Option("--plots", help="Also redraw the plots from the records.")
    ] = False,
) -> None:
    """Re-render the terminal summary (and with --plots, the plots) of a saved run."""
    from pydantic import ValidationError

    from capdisc.errors import UsageError
    from capdisc.schema import DiscoverySummary, load_summary

    path = run_dir / "summary.json"
    if not path.is_file():
        raise UsageError(f"RUN_DIR: {run_dir} holds no summary.json")
    try:
        summary = load_summary(path)
    except (ValueError, ValidationError) as exc:
        raise UsageError(f"{path}: not a capdisc summary ({str(exc).splitlines()[0]})") from None
    if plots and isinstance(summary, DiscoverySummary):
        from capdisc.reports.plots import plot_capacity

        plot_capacity(summary, run_dir / "capacity.png")
    print_summary(summary, run_dir, json_out, [])


@app.command("worker")
def worker(
    master: Annotated[str, typer.Option("--master", help="Master to join, HOST[:PORT].")],
) -> None:
    """Join a distributed run as a Locust worker until the master quits (or SIGINT/SIGTERM:
    its requests finish, up to the stop timeout, and its rows are sent first).

    The master is a capdisc run with --expect-workers (or --workers for local
    processes). The worker learns the workload from the master; API keys are
    read from this machine's environment, never sent over the wire.
    """
    from capdisc.strategies.preparation import load_engine

    load_engine()
    from capdisc.loadgen.distributed import parse_master, run_worker

    host, port = parse_master(master)
    run_worker(host, port)
