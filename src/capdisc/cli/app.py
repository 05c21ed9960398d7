"""The Typer applications (the root and its command groups) and the two consoles.

Results go to ``out`` (stdout); progress, warnings and errors go to ``err`` (stderr),
so ``--json`` output stays machine-readable.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

from capdisc import __version__

__all__ = [
    "app",
    "compare_app",
    "discover_app",
    "err",
    "out",
    "profiles_app",
    "simulator_app",
]

HELP = """\
capdisc finds how much load an LLM-serving API really takes, and whether a new
version is faster than the old one. Load runs on embedded Locust with constant
pacing (each user starts a task every --interval seconds), and every figure comes
from capdisc's own per-request records.

With no profile, commands run against the embedded LLM simulator (profile
[bold]demo[/bold]), so everything works on a fresh machine.
"""

app = typer.Typer(
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
discover_app = typer.Typer(
    help="Find the capacity of a target: the most paced users it sustains within limits.",
    no_args_is_help=True,
)
compare_app = typer.Typer(
    help="Compare two versions of a target under the same fixed load.", no_args_is_help=True
)
simulator_app = typer.Typer(
    help="The embedded LLM simulator (the default target).", no_args_is_help=True
)
profiles_app = typer.Typer(help="Target profiles: TOML files in profiles/.", no_args_is_help=True)
app.add_typer(discover_app, name="discover")
app.add_typer(compare_app, name="compare")
app.add_typer(simulator_app, name="simulator")
app.add_typer(profiles_app, name="profiles")

# Redirected output (a file, CI logs) gets wide tables rather than 80 columns.
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True)


def _version(value: bool) -> None:
    if value:
        out.print(f"capdisc {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """capdisc: capacity discovery and version comparison for LLM-serving APIs."""
