"""A finished run's result: what every output of the run directory is made from.

A strategy measures, checks and judges, and hands back one :class:`RunResult`: the
final summary (its verdict can no longer change), the rows the run kept in memory,
Locust's pages and the warnings. ``rundir.write_run`` then writes every file from it,
once; nothing reads back a file the same run wrote.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from capdisc.errors import RunFailed
from capdisc.schema import Summary

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["RunResult"]


@dataclass
class RunResult:
    """One command's result, ready for its outputs."""

    summary: Summary
    out_dir: Path
    # Every row this run measured (a records frame): the requests behind every figure.
    # A saved comparison version's rows are in ``measured`` (and ``requests.csv``), not here.
    records: pd.DataFrame
    # A comparison's measured rows of each version ("a", "b"), cut ones left out.
    measured: dict[str, pd.DataFrame] = field(default_factory=dict)
    # capdisc's own CPU and loop lag per process and second (client.csv's samples), or None.
    client: pd.DataFrame | None = None
    # Locust's own HTML pages by file name (``locust.html``; ``locust-a.html``, ...).
    pages: dict[str, str] = field(default_factory=dict)
    # What the user should know about the run; the writer adds files it could not write.
    warnings: list[str] = field(default_factory=list)
    # The exit code a comparison's gate asks for (0: none).
    exit_code: int = 0
    # Set when the run produced no result (exit 4); the outputs are written anyway.
    failure: RunFailed | None = None
