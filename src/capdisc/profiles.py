"""Target profiles: TOML files that name a target and the defaults of each strategy.

A profile is looked up by name in the profile directories (``CAPDISC_PROFILES_DIR``,
``./profiles``, then the profiles shipped with capdisc) or read from a path. Unknown
keys are errors, and so is anything that looks like a secret: a profile names the
environment variable that holds an API key (``api_key_env``), never the key.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from capdisc.errors import ProfileError
from capdisc.settings import (
    CompareSettings,
    RampSettings,
    StreamRampSettings,
    TargetConfig,
    ToolsSettings,
    WorkloadSettings,
    flag_of,
    validation_message,
)
from capdisc.simulator.config import SimulatorConfig

__all__ = [
    "Profile",
    "find_profile",
    "list_profiles",
    "load_profile",
    "shipped_profiles_dir",
]

_SECRET_KEYS = re.compile(r"^(api_?key|token|secret|password|bearer|authorization)$", re.I)
_SECRET_VALUES = re.compile(r"^(sk-|sk_|hf_|Bearer\s)", re.I)
# Headers that carry credentials (Authorization, X-Api-Key, Cookie, ...).
_SECRET_HEADER = re.compile(r"auth|key|token|secret|password|cookie|session", re.I)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Profile(_Strict):
    """One target with the defaults of every strategy."""

    description: str = ""
    target: TargetConfig = Field(default_factory=TargetConfig)
    simulator: SimulatorConfig | None = None
    workload: WorkloadSettings = Field(default_factory=WorkloadSettings)
    batch: RampSettings = Field(default_factory=RampSettings)
    tools: ToolsSettings = Field(default_factory=ToolsSettings)
    stream: CompareSettings = Field(default_factory=CompareSettings)
    discover_stream: StreamRampSettings = Field(default_factory=StreamRampSettings)
    name: str = Field(default="custom", exclude=True)
    path: Path | None = Field(default=None, exclude=True)

    @property
    def embedded(self) -> bool:
        """True when capdisc starts its own simulator for this profile."""
        return self.target.embedded or self.simulator is not None

    @property
    def simulator_config(self) -> SimulatorConfig:
        """The simulator to start (the defaults when the profile only says embedded)."""
        return self.simulator or SimulatorConfig(model=self.target.model)

    @model_validator(mode="after")
    def _coherent(self) -> Profile:
        if self.embedded and self.target.host is not None:
            raise ValueError("target.host: an embedded profile must not name a host")
        if not self.embedded and self.target.host is None:
            raise ValueError("target.host: required unless target.embedded is true")
        return self


def shipped_profiles_dir() -> Path:
    """Profiles shipped with capdisc (inside the wheel, or at the top of a checkout)."""
    here = Path(__file__).resolve().parent
    packaged = here / "profiles"
    return packaged if packaged.is_dir() else here.parents[1] / "profiles"


def _search_dirs(extra: Path | None) -> list[Path]:
    dirs = [extra] if extra is not None else []
    dirs += [Path.cwd() / "profiles", shipped_profiles_dir()]
    unique: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [u.resolve() for u in unique]:
            unique.append(d)
    return unique


def list_profiles(profiles_dir: Path | None = None) -> dict[str, Path]:
    """Every profile name found, first directory wins, sorted by name."""
    found: dict[str, Path] = {}
    for d in _search_dirs(profiles_dir):
        for path in sorted(d.glob("*.toml")):
            found.setdefault(path.stem, path)
    return dict(sorted(found.items()))


def find_profile(name_or_path: str, profiles_dir: Path | None = None) -> Path:
    """Resolve a profile name or a path to a file, or raise ``ProfileError``."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or "/" in name_or_path or candidate.is_file():
        if not candidate.is_file():
            raise ProfileError(f"profile file not found: {name_or_path}")
        return candidate
    known = list_profiles(profiles_dir)
    if name_or_path in known:
        return known[name_or_path]
    names = ", ".join(known) or "none"
    raise ProfileError(f"unknown profile {name_or_path!r} (known: {names})")


def _refuse_secrets(data: Mapping[str, Any], where: str, prefix: str = "") -> None:
    for key, value in data.items():
        path = f"{prefix}{key}"
        if path == "target.headers" and isinstance(value, Mapping):
            _refuse_secret_headers(value, where, f"{path}.")
        elif isinstance(value, Mapping):
            _refuse_secrets(value, where, f"{path}.")
        elif _SECRET_KEYS.match(str(key)) or (
            isinstance(value, str) and _SECRET_VALUES.match(value)
        ):
            raise ProfileError(
                f"{where}: {path}: profiles must not hold secrets; "
                "name the environment variable with target.api_key_env"
            )


def _refuse_secret_headers(headers: Mapping[str, Any], where: str, prefix: str) -> None:
    """A header that carries credentials must read them from the environment ({env:NAME})."""
    for key, value in headers.items():
        if not isinstance(value, str) or "{env:" in value:
            continue
        if _SECRET_HEADER.search(str(key)) or _SECRET_VALUES.match(value):
            raise ProfileError(
                f"{where}: {prefix}{key}: profiles must not hold secrets; "
                'read it from the environment: "{env:NAME}"'
            )


def format_validation_error(error: ValidationError, where: str) -> str:
    """One line naming the file and the field path of the first problem."""
    more = len(error.errors()) - 1
    suffix = f" (and {more} more)" if more else ""
    line = validation_message(error)
    if not error.errors()[0]["loc"]:
        line = f"(top level): {line}"
    return f"{where}: {line}{suffix}"


def parse_profile(data: Mapping[str, Any], *, name: str, path: Path | None) -> Profile:
    """Validate already-parsed TOML data as a profile."""
    where = str(path) if path is not None else name
    _refuse_secrets(data, where)
    try:
        profile = Profile.model_validate(dict(data))
    except ValidationError as exc:
        raise ProfileError(format_validation_error(exc, where)) from None
    return profile.model_copy(update={"name": name, "path": path})


def load_profile(name_or_path: str, profiles_dir: Path | None = None) -> Profile:
    """Find, read and validate a profile; every problem is a one-line ``ProfileError``."""
    path = find_profile(name_or_path, profiles_dir)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_profile(data, name=path.stem, path=path)


def plain_host_profile(host: str) -> Profile:
    """The profile of ``--host URL`` given alone: an OpenAI-compatible target, no simulator."""
    try:
        return Profile(target=TargetConfig(host=host), name="custom")
    except ValidationError as exc:
        raise ProfileError(validation_message(exc, {"host": "--host"})) from None


def with_target_overrides(profile: Profile, overrides: Mapping[str, Any]) -> Profile:
    """The profile with ``--host``/``--model``/... applied; errors name the flag.

    A ``--host`` replaces an embedded simulator: the load goes to that URL instead.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    if not given:
        return profile
    unknown = set(given) - set(TargetConfig.model_fields)
    if unknown:
        raise ValueError(f"not target fields: {sorted(unknown)}")
    data = profile.model_dump(mode="python", exclude={"name", "path"})
    data["target"].update(given)
    if "host" in given:
        data["target"]["embedded"] = False
        data["simulator"] = None
    try:
        updated = Profile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(p) for p in first["loc"]]
        field = loc[1] if len(loc) > 1 and loc[0] == "target" else loc[-1] if loc else ""
        message = first["msg"].removeprefix("Value error, ")
        if field == "target":
            # A rule across the target's fields: its message opens with the field to change.
            field = next((f for f in TargetConfig.model_fields if message.startswith(f + " ")), "")
        flag = flag_of(TargetConfig, field) if field else "--api"
        raise ProfileError(f"{flag}: {message}") from None
    return updated.model_copy(update={"name": profile.name, "path": profile.path})
