"""Every option's help renders whole: help is rich markup, so a bracket must be escaped.

``[simulator]`` or ``N[:SD]`` in a help text were read as markup tags and vanished
("Take the  table of this profile."). Each command's ``--help`` is rendered here at a
width that wraps nothing, and every option's text must appear as written.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from capdisc.cli import app


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    subcommands = getattr(command, "commands", None)  # a group (Typer's own click)
    if subcommands:
        for name, sub in subcommands.items():
            yield from _commands(sub, (*path, name))
    else:
        yield path


ROOT = typer.main.get_command(app)
COMMANDS = sorted(_commands(ROOT))


def _flat(text: str) -> str:
    """Help output as one line: box borders and wrapping gone."""
    return re.sub(r"\s+", " ", re.sub(r"[│╭╮╰╯─]", " ", text))


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_option_help_renders_whole(path: tuple[str, ...]) -> None:
    command: Any = ROOT
    for name in path:
        command = command.commands[name]
    result = CliRunner().invoke(
        app, [*path, "--help"], env={"COLUMNS": "1000", "TERMINAL_WIDTH": "1000"}
    )
    assert result.exit_code == 0, result.output
    shown = _flat(result.output)
    for param in command.params:
        help_text = getattr(param, "help", None)
        if not help_text:
            continue
        written = _flat(help_text.replace("\\[", "["))  # as written, escapes undone
        assert written in shown, f"{' '.join(path)} {param.name}: {written!r}"
