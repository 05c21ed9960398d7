"""capdisc's embedded LLM simulator: the default target, so every command works offline.

An OpenAI- and Ollama-compatible HTTP server with a capacity model you can reason
about (``slots``, ``queue_limit``, prefill and per-token times) and switchable faults,
plus ground-truth counters at ``/stats``. :class:`EmbeddedSimulator` runs it as a
child process for a load test; :func:`serve` runs it in the foreground.
"""

# The names are loaded on first use (PEP 562): every CLI command imports
# capdisc.simulator.config for its profile, and most never start a simulator, so
# they must not pay for the server and process modules.

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from capdisc.simulator.config import FaultConfig, SimulatorConfig
    from capdisc.simulator.process import EmbeddedSimulator, SimulatorStartError, serve

__all__ = ["EmbeddedSimulator", "FaultConfig", "SimulatorConfig", "SimulatorStartError", "serve"]

_HOMES = {
    "EmbeddedSimulator": "capdisc.simulator.process",
    "FaultConfig": "capdisc.simulator.config",
    "SimulatorConfig": "capdisc.simulator.config",
    "SimulatorStartError": "capdisc.simulator.process",
    "serve": "capdisc.simulator.process",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
