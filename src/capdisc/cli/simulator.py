"""``capdisc simulator serve``: the embedded LLM simulator in the foreground."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer

from capdisc.cli.app import err, simulator_app
from capdisc.cli.options import model_flags, settings_command
from capdisc.simulator.config import ConnectionConfig, FaultConfig, SimulatorConfig

__all__ = ["simulator_serve"]


@settings_command(
    simulator_app,
    "serve",
    capacity=model_flags(SimulatorConfig, panel="Simulator"),
    faults=model_flags(FaultConfig, panel="Faults"),
    connections=model_flags(ConnectionConfig, panel="Connections"),
)
def simulator_serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port (0 = any free port).")] = 8000,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            "-p",
            help="Take the \\[simulator] table of this profile.",
            show_default=False,
        ),
    ] = None,
    *,
    capacity: Mapping[str, Any],
    faults: Mapping[str, Any],
    connections: Mapping[str, Any],
) -> None:
    """Serve the embedded LLM simulator in the foreground until Ctrl+C.

    OpenAI-compatible /v1/chat/completions (JSON and SSE, tools), Ollama /api/chat
    (NDJSON), /v1/agent/run (server-orchestrated tool tasks), /v1/models,
    /health, and /stats with ground-truth counters. Its capacity model: --slots
    requests at once, each taking prefill + tokens x per-token time.
    """
    from pydantic import ValidationError

    from capdisc.errors import UsageError
    from capdisc.settings import load_settings, validation_message

    base = SimulatorConfig()
    if profile is not None:
        from capdisc.profiles import load_profile

        base = load_profile(profile, load_settings().profiles_dir).simulator_config
    data = base.model_dump()
    data.update({k: v for k, v in capacity.items() if v is not None})
    data["faults"].update({k: v for k, v in faults.items() if v is not None})
    data["connections"].update({k: v for k, v in connections.items() if v is not None})
    try:
        config = SimulatorConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        flags = {".".join(map(str, first["loc"])): "--" + str(first["loc"][-1]).replace("_", "-")}
        raise UsageError(validation_message(exc, flags)) from None
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
