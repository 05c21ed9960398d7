"""``capdisc report RUN_DIR`` (a saved run again) and ``capdisc worker`` (join a run)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from capdisc.cli.app import app
from capdisc.cli.common import print_summary, print_two_runs
from capdisc.cli.options import JsonOpt, VerboseOpt

__all__ = ["report", "worker"]


@app.command("report")
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory holding summary.json.")],
    run_b: Annotated[
        Optional[Path],  # noqa: UP045  (typer needs Optional at runtime on 3.11)
        typer.Argument(help="A second discovery: the two side by side.", show_default=False),
    ] = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
    plots: Annotated[
        bool, typer.Option("--plots", help="Also redraw the PNG plots from the records.")
    ] = False,
    html_out: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--html",
            help="With RUN_B: where the side-by-side page goes (default "
            "report-<A>-vs-<B>.html here).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Rebuild a finished run's report.html and terminal view from its files (any schema).

    With a second run directory, two discoveries side by side: each capacity, the
    difference, and both curves on one chart in one page.
    """
    from capdisc.errors import UsageError
    from capdisc.reports.rebuild import NotARun, run_label

    try:
        if run_b is None:
            from capdisc.rundir import rebuild_report

            summary = rebuild_report(run_dir, plots)
            print_summary(summary, run_dir, json_out, [], verbose)
            return
        from capdisc.rundir import write_two_runs

        a_name, b_name = run_label(run_dir, run_b), run_label(run_b, run_dir)
        page = html_out or Path(f"report-{run_dir.resolve().name}-vs-{run_b.resolve().name}.html")
        a, b = write_two_runs(run_dir, run_b, page)
    except NotARun as exc:
        raise UsageError(f"RUN_DIR: {exc}") from None
    from capdisc.schema import DiscoverySummary

    assert isinstance(a, DiscoverySummary) and isinstance(b, DiscoverySummary)
    print_two_runs([(a_name, a), (b_name, b)], page, json_out)


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
