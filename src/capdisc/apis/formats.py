"""The wire format of a target: OpenAI-compatible, Ollama, or its own (``api = "http"``).

Apart from both kinds of format so that neither imports the other: the chat APIs are
:mod:`capdisc.apis.wire`, any other HTTP API is :mod:`capdisc.apis.http_api`.
"""

from __future__ import annotations

from capdisc.apis.http_api import HttpFormat
from capdisc.apis.wire import WireFormat, wire_format
from capdisc.settings import TargetConfig

__all__ = ["format_for"]


def format_for(config: TargetConfig) -> WireFormat:
    """The wire format of a target: its own paths and templates for ``api = "http"``."""
    if config.api == "http":
        return HttpFormat(config)
    return wire_format(config.api)
