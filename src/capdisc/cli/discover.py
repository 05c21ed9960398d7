"""``capdisc discover batch|tools|stream``: build one discovery request, run it, render it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from capdisc.cli.app import discover_app
from capdisc.cli.common import finish, out_dir_for, progress_sink, target_profile
from capdisc.cli.options import (
    JsonOpt,
    OutOpt,
    ProfileOpt,
    QuietOpt,
    VerboseOpt,
    model_flags,
    settings_command,
)
from capdisc.settings import (
    RampSettings,
    StreamRampSettings,
    TargetConfig,
    ToolsSettings,
    WorkloadSettings,
)

__all__: list[str] = []  # the commands register themselves on discover_app

Strategy = Literal["batch", "tools", "stream"]


def _discover(
    strategy: Strategy,
    profile_name: str | None,
    target: Mapping[str, Any],
    workload: Mapping[str, Any],
    ramp: Mapping[str, Any],
    out_opt: Path | None,
    json_out: bool,
    quiet: bool,
    verbose: bool = False,
) -> None:
    from capdisc.settings import load_settings, resolve
    from capdisc.strategies.calibrate import cache_dir
    from capdisc.strategies.discovery import DiscoveryRequest

    env = load_settings()
    profile = target_profile(env, profile_name, target)
    if strategy == "tools":
        tools = resolve(ToolsSettings, profile.tools, env, ramp)
        if profile.target.api == "http" and tools.orchestration == "client":
            from capdisc.errors import UsageError

            raise UsageError(
                'tools.orchestration: api "http" has no tool calls of its own to force; '
                'use orchestration = "server" (server_path, server_body)'
            )
        settings: RampSettings = tools
    elif strategy == "stream":
        settings = resolve(StreamRampSettings, profile.discover_stream, env, ramp)
    else:
        settings = resolve(RampSettings, profile.batch, env, ramp)
    request = DiscoveryRequest(
        strategy=strategy,
        profile=profile,
        settings=settings,
        workload=resolve(WorkloadSettings, profile.workload, env, workload),
        out_dir=out_dir_for(env, out_opt, f"discover-{strategy}", profile.name),
        cache_dir=cache_dir(env),
    )
    if strategy == "tools":
        from capdisc.strategies.tools import discover_tools as run
    elif strategy == "stream":
        from capdisc.strategies.discover_stream import discover_stream as run
    else:
        from capdisc.strategies.batch import discover_batch as run
    with progress_sink(quiet) as progress:
        if progress is not None:
            progress.message(
                f"capdisc discover {strategy}: profile {profile.name}, results in {request.out_dir}"
            )
        result = run(request, progress)
    finish(result, json_out, verbose)


def _register(strategy: Strategy, model: type[RampSettings], doc: str) -> None:
    """One ``discover`` command: the target flags and the flags of its settings model."""

    def command(
        profile: ProfileOpt = None,
        out_dir: OutOpt = None,
        json_out: JsonOpt = False,
        quiet: QuietOpt = False,
        verbose: VerboseOpt = False,
        *,
        target: Mapping[str, Any],
        workload: Mapping[str, Any],
        ramp: Mapping[str, Any],
    ) -> None:
        _discover(strategy, profile, target, workload, ramp, out_dir, json_out, quiet, verbose)

    command.__doc__ = doc
    command.__name__ = f"discover_{strategy}"
    settings_command(
        discover_app,
        strategy,
        target=model_flags(TargetConfig),
        workload=model_flags(WorkloadSettings),
        ramp=model_flags(model),
    )(command)


_register(
    "batch",
    RampSettings,
    """Ramp users in steps with non-streaming requests and report the capacity.

    Each step holds a number of paced users for --step-duration (measured after
    all of them started). A step passes when its failure rate, p95 (with
    --slo-p95), throughput (at least 90% of users / interval) and pacing hold.
    The first failing step ends the climb; capacity is then refined by bisection
    and confirmed. The failure threshold stops everything at once, like Ctrl+C,
    and every report is still written.
    """,
)
_register(
    "tools",
    ToolsSettings,
    """Capacity discovery for tool-calling flows: every task makes exactly N tool calls.

    Client-orchestrated by default: N rounds with tool_choice forcing a call, a
    fake tool result appended each time, then one round with tool_choice "none"
    for the answer; the task's duration is the whole conversation. A task with
    another count fails ("expected 2 tool calls, got 3"). The spread of task
    durations at the first step is reported: the strategy needs a deterministic
    target. Ramp, verdicts and refinement are those of discover batch.
    """,
)
_register(
    "stream",
    StreamRampSettings,
    """Capacity for chat front ends: the batch ramp on streaming requests, judged on token SLOs.

    Each request streams (SSE, or NDJSON for Ollama); success is HTTP 200 with more
    than 2 content chunks. Besides the batch verdicts, a step fails when time to
    first token (--slo-ttft), time per output token (--slo-tpot) or the whole
    request (--slo-e2e) is over its limit at --slo-percentile (default p95), or when
    fewer than --min-goodput percent of its requests met every limit. Defaults come
    from the profile's [discover_stream] table.
    """,
)
