"""The ``capdisc`` command line: parse, build the settings, call one function, render, exit.

One module per command group (:mod:`.discover`, :mod:`.compare`, :mod:`.calibrate`,
:mod:`.simulator`, :mod:`.profiles`, :mod:`.run`); options are declared once
(:mod:`.options`), most of them generated from the settings models. Heavy imports
(locust, pandas, matplotlib) happen inside commands, so ``capdisc --help`` stays fast
and never patches the standard library. Every :class:`~capdisc.errors.CapdiscError`
becomes one line on stderr and its exit code.
"""

from __future__ import annotations

import sys
from typing import Any

import typer

from capdisc.cli import calibrate, compare, discover, profiles, run, simulator
from capdisc.cli.app import app, err
from capdisc.errors import CapdiscError

__all__ = ["app", "main"]

_ = (calibrate, compare, discover, profiles, run, simulator)  # imported to register their commands

# Typer re-exports click's BadParameter; its base is click's UsageError, whichever click
# (its own vendored copy or the package) this Typer release parses with.
_UsageError: type[Exception] = typer.BadParameter.__mro__[1]


def _usage_line(exc: Any) -> str:
    """One line naming the flag, from a click usage error."""
    message = " ".join(exc.format_message().split())
    param = getattr(exc, "param", None)
    if param is not None and getattr(param, "opts", None):
        flag = "/".join(o for o in param.opts if o.startswith("--")) or param.opts[0]
        if flag not in message:
            message = f"{flag}: {message}"
    command = getattr(getattr(exc, "ctx", None), "command_path", "")
    return f"{message} (see '{command} --help')" if command else message


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; map capdisc errors and usage errors to one line and an exit code."""
    command = typer.main.get_command(app)
    try:
        # Without standalone mode, click returns the code of a typer.Exit instead of exiting.
        code = command.main(args=argv, prog_name="capdisc", standalone_mode=False)
    except CapdiscError as exc:
        err.print(f"capdisc: error: {exc.message}", highlight=False, markup=False)
        if exc.hint:
            err.print(f"Tip: {exc.hint}", highlight=False, markup=False)
        sys.exit(exc.exit_code)
    except _UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # a group called alone: its help
            err.print(exc.format_message(), highlight=False, markup=False)  # type: ignore[attr-defined]
            sys.exit(0)
        err.print(f"capdisc: error: {_usage_line(exc)}", highlight=False, markup=False)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("capdisc: aborted", highlight=False)
        sys.exit(130)
    except KeyboardInterrupt:
        err.print("capdisc: interrupted", highlight=False)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
