"""The simulator's optional API key, read from the variable ``api_key_env`` names.

With a key, the generation and model endpoints need ``Authorization: Bearer <key>``
while ``/health`` and ``/stats`` stay open, so that a test can still observe the
simulator. The key itself never appears in a message or a log.
"""

from __future__ import annotations

import hmac
import os

from capdisc.simulator.config import SimulatorConfig
from capdisc.simulator.errors import HttpError
from capdisc.simulator.protocol import Request


def read_api_key(config: SimulatorConfig) -> str | None:
    """The key the simulator requires, read from ``config.api_key_env`` (None: no auth).

    Raises ``ValueError`` naming the variable (never its value) when it is unset or empty.
    """
    if config.api_key_env is None:
        return None
    key = os.environ.get(config.api_key_env, "")
    if not key:
        raise ValueError(
            f"simulator.api_key_env names {config.api_key_env!r}, "
            "but that environment variable is not set"
        )
    return key


class ApiKey:
    """Checks a request's bearer token against the key, if there is one."""

    def __init__(self, key: str | None) -> None:
        self._key = None if key is None else key.encode()

    @property
    def required(self) -> bool:
        return self._key is not None

    def check(self, request: Request) -> None:
        """Raise a 401 unless the request carries the key (no-op without a key)."""
        if self._key is None:
            return
        scheme, _, token = request.headers.get(b"authorization", b"").partition(b" ")
        # Constant-time comparison: the key must not leak through response timing.
        if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self._key):
            raise HttpError(
                401,
                "missing or invalid API key (expected 'Authorization: Bearer <key>')",
                "authentication_error",
                headers=b'WWW-Authenticate: Bearer realm="capdisc-simulator"\r\n',
            )
