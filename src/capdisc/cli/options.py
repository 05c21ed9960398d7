"""Command-line options, declared once: shared aliases, and flags made from settings fields.

Every option of a load command is a field of a settings model
(:mod:`capdisc.settings`); :func:`settings_command` turns those fields into Typer
options (flag, help text and panel from the field), so a new option is one field.
The few options that are not settings (``--profile``, ``--out``, ``--json``,
``--quiet``, ``--verbose``) are declared here once and shared by every command.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from pydantic import BaseModel
from rich.markup import escape

from capdisc.settings import option_spec

__all__ = [
    "JsonOpt",
    "OutOpt",
    "ProfileOpt",
    "QuietOpt",
    "VerboseOpt",
    "model_flags",
    "settings_command",
]

ProfileOpt = Annotated[
    Optional[str],  # noqa: UP045  (typer needs Optional at runtime on 3.11)
    typer.Option(
        "--profile",
        "-p",
        help="Profile name or path (default: demo, the simulator).",
        rich_help_panel="Target",
        show_default=False,
    ),
]
OutOpt = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(
        "--out",
        "-o",
        help="Run directory (default runs/<UTC time>-<command>-<profile>).",
        rich_help_panel="Output",
        show_default=False,
    ),
]
JsonOpt = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print summary.json to stdout instead of the table.",
        rich_help_panel="Output",
    ),
]
QuietOpt = Annotated[
    bool,
    typer.Option("--quiet", "-q", help="No live progress on stderr.", rich_help_panel="Output"),
]
VerboseOpt = Annotated[
    bool,
    typer.Option(
        "--verbose",
        "-v",
        help="Every reason of every step under the table (report.html has them too).",
        rich_help_panel="Output",
    ),
]


def _flag_type(annotation: Any) -> type:
    """The Python type Typer parses a field's flag as (its value is validated later)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _flag_type(args[0])
    if origin is Annotated:
        return _flag_type(args[0])
    if annotation in (bool, int, float):
        return typing.cast(type, annotation)
    return str  # text, Literal choices and durations: the model validates them


def model_flags(
    model: type[BaseModel], *, exclude: Iterable[str] = (), panel: str | None = None
) -> list[inspect.Parameter]:
    """One keyword parameter per field of ``model`` that has a flag, default None (not given).

    Fields declared with :func:`capdisc.settings.option` carry their flag and panel;
    plain fields (the simulator's) get ``--field-name`` and ``panel``.
    """
    params = []
    for name, field in model.model_fields.items():
        if name in exclude:
            continue
        spec = option_spec(model, name)
        if spec is not None and spec.profile_only:
            continue
        if spec is None and panel is None:
            continue
        flag = spec.flag if spec is not None else "--" + name.replace("_", "-")
        where = spec.panel if spec is not None else panel
        kind = str if spec is not None and spec.duration else _flag_type(field.annotation)
        if kind is not str and kind not in (bool, int, float):
            continue  # nested tables (the simulator's faults) have their own model
        decls = [f"{flag}/--no-{flag[2:]}"] if kind is bool else [flag]
        info = typer.Option(
            *decls,
            # Help is rich markup: "[simulator]" or "N[:SD]" would vanish unescaped.
            help=escape(field.description or ""),
            rich_help_panel=where,
            show_default=False,
            metavar=("DUR" if spec.duration else spec.metavar) if spec is not None else None,
        )
        annotation = Annotated[Optional[kind], info]  # type: ignore[valid-type]  # noqa: UP045
        params.append(
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation
            )
        )
    return params


def settings_command(
    app: typer.Typer, name: str, **groups: list[inspect.Parameter]
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register a command whose settings flags are generated (see :func:`model_flags`).

    The decorated function declares its own parameters (arguments, shared options)
    and receives each group of generated flags as one mapping, e.g.
    ``settings_command(app, "batch", ramp=model_flags(RampSettings))`` calls it with
    ``ramp={"start_users": None, ...}`` (None: the flag was not given).
    """

    def register(fn: Callable[..., None]) -> Callable[..., None]:
        own = [
            p
            for p in inspect.signature(fn, eval_str=True).parameters.values()
            if p.name not in groups
        ]
        generated = [p for params in groups.values() for p in params]
        names = [p.name for p in own + generated]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise TypeError(f"{name}: options declared twice: {sorted(duplicates)}")

        def command(**kwargs: Any) -> None:
            grouped: dict[str, Mapping[str, Any]] = {
                group: {p.name: kwargs.pop(p.name) for p in params}
                for group, params in groups.items()
            }
            fn(**kwargs, **grouped)

        command.__signature__ = inspect.Signature(own + generated)  # type: ignore[attr-defined]
        command.__doc__ = fn.__doc__
        command.__name__ = fn.__name__
        command.__module__ = fn.__module__
        app.command(name)(command)
        return fn

    return register
