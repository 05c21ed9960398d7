"""``discover tools``: deterministic capacity discovery for tool-calling flows.

Every task is a conversation with exactly N tool calls (client-orchestrated:
N forced rounds plus a final answer round; or one server-orchestrated request),
checked on every task. Fixing N makes task durations predictable, which is what
lets the batch ramp find a capacity for these flows too; the first step's spread
of durations is reported so a non-deterministic target is called out.
"""

from __future__ import annotations

from dataclasses import replace

from capdisc.errors import UsageError
from capdisc.loadgen.contract import ProgressSink
from capdisc.results import RunResult
from capdisc.settings import ToolsSettings
from capdisc.strategies.discovery import DiscoveryRequest, run_discovery

__all__ = ["discover_tools"]


def discover_tools(request: DiscoveryRequest, progress: ProgressSink | None) -> RunResult:
    """Find how many paced users the target sustains with N-tool-call tasks."""
    if not isinstance(request.settings, ToolsSettings):
        raise UsageError("--tools: required for discover tools")
    return run_discovery(replace(request, strategy="tools"), progress)
