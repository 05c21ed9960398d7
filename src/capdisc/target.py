"""The resolved target of a run: a profile plus flags, with its secrets read from the environment.

Built once at the CLI edge (and on each worker, from its own environment). The key
and every header value read from ``{env:NAME}`` are ``SecretStr``; only
``auth_headers()`` reveals them, for the request headers, and ``mask()`` takes them
out of any text that came back from the server; ``info()`` is what reports may show.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

from pydantic import SecretStr

from capdisc.errors import UsageError
from capdisc.profiles import Profile
from capdisc.schema import TargetInfo
from capdisc.settings import TargetConfig
from capdisc.templates import env_names, fill_env

__all__ = ["Target", "read_api_key", "read_headers", "target_from_profile"]

MASK = "***"


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
    # target.headers with their {env:NAME} values read (all of them secret).
    headers: dict[str, SecretStr] = field(default_factory=dict)

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
        """The Authorization header (when the profile names a key variable) and
        ``target.headers``, secrets filled in."""
        headers = {name: value.get_secret_value() for name, value in self.headers.items()}
        if self.api_key is not None:
            headers["Authorization"] = f"Bearer {self.api_key.get_secret_value()}"
        return headers

    def mask(self, text: str) -> str:
        """``text`` (something the server sent back) with every secret replaced by ***."""
        for secret in self._secrets():
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def _secrets(self) -> list[str]:
        found = [self.api_key.get_secret_value()] if self.api_key is not None else []
        for name, value in self.headers.items():
            # What came from the environment is secret (alone and as filled in); a
            # literal value (X-Team: blue) is not.
            names = env_names(self.config.headers.get(name, ""))
            if names:
                found += [os.environ.get(var, "") for var in names]
                found.append(value.get_secret_value())
        # Longest first, so that a secret inside a longer one is not masked half.
        return sorted((s for s in found if len(s) >= 4), key=len, reverse=True)

    def with_base_url(self, base_url: str) -> Target:
        """The same target at another address (an embedded simulator's port)."""
        return replace(self, base_url=base_url.rstrip("/"))


def read_api_key(config: TargetConfig) -> SecretStr | None:
    """The key from the variable ``api_key_env`` names (None when unnamed or unset)."""
    value = os.environ.get(config.api_key_env) if config.api_key_env else None
    return SecretStr(value) if value else None


def read_headers(config: TargetConfig) -> dict[str, SecretStr]:
    """``target.headers`` with their ``{env:NAME}`` read; an unset variable is a ``UsageError``."""
    headers: dict[str, SecretStr] = {}
    for name, template in config.headers.items():
        try:
            headers[name] = SecretStr(fill_env(template))
        except KeyError as exc:
            raise UsageError(
                f"target.headers.{name}: environment variable {exc.args[0]} is not set "
                f"(the header reads {{env:{exc.args[0]}}})"
            ) from None
        except ValueError as exc:
            raise UsageError(f"target.headers.{name}: {exc}") from None
    return headers


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
        headers=read_headers(config),
    )
