"""Settings from the environment (``CAPDISC_*``), built once at the CLI edge.

Settings are about this machine and this shell (where profiles and runs live, the
failure threshold of the team); profiles are about a target. They are separate
models and are passed down explicitly, never read from a global.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Defaults a team sets once in its environment."""

    model_config = SettingsConfigDict(env_prefix="CAPDISC_", extra="ignore", frozen=True)

    failure_threshold: int = Field(
        default=5,
        ge=0,
        validation_alias=AliasChoices("LOAD_TEST_FAILURE_THRESHOLD", "CAPDISC_FAILURE_THRESHOLD"),
        description="Stop a run after this many failed requests (0 = never).",
    )
    profile: str = Field(default="demo", description="Profile used when none is given.")
    profiles_dir: Path | None = Field(default=None, description="Extra directory of profiles.")
    runs_dir: Path = Field(default=Path("runs"), description="Where run directories are made.")
