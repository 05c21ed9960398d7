"""How a settings field is declared and merged: the machinery under :mod:`capdisc.settings`.

A settings field declared with :func:`option` carries its command-line flag, help
text and panel (the CLI generates its options from them); :func:`merge_section` merges
built-in defaults < profile < environment < flags into a settings model and turns a
bad value into one line naming the flag. Durations accept what users type.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo

from capdisc.durations import parse_duration
from capdisc.errors import UsageError

__all__ = [
    "OptionSpec",
    "Panel",
    "PositiveSeconds",
    "Seconds",
    "SecondsTiers",
    "Section",
    "SectionT",
    "flag_of",
    "merge_section",
    "option",
    "option_spec",
    "validation_message",
]


def _seconds(value: Any) -> Any:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        try:
            return parse_duration(value, name="duration")
        except ValueError as exc:
            raise ValueError(str(exc).removeprefix("duration: ")) from None
    return value


# Durations accept what users type (500ms, 30s, 8m, 1h or seconds) and hold seconds.
Seconds = Annotated[float, BeforeValidator(_seconds), Field(ge=0)]
PositiveSeconds = Annotated[float, BeforeValidator(_seconds), Field(gt=0)]


def _tiers(value: Any) -> Any:
    """``200ms,500ms,1s`` (a flag), a list (a profile) or one duration -> seconds, tightest first."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        items = [items]
    if not items or any(isinstance(i, str) and not i.strip() for i in items):
        raise ValueError("expected DUR or DUR,DUR,... (e.g. 200ms,500ms,1s)")
    seconds = tuple(_seconds(i.strip() if isinstance(i, str) else i) for i in items)
    if any(not isinstance(v, float | int) or v <= 0 for v in seconds):
        raise ValueError("every limit must be a duration above 0")
    if list(seconds) != sorted(seconds):
        raise ValueError("tiers go from the tightest limit to the loosest (e.g. 200ms,500ms,1s)")
    return seconds


# One limit or SLO tiers (``200ms,500ms,1s``): positive seconds, tightest first.
SecondsTiers = Annotated[tuple[float, ...], BeforeValidator(_tiers)]

Panel = Literal["Target", "Workload", "Ramp", "SLO", "Load", "Run", "Output", "Simulator", "Faults"]


class OptionSpec(BaseModel):
    """How a settings field appears on the command line."""

    model_config = ConfigDict(frozen=True)

    flag: str
    panel: Panel
    duration: bool = False
    # Fields a profile may set but no flag does (the profile is their only source).
    profile_only: bool = False
    # Environment variables read for this field, first found wins.
    env: tuple[str, ...] = ()
    # How the flag's value shows in --help (DUR for durations).
    metavar: str | None = None


def option(
    default: Any = ...,
    *,
    help: str,
    panel: Panel,
    flag: str | None = None,
    duration: bool = False,
    profile_only: bool = False,
    env: tuple[str, ...] = (),
    metavar: str | None = None,
    **constraints: Any,
) -> Any:
    """A settings field with its command-line flag (``--field-name`` unless ``flag``)."""
    info: FieldInfo = Field(default, description=help, **constraints)
    spec = _Spec(flag, panel, duration, profile_only, env, metavar)
    info.metadata.append(spec)
    return info


@dataclass(frozen=True)
class _Spec:
    # A plain dataclass: pydantic would treat a model in a field's metadata as a validator.
    flag: str | None
    panel: Panel
    duration: bool
    profile_only: bool
    env: tuple[str, ...]
    metavar: str | None


def option_spec(model: type[BaseModel], name: str) -> OptionSpec | None:
    """The flag of a field declared with :func:`option`, None for a plain field."""
    for item in model.model_fields[name].metadata:
        if isinstance(item, _Spec):
            data = dataclasses.asdict(item)
            data["flag"] = item.flag or "--" + name.replace("_", "-")
            return OptionSpec.model_validate(data)
    return None


def flag_of(model: type[BaseModel], name: str) -> str:
    """The flag that sets ``name`` (its dashed name when the field has none)."""
    spec = option_spec(model, name) if name in model.model_fields else None
    return spec.flag if spec is not None else "--" + name.replace("_", "-")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def validation_message(error: ValidationError, name_of: Mapping[str, str] | None = None) -> str:
    """``where: message`` for the first problem, ``where`` from ``name_of`` or the field path."""
    first = error.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    if name_of is not None and loc in name_of:
        return f"{name_of[loc]}: {message}"
    if not loc:
        # A rule across fields: name the field it mentions first.
        for field, flag in (name_of or {}).items():
            if message.startswith(field):
                return f"{flag}: {message}"
    return f"{loc}: {message}" if loc else message


SectionT = TypeVar("SectionT", bound=Section)


def merge_section(
    model: type[SectionT],
    profile_section: BaseModel | None,
    env: Mapping[str, Any],
    flags: Mapping[str, Any],
) -> SectionT:
    """Merge built-in defaults < profile < environment < flags into ``model``.

    ``env`` holds the values the environment set, by field name (a field takes one
    only when its option names an environment variable); ``flags`` maps field names
    to what the command line gave (None = not given).
    Durations may still be text (``30s``): the model parses them. A bad value
    raises a ``UsageError`` naming its flag.
    """
    data: dict[str, Any] = {}
    if profile_section is not None:
        data.update(profile_section.model_dump(exclude_unset=True))
    for name in model.model_fields:
        spec = option_spec(model, name)
        if spec is not None and spec.env and name in env:
            data[name] = env[name]
    unknown = set(flags) - set(model.model_fields)
    if unknown:
        raise ValueError(f"not fields of {model.__name__}: {sorted(unknown)}")
    data.update({k: v for k, v in flags.items() if v is not None})
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        flags_by_field = {name: flag_of(model, name) for name in model.model_fields}
        raise UsageError(validation_message(exc, flags_by_field)) from None
