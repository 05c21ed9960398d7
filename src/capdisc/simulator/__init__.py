"""capdisc's embedded LLM simulator: the default target, so every command works offline.

An OpenAI- and Ollama-compatible HTTP server with a capacity model you can reason
about (``slots``, ``queue_limit``, prefill and per-token times) and switchable faults,
plus ground-truth counters at ``/stats``. :class:`EmbeddedSimulator` runs it as a
child process for a load test; :func:`serve` runs it in the foreground.
"""

from capdisc.simulator.config import FaultConfig, SimulatorConfig
from capdisc.simulator.process import EmbeddedSimulator, SimulatorStartError, serve

__all__ = ["EmbeddedSimulator", "FaultConfig", "SimulatorConfig", "SimulatorStartError", "serve"]
