"""``discover batch``: ramping capacity discovery with non-streaming requests.

Success is HTTP 200 with a completion in the body; the ramp, verdicts and
refinement are those of :mod:`capdisc.strategies.ramp`.
"""

from __future__ import annotations

from dataclasses import replace

from capdisc.loadgen.contract import ProgressSink
from capdisc.results import RunResult
from capdisc.strategies.discovery import DiscoveryRequest, run_discovery

__all__ = ["discover_batch"]


def discover_batch(request: DiscoveryRequest, progress: ProgressSink | None) -> RunResult:
    """Find how many paced users the target sustains with one completion per task."""
    return run_discovery(replace(request, strategy="batch"), progress)
