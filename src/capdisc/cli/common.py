"""What the commands share: the profile a run targets, its run directory, progress, output."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from capdisc.cli.app import err, out

if TYPE_CHECKING:
    from collections.abc import Sequence

    from capdisc.loadgen.contract import ProgressSink
    from capdisc.profiles import Profile
    from capdisc.results import RunResult
    from capdisc.schema import DiscoverySummary, Summary
    from capdisc.settings import Settings

__all__ = [
    "command_line",
    "finish",
    "out_dir_for",
    "print_summary",
    "print_two_runs",
    "progress_sink",
    "target_profile",
]


def command_line(argv: list[str] | None = None) -> str:
    """The command that ran, shell-quoted, as ``capdisc ...`` (for summary.json's ``command``)."""
    import shlex

    args = list(sys.argv if argv is None else argv)
    return shlex.join(["capdisc", *args[1:]])


def target_profile(
    settings: Settings, profile: str | None, target_flags: Mapping[str, Any]
) -> Profile:
    """The profile a run targets, with the target flags applied.

    ``--host`` alone (no ``--profile``) is a plain OpenAI-compatible target; with a
    profile it sends that profile's requests to the URL instead of its simulator.
    """
    from capdisc.profiles import load_profile, plain_host_profile, with_target_overrides

    host = target_flags.get("host")
    if profile is None and host is not None:
        base = plain_host_profile(host)
        target_flags = {k: v for k, v in target_flags.items() if k != "host"}
    else:
        base = load_profile(profile or settings.profile, settings.profiles_dir)
    return with_target_overrides(base, target_flags)


def out_dir_for(settings: Settings, out_opt: Path | None, command: str, name: str) -> Path:
    """``--out``, or ``runs/<UTC timestamp>-<command>-<name>``."""
    from capdisc.rundir import default_out_dir

    return out_opt if out_opt is not None else default_out_dir(settings.runs_dir, command, name)


def progress_sink(quiet: bool) -> AbstractContextManager[ProgressSink | None]:
    """Live progress on stderr, or none with ``--quiet``."""
    if quiet:
        return nullcontext(None)
    from capdisc.progress import ConsoleProgress

    return ConsoleProgress(err)


def print_summary(
    summary: Summary, out_dir: Path, json_out: bool, warnings: list[str], verbose: bool = False
) -> None:
    """The result on stdout (table or JSON), warnings on stderr (``verbose``: every reason)."""
    from capdisc.reports.terminal import render_summary
    from capdisc.schema import dump_summary

    if json_out:
        sys.stdout.write(dump_summary(summary))
        sys.stdout.flush()
    else:
        render_summary(summary, out, verbose)
        out.print(f"Results in {out_dir}", highlight=False)
    for warning in warnings:
        err.print(f"warning: {warning}", style="yellow", highlight=False)


def finish(result: RunResult, json_out: bool, verbose: bool = False) -> None:
    """Write the run's files from its result (once), print it, and exit as it asks.

    The command line that ran goes into the summary first (report.html shows it).
    """
    from dataclasses import replace

    import typer

    from capdisc.rundir import write_run

    summary = result.summary.model_copy(update={"command": command_line()})
    result = write_run(replace(result, summary=summary))
    print_summary(result.summary, result.out_dir, json_out, result.warnings, verbose)
    if result.failure is not None:
        raise result.failure
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def print_two_runs(
    runs: Sequence[tuple[str, DiscoverySummary]], page: Path, json_out: bool
) -> None:
    """Two discoveries: each capacity and the difference (or both summaries as JSON)."""
    if json_out:
        import json

        data = {label: json.loads(s.model_dump_json(by_alias=True)) for label, s in runs}
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        sys.stdout.flush()
        return
    from capdisc.reports.terminal import render_two_runs

    render_two_runs(runs, out)
    out.print(f"Side by side in {page}", highlight=False)
