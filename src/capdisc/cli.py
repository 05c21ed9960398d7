"""The ``capdisc`` command line: parse, call one library function, render, set the exit code.

Commands stay thin. Strategies decide, the load engine drives Locust, reports
render. Heavy imports (locust, pandas, matplotlib) happen inside commands so that
``capdisc --help`` stays fast and never patches the standard library. Every
:class:`~capdisc.errors.CapdiscError` becomes one line on stderr and its exit code.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import typer
from rich.console import Console

try:  # typer >= 0.20 vendors click; older releases use click itself
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover
    from click import exceptions as click_exc  # type: ignore[no-redef]

from capdisc import __version__
from capdisc.durations import parse_duration
from capdisc.errors import CapdiscError, UsageError

__all__ = ["app", "main"]

HELP = """\
capdisc finds how much load an LLM-serving API really takes, and whether a new
version is faster than the old one. Load runs on embedded Locust with constant
pacing (each user starts a task every --interval seconds), and every figure comes
from capdisc's own per-request records.

With no profile, commands run against the embedded LLM simulator (profile
[bold]demo[/bold]), so everything works on a fresh machine.
"""

app = typer.Typer(
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
discover_app = typer.Typer(
    help="Find the capacity of a target: the most paced users it sustains within limits.",
    no_args_is_help=True,
)
compare_app = typer.Typer(
    help="Compare two versions of a target under the same fixed load.", no_args_is_help=True
)
simulator_app = typer.Typer(
    help="The embedded LLM simulator (the default target).", no_args_is_help=True
)
profiles_app = typer.Typer(help="Target profiles: TOML files in profiles/.", no_args_is_help=True)
app.add_typer(discover_app, name="discover")
app.add_typer(compare_app, name="compare")
app.add_typer(simulator_app, name="simulator")
app.add_typer(profiles_app, name="profiles")

# Redirected output (a file, CI logs) gets wide tables rather than 80 columns.
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True)

# -- shared options --------------------------------------------------------

TARGET = "Target"
RAMP = "Ramp"
OUTPUT = "Output"

ProfileOpt = Annotated[
    Optional[str],  # noqa: UP045  (typer needs Optional at runtime on 3.11)
    typer.Option(
        "--profile",
        "-p",
        help="Profile name or path (default: demo, the simulator).",
        rich_help_panel=TARGET,
        show_default=False,
    ),
]
HostOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--host",
        help="Base URL of the target; alone, an OpenAI-compatible API.",
        rich_help_panel=TARGET,
        show_default=False,
    ),
]
ModelOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--model", help="Model name to ask for.", rich_help_panel=TARGET, show_default=False
    ),
]
ApiOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--api", help="Wire format: openai or ollama.", rich_help_panel=TARGET, show_default=False
    ),
]
TimeoutOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--timeout",
        help="Timeout of one request (DUR: 500ms, 30s, 8m).",
        rich_help_panel=TARGET,
        show_default=False,
    ),
]
PromptOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--prompt", help="Prompt of every request.", rich_help_panel=TARGET, show_default=False
    ),
]
MaxTokensOpt = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option(
        "--max-tokens", help="Output tokens asked for.", rich_help_panel=TARGET, show_default=False
    ),
]
StartUsersOpt = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option(
        "--start-users", help="Users of the first step.", rich_help_panel=RAMP, show_default=False
    ),
]
StepUsersOpt = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option(
        "--step-users", help="Users added per step.", rich_help_panel=RAMP, show_default=False
    ),
]
MaxUsersOpt = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option(
        "--max-users",
        help="Never go above this many users.",
        rich_help_panel=RAMP,
        show_default=False,
    ),
]
StepDurationOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--step-duration",
        help="Measured time of each step (DUR).",
        rich_help_panel=RAMP,
        show_default=False,
    ),
]
IntervalOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--interval",
        help="Constant pacing: each user starts a task every this many seconds (default 20).",
        rich_help_panel=RAMP,
        show_default=False,
    ),
]
ThresholdOpt = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option(
        "--failure-threshold",
        help="Stop the run after this many failed requests "
        "(default 5, 0 = never; env LOAD_TEST_FAILURE_THRESHOLD).",
        rich_help_panel=RAMP,
        show_default=False,
    ),
]
MaxFailureRateOpt = Annotated[
    Optional[float],  # noqa: UP045
    typer.Option(
        "--max-failure-rate",
        help="A step fails above this failure rate, in percent.",
        rich_help_panel=RAMP,
        show_default=False,
    ),
]
SloOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--slo-p95",
        help="A step fails when its p95 latency is above this (DUR).",
        rich_help_panel=RAMP,
        show_default=False,
    ),
]
RefineOpt = Annotated[
    Optional[bool],  # noqa: UP045
    typer.Option(
        "--refine/--no-refine",
        help="Bisect between the last passing and the first failing step.",
        rich_help_panel=RAMP,
        show_default=False,
    ),
]
KeepGoingOpt = Annotated[
    bool,
    typer.Option("--keep-going", help="Keep climbing after a failing step.", rich_help_panel=RAMP),
]
WorkersOpt = Annotated[
    int,
    typer.Option(
        "--workers",
        help="Local Locust worker processes, capdisc being the master (0 = users run here).",
        rich_help_panel=RAMP,
    ),
]
ExpectWorkersOpt = Annotated[
    int,
    typer.Option(
        "--expect-workers",
        help="Wait for this many 'capdisc worker' processes from other machines "
        "(the master listens on port 5557).",
        rich_help_panel=RAMP,
    ),
]
OutOpt = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(
        "--out",
        "-o",
        help="Run directory (default runs/<UTC time>-<command>-<profile>).",
        rich_help_panel=OUTPUT,
        show_default=False,
    ),
]
JsonOpt = Annotated[
    bool,
    typer.Option(
        "--json", help="Print summary.json to stdout instead of the table.", rich_help_panel=OUTPUT
    ),
]
QuietOpt = Annotated[
    bool,
    typer.Option("--quiet", "-q", help="No live progress on stderr.", rich_help_panel=OUTPUT),
]


def _version(value: bool) -> None:
    if value:
        out.print(f"capdisc {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """capdisc: capacity discovery and version comparison for LLM-serving APIs."""


# -- helpers ----------------------------------------------------------------


def _seconds(value: str | None, flag: str) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value, name=flag)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _positive(value: float | int | None, flag: str, *, zero_ok: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not zero_ok):
        raise UsageError(f"{flag}: must be {'0 or more' if zero_ok else 'positive'}, got {value:g}")


def _settings() -> Any:
    from pydantic import ValidationError

    from capdisc.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = (
            "LOAD_TEST_FAILURE_THRESHOLD"
            if "failure" in str(first["loc"])
            else ("CAPDISC_" + str(first["loc"][0]).upper() if first["loc"] else "CAPDISC_*")
        )
        raise UsageError(f"{name}: {first['msg']}") from None


def _profile(settings: Any, profile: str | None, host: str | None, **target: Any) -> Any:
    from capdisc.profiles import load_profile, plain_host_profile, with_target_overrides

    if profile is None and host is not None:
        base = plain_host_profile(host)
    else:
        base = load_profile(profile or settings.profile, settings.profiles_dir)
    timeout = target.pop("timeout", None)
    if timeout is not None:
        target["timeout"] = _seconds(timeout, "--timeout")
    return with_target_overrides(base, {"host": host if profile is not None else None, **target})


def _out_dir(settings: Any, out_opt: Path | None, command: str, profile_name: str) -> Path:
    from capdisc.rundir import default_out_dir

    return (
        out_opt
        if out_opt is not None
        else default_out_dir(settings.runs_dir, command, profile_name)
    )


def _progress(quiet: bool, json_out: bool) -> Any:
    from contextlib import nullcontext

    if quiet:
        return nullcontext(None)
    from capdisc.progress import ConsoleProgress

    return ConsoleProgress(err)


# -- discover -----------------------------------------------------------------


def _discover(
    strategy: Literal["batch", "tools"],
    *,
    tools: int | None,
    profile: str | None,
    host: str | None,
    model: str | None,
    api: str | None,
    timeout: str | None,
    prompt: str | None,
    max_tokens: int | None,
    start_users: int | None,
    step_users: int | None,
    max_users: int | None,
    step_duration: str | None,
    interval: str | None,
    failure_threshold: int | None,
    max_failure_rate: float | None,
    slo_p95: str | None,
    refine: bool | None,
    keep_going: bool,
    workers: int,
    expect_workers: int,
    out_dir: Path | None,
    json_out: bool,
    quiet: bool,
) -> None:
    from capdisc.strategies.discovery import DiscoveryRequest, ToolsSettings
    from capdisc.strategies.ramp import RampSettings

    for flag, value in (
        ("--start-users", start_users),
        ("--step-users", step_users),
        ("--max-users", max_users),
    ):
        _positive(value, flag)
    _positive(failure_threshold, "--failure-threshold", zero_ok=True)
    if max_failure_rate is not None and not 0 <= max_failure_rate <= 100:
        raise UsageError(
            f"--max-failure-rate: must be a percentage 0..100, got {max_failure_rate:g}"
        )
    _positive(workers, "--workers", zero_ok=True)
    _positive(expect_workers, "--expect-workers", zero_ok=True)
    settings = _settings()
    prof = _profile(
        settings,
        profile,
        host,
        model=model,
        api=api,
        timeout=timeout,
        prompt=prompt,
        max_tokens=max_tokens,
    )
    defaults = prof.tools if strategy == "tools" else prof.batch
    step_s = _seconds(step_duration, "--step-duration")
    interval_s = _seconds(interval, "--interval")
    slo_s = _seconds(slo_p95, "--slo-p95")
    _positive(step_s, "--step-duration")
    _positive(interval_s, "--interval")
    _positive(slo_s, "--slo-p95")
    ramp = RampSettings(
        start_users=start_users or defaults.start_users,
        step_users=step_users or defaults.step_users,
        max_users=max_users or defaults.max_users,
        step_duration_s=step_s or defaults.step_duration,
        interval_s=interval_s or defaults.interval,
        max_failure_rate=defaults.max_failure_rate
        if max_failure_rate is None
        else max_failure_rate,
        slo_p95_s=slo_s if slo_s is not None else defaults.slo_p95,
        refine=defaults.refine if refine is None else refine,
        keep_going=keep_going or defaults.keep_going,
    )
    if ramp.start_users > ramp.max_users:
        raise UsageError(f"--start-users: {ramp.start_users} is above --max-users {ramp.max_users}")
    tools_settings = None
    if strategy == "tools":
        count = prof.tools.tools if tools is None else tools
        _positive(count, "--tools", zero_ok=True)
        tools_settings = ToolsSettings(
            per_task=count,
            orchestration=prof.tools.orchestration,
            server_path=prof.tools.server_path,
            server_body=prof.tools.server_body,
            server_count_field=prof.tools.server_count_field,
        )
    request = DiscoveryRequest(
        strategy=strategy,
        profile=prof,
        ramp=ramp,
        failure_threshold=settings.failure_threshold
        if failure_threshold is None
        else failure_threshold,
        out_dir=_out_dir(settings, out_dir, f"discover-{strategy}", prof.name),
        tools=tools_settings,
        workers=workers,
        expect_workers=expect_workers,
    )
    if strategy == "tools":
        from capdisc.strategies.tools import discover_tools as run
    else:
        from capdisc.strategies.batch import discover_batch as run
    with _progress(quiet, json_out) as progress:
        if progress is not None:
            progress.message(
                f"capdisc discover {strategy}: profile {prof.name}, results in {request.out_dir}"
            )
        outcome = run(request, progress)
    _print_summary(outcome.summary, outcome.out_dir, json_out, outcome.warnings)
    if outcome.failure is not None:
        raise outcome.failure


def _print_summary(summary: Any, out_dir: Path, json_out: bool, warnings: list[str]) -> None:
    from capdisc.reports.summary import dump_summary
    from capdisc.reports.terminal import render_summary

    if json_out:
        sys.stdout.write(dump_summary(summary))
        sys.stdout.flush()
    else:
        render_summary(summary, out)
        out.print(f"Results in {out_dir}", highlight=False)
    for warning in warnings:
        err.print(f"warning: {warning}", style="yellow", highlight=False)


@discover_app.command("batch")
def discover_batch(
    profile: ProfileOpt = None,
    host: HostOpt = None,
    model: ModelOpt = None,
    api: ApiOpt = None,
    timeout: TimeoutOpt = None,
    prompt: PromptOpt = None,
    max_tokens: MaxTokensOpt = None,
    start_users: StartUsersOpt = None,
    step_users: StepUsersOpt = None,
    max_users: MaxUsersOpt = None,
    step_duration: StepDurationOpt = None,
    interval: IntervalOpt = None,
    failure_threshold: ThresholdOpt = None,
    max_failure_rate: MaxFailureRateOpt = None,
    slo_p95: SloOpt = None,
    refine: RefineOpt = None,
    keep_going: KeepGoingOpt = False,
    workers: WorkersOpt = 0,
    expect_workers: ExpectWorkersOpt = 0,
    out_dir: OutOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Ramp users in steps with non-streaming requests and report the capacity.

    Each step holds a number of paced users for --step-duration (measured after
    all of them started). A step passes when its failure rate, p95 (with
    --slo-p95), throughput (at least 90% of users / interval) and pacing hold.
    The first failing step ends the climb; capacity is then refined by bisection
    and confirmed. The failure threshold stops everything at once, like Ctrl+C,
    and every report is still written.
    """
    _discover("batch", tools=None, **locals())


@discover_app.command("tools")
def discover_tools(
    tools: Annotated[
        int | None,
        typer.Option(
            "--tools",
            help="Tool calls in every task (default from the profile, 2).",
            show_default=False,
        ),
    ] = None,
    profile: ProfileOpt = None,
    host: HostOpt = None,
    model: ModelOpt = None,
    api: ApiOpt = None,
    timeout: TimeoutOpt = None,
    prompt: PromptOpt = None,
    max_tokens: MaxTokensOpt = None,
    start_users: StartUsersOpt = None,
    step_users: StepUsersOpt = None,
    max_users: MaxUsersOpt = None,
    step_duration: StepDurationOpt = None,
    interval: IntervalOpt = None,
    failure_threshold: ThresholdOpt = None,
    max_failure_rate: MaxFailureRateOpt = None,
    slo_p95: SloOpt = None,
    refine: RefineOpt = None,
    keep_going: KeepGoingOpt = False,
    workers: WorkersOpt = 0,
    expect_workers: ExpectWorkersOpt = 0,
    out_dir: OutOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Capacity discovery for tool-calling flows: every task makes exactly N tool calls.

    Client-orchestrated by default: N rounds with tool_choice forcing a call, a
    fake tool result appended each time, then one round with tool_choice "none"
    for the answer; the task's duration is the whole conversation. A task with
    another count fails ("expected 2 tool calls, got 3"). The spread of task
    durations at the first step is reported: the strategy needs a deterministic
    target. Ramp, verdicts and refinement are those of discover batch.
    """
    kwargs = dict(locals())
    kwargs.pop("tools")
    _discover("tools", tools=tools, **kwargs)


# -- compare --------------------------------------------------------------------


@compare_app.command("stream")
def compare_stream(
    a: Annotated[
        str,
        typer.Argument(help="Version A: profile name or path, base URL, or a saved run directory."),
    ],
    b: Annotated[str, typer.Argument(help="Version B: same kinds as A.")],
    users: Annotated[
        int | None,
        typer.Option("--users", help="Fixed users (default 200).", show_default=False),
    ] = None,
    interval: IntervalOpt = None,
    duration: Annotated[
        str | None,
        typer.Option(
            "--duration", help="Measured time per version (DUR, default 8m).", show_default=False
        ),
    ] = None,
    temperature: Annotated[
        float | None,
        typer.Option("--temperature", help="Sampling temperature (default 0).", show_default=False),
    ] = None,
    blocks: Annotated[
        int | None,
        typer.Option("--blocks", help="Alternating A/B blocks per version.", show_default=False),
    ] = None,
    sequential: Annotated[
        bool, typer.Option("--sequential", help="Run all of A, then all of B.")
    ] = False,
    fail_on_regression: Annotated[
        float | None,
        typer.Option(
            "--fail-on-regression",
            help="Exit 1 when B is significantly slower by more than PCT percent.",
            show_default=False,
        ),
    ] = None,
    failure_threshold: ThresholdOpt = None,
    workers: WorkersOpt = 0,
    expect_workers: ExpectWorkersOpt = 0,
    out_dir: OutOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Compare streaming latency of two versions under the same fixed load.

    Both versions get the same paced users, prompt and seed at temperature 0;
    live versions are measured in alternating blocks (A B A B) so drift hits both
    alike. Success is HTTP 200 with more than 2 chunks, counted without parsing.
    The verdict needs both a 95% block-bootstrap confidence interval of the
    median difference that excludes 0 and a Mann-Whitney p-value below 0.05.
    """
    from capdisc.strategies.stream import CompareRequest, resolve_source, run_compare

    _positive(users, "--users")
    _positive(blocks, "--blocks")
    _positive(workers, "--workers", zero_ok=True)
    _positive(expect_workers, "--expect-workers", zero_ok=True)
    _positive(failure_threshold, "--failure-threshold", zero_ok=True)
    if temperature is not None and not 0 <= temperature <= 2:
        raise UsageError(f"--temperature: must be 0..2, got {temperature:g}")
    if fail_on_regression is not None and fail_on_regression < 0:
        raise UsageError(f"--fail-on-regression: must be 0 or more, got {fail_on_regression:g}")
    interval_s = _seconds(interval, "--interval")
    duration_s = _seconds(duration, "--duration")
    _positive(interval_s, "--interval")
    _positive(duration_s, "--duration")
    settings = _settings()
    source_a = resolve_source(a, "a", settings.profiles_dir)
    source_b = resolve_source(b, "b", settings.profiles_dir)
    # Load defaults come from the first live side's profile (the shipped v1/v2 set short ones).
    live = [s.profile for s in (source_a, source_b) if s.profile is not None]
    defaults = live[0].stream if live else None
    from capdisc.profiles import CompareDefaults

    defaults = defaults or CompareDefaults()
    names = "-vs-".join(s.profile.name if s.profile else "saved" for s in (source_a, source_b))
    request = CompareRequest(
        a=source_a,
        b=source_b,
        users=users or defaults.users,
        interval_s=interval_s or defaults.interval,
        duration_s=duration_s or defaults.duration,
        temperature=defaults.temperature if temperature is None else temperature,
        blocks=1 if sequential and blocks is None else blocks or defaults.blocks,
        failure_threshold=settings.failure_threshold
        if failure_threshold is None
        else failure_threshold,
        out_dir=_out_dir(settings, out_dir, "compare-stream", names),
        sequential=sequential,
        seed=defaults.seed,
        fail_on_regression_pct=fail_on_regression,
        workers=workers,
        expect_workers=expect_workers,
    )
    with _progress(quiet, json_out) as progress:
        if progress is not None:
            progress.message(
                f"capdisc compare stream: {source_a.label} vs {source_b.label}, "
                f"{request.users} users every {request.interval_s:g}s, results in {request.out_dir}"
            )
        outcome = run_compare(request, progress)
    _print_summary(outcome.summary, outcome.out_dir, json_out, outcome.warnings)
    if outcome.failure is not None:
        raise outcome.failure
    if outcome.exit_code:
        raise typer.Exit(outcome.exit_code)


# -- simulator ----------------------------------------------------------------


@simulator_app.command("serve")
def simulator_serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port (0 = any free port).")] = 8000,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            "-p",
            help="Take the [simulator] table of this profile.",
            show_default=False,
        ),
    ] = None,
    slots: Annotated[
        int | None, typer.Option("--slots", help="Requests served at once.", show_default=False)
    ] = None,
    queue_limit: Annotated[
        int | None,
        typer.Option(
            "--queue-limit", help="Requests that may wait; beyond, 503.", show_default=False
        ),
    ] = None,
    prefill_ms: Annotated[
        float | None,
        typer.Option("--prefill-ms", help="Time before the first token.", show_default=False),
    ] = None,
    per_token_ms: Annotated[
        float | None,
        typer.Option("--per-token-ms", help="Time per output token.", show_default=False),
    ] = None,
    output_tokens: Annotated[
        int | None,
        typer.Option("--output-tokens", help="Tokens per answer.", show_default=False),
    ] = None,
    slowdown_per_slot: Annotated[
        float | None,
        typer.Option(
            "--slowdown-per-slot",
            help="Extra per-token time per other busy slot (0.1 = 10%).",
            show_default=False,
        ),
    ] = None,
    jitter: Annotated[
        float | None,
        typer.Option("--jitter", help="Service time varies by +/- this share.", show_default=False),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option("--seed", help="Seed of jitter, errors and text.", show_default=False),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="Model name served.", show_default=False)
    ] = None,
    error_rate: Annotated[
        float | None,
        typer.Option(
            "--error-rate", help="Fault: share of requests answered HTTP 500.", show_default=False
        ),
    ] = None,
    crash_after: Annotated[
        int | None,
        typer.Option(
            "--crash-after", help="Fault: exit after this many requests.", show_default=False
        ),
    ] = None,
    max_connections: Annotated[
        int | None,
        typer.Option(
            "--max-connections",
            help="Fault: close connections beyond this many.",
            show_default=False,
        ),
    ] = None,
    hang: Annotated[
        bool, typer.Option("--hang", help="Fault: accept requests and never answer.")
    ] = False,
) -> None:
    """Serve the embedded LLM simulator in the foreground until Ctrl+C.

    OpenAI-compatible /v1/chat/completions (JSON and SSE, tools), Ollama /api/chat
    (NDJSON), /v1/agent/run (server-orchestrated tool tasks), /v1/models,
    /health, and /stats with ground-truth counters. Its capacity model: --slots
    requests at once, each taking prefill + tokens x per-token time.
    """
    from pydantic import ValidationError

    from capdisc.simulator.config import FaultConfig, SimulatorConfig

    settings = _settings()
    base = SimulatorConfig()
    if profile is not None:
        from capdisc.profiles import load_profile

        base = load_profile(profile, settings.profiles_dir).simulator_config
    fields = {
        "slots": slots,
        "queue_limit": queue_limit,
        "prefill_ms": prefill_ms,
        "per_token_ms": per_token_ms,
        "output_tokens": output_tokens,
        "slowdown_per_slot": slowdown_per_slot,
        "jitter": jitter,
        "seed": seed,
        "model": model,
    }
    faults = {
        "error_rate": error_rate,
        "crash_after": crash_after,
        "max_connections": max_connections,
        "hang": hang or None,
    }
    data = base.model_dump()
    data.update({k: v for k, v in fields.items() if v is not None})
    data["faults"].update({k: v for k, v in faults.items() if v is not None})
    try:
        config = SimulatorConfig.model_validate(data)
        FaultConfig.model_validate(data["faults"])
    except ValidationError as exc:
        first = exc.errors()[0]
        flag = "--" + str(first["loc"][-1]).replace("_", "-")
        raise UsageError(f"{flag}: {first['msg']}") from None
    if not 0 <= port <= 65535:
        raise UsageError(f"--port: must be 0..65535, got {port}")
    from capdisc.simulator.process import serve

    def ready(url: str) -> None:
        err.print(
            f"capdisc simulator listening on {url} "
            f"(slots {config.slots}, service time {config.service_time_s() * 1000:.0f} ms); "
            "Ctrl+C to stop",
            highlight=False,
        )

    serve(config, host, port, ready)


# -- profiles -------------------------------------------------------------------


@profiles_app.command("list")
def profiles_list() -> None:
    """List the profiles found (CAPDISC_PROFILES_DIR, ./profiles, shipped ones)."""
    from rich.table import Table

    from capdisc.profiles import list_profiles, load_profile

    settings = _settings()
    table = Table("name", "target", "description", box=None, pad_edge=False)
    for name, path in list_profiles(settings.profiles_dir).items():
        try:
            prof = load_profile(str(path))
            where = (
                "embedded simulator" if prof.embedded else f"{prof.target.api} {prof.target.host}"
            )
            table.add_row(name, where, prof.description)
        except CapdiscError as exc:
            table.add_row(name, "[red]invalid[/red]", exc.message)
    out.print(table)


@profiles_app.command("show")
def profiles_show(
    name: Annotated[str, typer.Argument(help="Profile name or path.")],
) -> None:
    """Show a profile with every default filled in, as TOML-like text."""
    import json

    from capdisc.profiles import load_profile

    settings = _settings()
    prof = load_profile(name, settings.profiles_dir)
    out.print(f"# {prof.path}", highlight=False)
    data = prof.model_dump(mode="json", exclude_none=True)
    for section, values in data.items():
        if not isinstance(values, dict):
            out.print(f"{section} = {json.dumps(values)}", highlight=False)
    for section, values in data.items():
        if isinstance(values, dict):
            _show_table(section, values)


def _show_table(section: str, values: dict[str, Any]) -> None:
    import json

    out.print(f"\n[{section}]", highlight=False, markup=False)
    nested = {k: v for k, v in values.items() if isinstance(v, dict)}
    for key, value in values.items():
        if key not in nested:
            out.print(f"{key} = {json.dumps(value)}", highlight=False, markup=False)
    for key, value in nested.items():
        _show_table(f"{section}.{key}", value)


@profiles_app.command("validate")
def profiles_validate(
    path: Annotated[str, typer.Argument(help="Profile file (or name) to check.")],
) -> None:
    """Check a profile file; one line naming the file and field on error (exit 2)."""
    from capdisc.profiles import load_profile

    settings = _settings()
    prof = load_profile(path, settings.profiles_dir)
    out.print(f"{prof.path}: valid", highlight=False)


# -- report / worker ----------------------------------------------------------------


@app.command("report")
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory holding summary.json.")],
    json_out: JsonOpt = False,
    plots: Annotated[
        bool, typer.Option("--plots", help="Also redraw the plots from the records.")
    ] = False,
) -> None:
    """Re-render the terminal summary (and with --plots, the plots) of a saved run."""
    from pydantic import ValidationError

    from capdisc.reports.summary import load_summary

    path = run_dir / "summary.json"
    if not path.is_file():
        raise UsageError(f"RUN_DIR: {run_dir} holds no summary.json")
    try:
        summary = load_summary(path)
    except (ValueError, ValidationError) as exc:
        raise UsageError(f"{path}: not a capdisc summary ({str(exc).splitlines()[0]})") from None
    if plots:
        _redraw_plots(summary, run_dir)
    _print_summary(summary, run_dir, json_out, [])


def _redraw_plots(summary: Any, run_dir: Path) -> None:
    from capdisc.reports.plots import plot_capacity
    from capdisc.reports.summary import DiscoverySummary

    if isinstance(summary, DiscoverySummary):
        plot_capacity(summary, run_dir / "capacity.png")


@app.command("worker")
def worker(
    master: Annotated[str, typer.Option("--master", help="Master to join, HOST[:PORT].")],
) -> None:
    """Join a distributed run as a Locust worker until the master quits.

    The master is a capdisc run with --expect-workers (or --workers for local
    processes). The worker learns the workload from the master; API keys are
    read from this machine's environment, never sent over the wire.
    """
    from capdisc.strategies.session import load_engine

    load_engine()
    from capdisc.loadgen.distributed import parse_master, run_worker

    host, port = parse_master(master)
    run_worker(host, port)


# -- entry point --------------------------------------------------------------------


def _usage_line(exc: Any) -> str:
    """One line naming the flag, from a click usage error."""
    message = " ".join(exc.format_message().split())
    param = getattr(exc, "param", None)
    if param is not None and getattr(param, "opts", None):
        flag = "/".join(o for o in param.opts if o.startswith("--")) or param.opts[0]
        if flag not in message:
            message = f"{flag}: {message}"
    command = getattr(getattr(exc, "ctx", None), "command_path", "")
    return f"{message} (see '{command} --help')" if command else message


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; map capdisc errors and usage errors to one line and an exit code."""
    command = typer.main.get_command(app)
    try:
        # Without standalone mode, click returns the code of a typer.Exit instead of exiting.
        code = command.main(args=argv, prog_name="capdisc", standalone_mode=False)
    except CapdiscError as exc:
        err.print(f"capdisc: error: {exc.message}", highlight=False, markup=False)
        if exc.hint:
            err.print(f"Tip: {exc.hint}", highlight=False, markup=False)
        sys.exit(exc.exit_code)
    except click_exc.NoArgsIsHelpError as exc:
        err.print(exc.format_message(), highlight=False, markup=False)
        sys.exit(0)
    except click_exc.UsageError as exc:
        err.print(f"capdisc: error: {_usage_line(exc)}", highlight=False, markup=False)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("capdisc: aborted", highlight=False)
        sys.exit(130)
    except KeyboardInterrupt:
        err.print("capdisc: interrupted", highlight=False)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
