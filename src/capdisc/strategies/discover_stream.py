"""``discover stream``: capacity for chat front ends, on streaming requests.

The ramp, refinement and verdicts are those of ``discover batch``
(:mod:`capdisc.strategies.ramp`); only the user (a streaming request, judged by
counting content chunks) and the judge differ: each step is also held to the token
SLOs (``--slo-ttft``, ``--slo-tpot``, ``--slo-e2e`` at ``--slo-percentile``, and
``--min-goodput``), so the capacity found is the load at which enough requests still
get their first token, and every next one, in time.
"""

from __future__ import annotations

from dataclasses import replace

from capdisc.errors import UsageError
from capdisc.loadgen.contract import ProgressSink
from capdisc.results import RunResult
from capdisc.settings import StreamRampSettings
from capdisc.strategies.discovery import DiscoveryRequest, run_discovery

__all__ = ["discover_stream"]


def discover_stream(request: DiscoveryRequest, progress: ProgressSink | None) -> RunResult:
    """Find how many paced users the target sustains with streamed answers within the SLOs."""
    settings = request.settings
    if not isinstance(settings, StreamRampSettings):
        raise UsageError("discover stream: needs the [discover_stream] settings")
    return run_discovery(replace(request, strategy="stream"), progress)
