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

__all__ = ["Target", "target_from_profile"]


@dataclass(frozen=True)
class Target:
    """Everything a user of the load generator needs to send one request."""

    base_url: str
    api: str
    model: str
    timeout_s: float
    prompt: str
    max_tokens: int
    label: str
    embedded: bool = False
    api_key: SecretStr | None = None
    api_key_env: str | None = None

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


def target_from_profile(profile: Profile, base_url: str | None = None) -> Target:
    """Resolve a profile to a target; ``base_url`` is given for embedded simulators."""
    config = profile.target
    url = base_url or config.host
    if url is None:
        raise UsageError(f"profile {profile.name}: no host to load (target.host)")
    key: SecretStr | None = None
    if config.api_key_env:
        value = os.environ.get(config.api_key_env)
        if value:
            key = SecretStr(value)
    return Target(
        base_url=url.rstrip("/"),
        api=config.api,
        model=config.model,
        timeout_s=config.timeout,
        prompt=config.prompt,
        max_tokens=config.max_tokens,
        label=profile.name,
        embedded=profile.embedded,
        api_key=key,
        api_key_env=config.api_key_env,
    )
