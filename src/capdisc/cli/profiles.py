"""``capdisc profiles list | show NAME | validate PATH``."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from capdisc.cli.app import out, profiles_app

__all__ = ["profiles_list", "profiles_show", "profiles_validate"]


@profiles_app.command("list")
def profiles_list() -> None:
    """List the profiles found (CAPDISC_PROFILES_DIR, ./profiles, shipped ones)."""
    from rich.table import Table

    from capdisc.errors import CapdiscError
    from capdisc.profiles import list_profiles, load_profile
    from capdisc.settings import load_settings

    table = Table("name", "target", "description", box=None, pad_edge=False)
    for name, path in list_profiles(load_settings().profiles_dir).items():
        try:
            prof = load_profile(str(path))
            where = (
                "embedded simulator" if prof.embedded else f"{prof.target.api} {prof.target.host}"
            )
            table.add_row(name, where, prof.description)
        except CapdiscError as exc:
            table.add_row(name, "[red]invalid[/red]", exc.message)
    out.print(table)


@profiles_app.command("show")
def profiles_show(
    name: Annotated[str, typer.Argument(help="Profile name or path.")],
) -> None:
    """Show a profile with every default filled in, as TOML-like text."""
    from capdisc.profiles import load_profile
    from capdisc.settings import load_settings

    prof = load_profile(name, load_settings().profiles_dir)
    out.print(f"# {prof.path}", highlight=False)
    data = prof.model_dump(mode="json", exclude_none=True)
    for section, values in data.items():
        if not isinstance(values, dict):
            out.print(f"{section} = {json.dumps(values)}", highlight=False)
    for section, values in data.items():
        if isinstance(values, dict):
            _show_table(section, values)


def _show_table(section: str, values: dict[str, Any]) -> None:
    out.print(f"\n[{section}]", highlight=False, markup=False)
    nested = {k: v for k, v in values.items() if isinstance(v, dict)}
    for key, value in values.items():
        if key not in nested:
            out.print(f"{key} = {json.dumps(value)}", highlight=False, markup=False)
    for key, value in nested.items():
        _show_table(f"{section}.{key}", value)


@profiles_app.command("validate")
def profiles_validate(
    path: Annotated[str, typer.Argument(help="Profile file (or name) to check.")],
) -> None:
    """Check a profile file; one line naming the file and field on error (exit 2)."""
    from capdisc.profiles import load_profile
    from capdisc.settings import load_settings

    prof = load_profile(path, load_settings().profiles_dir)
    out.print(f"{prof.path}: valid", highlight=False)
