"""The resolved target of a run: a profile plus flags, with the API key read from the environment.

Built once at the CLI edge. The key is a ``SecretStr`` and only ``auth_headers()``
reveals it, for the request headers; ``info()`` is what reports may show.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from pydantic import SecretStr

from capdisc.errors import UsageError
from capdisc.profiles import Profile
from capdisc.schema import TargetInfo
from capdisc.settings import TargetConfig

__all__ = ["Target", "read_api_key", "target_from_profile"]


@dataclass(frozen=True)
class Target:
    """Everything a user of the load generator needs to send one request.

    ``config`` is the profile's ``[target]`` table with the flags applied (the one
    settings model); the target adds where it runs now and the key.
    """

    base_url: str
    config: TargetConfig
    label: str
    embedded: bool = False
    api_key: SecretStr | None = None

    @property
    def api(self) -> str:
        return self.config.api

    @property
    def model(self) -> str:
        return self.config.model

    @property
    def timeout_s(self) -> float:
        return self.config.timeout

    @property
    def prompt(self) -> str:
        return self.config.prompt

    @property
    def max_tokens(self) -> int:
        return self.config.max_tokens

    @property
    def api_key_env(self) -> str | None:
        return self.config.api_key_env

    def info(self) -> TargetInfo:
        """What reports may show of the target: never the key."""
        return TargetInfo(
            url=self.base_url,
            model=self.model,
            api=self.api,
            profile=self.label,
            embedded=self.embedded,
        )

    def auth_headers(self) -> dict[str, str]:
        """The Authorization header, when the profile names a key variable."""
        if self.api_key is None:
            return {}
        return {"Authorization": f"Bearer {self.api_key.get_secret_value()}"}

    def with_base_url(self, base_url: str) -> Target:
        """The same target at another address (an embedded simulator's port)."""
        return replace(self, base_url=base_url.rstrip("/"))


def read_api_key(config: TargetConfig) -> SecretStr | None:
    """The key from the variable ``api_key_env`` names (None when unnamed or unset)."""
    value = os.environ.get(config.api_key_env) if config.api_key_env else None
    return SecretStr(value) if value else None


def target_from_profile(profile: Profile, base_url: str | None = None) -> Target:
    """Resolve a profile to a target; ``base_url`` is given for embedded simulators."""
    config = profile.target
    url = base_url or config.host
    if url is None:
        raise UsageError(f"profile {profile.name}: no host to load (target.host)")
    return Target(
        base_url=url.rstrip("/"),
        config=config,
        label=profile.name,
        embedded=profile.embedded,
        api_key=read_api_key(config),
    )
