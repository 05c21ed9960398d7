"""``python -m capdisc.simulator``: the simulator in the foreground, as a child process.

:class:`capdisc.simulator.EmbeddedSimulator` runs this module and reads the ready line
it prints on stdout to learn the bound port. Users run ``capdisc simulator serve``.
"""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError

from capdisc.errors import CapdiscError
from capdisc.simulator.config import SimulatorConfig
from capdisc.simulator.process import READY_PREFIX, serve


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, serve until SIGINT/SIGTERM, return the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m capdisc.simulator",
        description="Run capdisc's embedded LLM simulator in the foreground.",
    )
    parser.add_argument(
        "--config-json", default="{}", help="SimulatorConfig as JSON (default: all defaults)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind (default 0: a free one)")
    parser.add_argument(
        "--parent-pid",
        type=int,
        default=None,
        help="exit when this process is no longer the parent",
    )
    args = parser.parse_args(argv)
    try:
        config = SimulatorConfig.model_validate_json(args.config_json)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        print(f"capdisc simulator: --config-json: {where}: {first['msg']}", file=sys.stderr)
        return 2

    def ready(url: str) -> None:
        print(f"{READY_PREFIX}{url}", flush=True)

    try:
        serve(config, args.host, args.port, ready, parent_pid=args.parent_pid)
    except CapdiscError as exc:
        print(f"capdisc simulator: {exc.message}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
