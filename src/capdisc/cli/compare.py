"""``capdisc compare stream A B``: build one comparison request, run it, render it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer

from capdisc.cli.app import compare_app
from capdisc.cli.common import finish, out_dir_for, progress_sink
from capdisc.cli.options import (
    JsonOpt,
    OutOpt,
    QuietOpt,
    VerboseOpt,
    model_flags,
    settings_command,
)
from capdisc.settings import CompareSettings, TargetConfig, WorkloadSettings

__all__ = ["compare_stream"]


@settings_command(
    compare_app,
    "stream",
    target=model_flags(TargetConfig, exclude=["host"]),
    workload=model_flags(WorkloadSettings),
    load=model_flags(CompareSettings),
)
def compare_stream(
    a: Annotated[
        str,
        typer.Argument(help="Version A: profile name or path, base URL, or a saved run directory."),
    ],
    b: Annotated[str, typer.Argument(help="Version B: same kinds as A.")],
    out_dir: OutOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    *,
    target: Mapping[str, Any],
    workload: Mapping[str, Any],
    load: Mapping[str, Any],
) -> None:
    """Compare what users feel on two versions under the same fixed streaming load.

    Both versions get the same paced users, prompts and seed at temperature 0; live
    versions run in block pairs A B, B A, ... so drift cancels. Success is HTTP 200
    with more than 2 chunks, counted without parsing. Every metric (TTFT p50 and p95,
    TPOT p50, end-to-end p50 and p95, failures, answer length) gets its own 95%
    interval from the pairs (failures ranked slowest) and verdict against its margin.
    The verdict: b_slower when a judged metric (--gate) is slower beyond its margin
    (failures first), b_faster when none is slower and one is faster, equivalent when
    all are within, else inconclusive (also for unequal load, a queue building in both
    versions, or a client-bound block). With --gate or --fail-on-regression: exit 1
    regression, 0 pass, 5 inconclusive. Target options (--model, --api, ...) apply to
    both live versions.
    """
    from capdisc.settings import load_settings, resolve
    from capdisc.strategies.calibrate import cache_dir
    from capdisc.strategies.compare_stream import CompareRequest, resolve_source, run_compare

    env = load_settings()
    source_a = resolve_source(a, "a", env.profiles_dir, target)
    source_b = resolve_source(b, "b", env.profiles_dir, target)
    # Load defaults come from the first live side's profile (the shipped v1/v2 set short ones).
    live = [s.profile for s in (source_a, source_b) if s.profile is not None]
    settings = resolve(CompareSettings, live[0].stream if live else None, env, load)
    prompts = resolve(WorkloadSettings, live[0].workload if live else None, env, workload)
    names = "-vs-".join(s.profile.name if s.profile else "saved" for s in (source_a, source_b))
    request = CompareRequest(
        a=source_a,
        b=source_b,
        settings=settings,
        workload=prompts,
        out_dir=out_dir_for(env, out_dir, "compare-stream", names),
    )
    with progress_sink(quiet) as progress:
        if progress is not None:
            progress.message(
                f"capdisc compare stream: {source_a.label} vs {source_b.label}, "
                f"{settings.users} users every {settings.interval:g}s, "
                f"results in {request.out_dir}"
            )
        result = run_compare(request, progress, cache_dir(env))
    finish(result, json_out, verbose)
