"""``capdisc calibrate``: what one capdisc process drives on this machine, cached.

For each workload, one session of the real load engine (``RunContext``, paced users,
a hold planner) against the embedded simulator with no service time and slots to
spare, so the server is never the limit: :data:`USERS` users every
:data:`INTERVAL_S` offer far more than one process drives. The process's own
self-check (``loadgen.selfcheck``) gives its CPU over the measured window. The
ceiling is what it achieved when it reached its limits (CPU or loop lag, see
``strategies.client``), else that rate scaled to one whole core (rate / CPU share):
a cautious figure, since a busier event loop does more per wake-up. About 6 s per
workload.

The result is cached as JSON per machine (host, CPU model, cores, Python, Locust and
gevent versions) and capdisc version, in ``CAPDISC_CACHE_DIR``, else
``$XDG_CACHE_HOME/capdisc``, else ``~/.cache/capdisc`` (``%LOCALAPPDATA%`` on
Windows), and reused until one of them changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from pydantic import ValidationError

from capdisc import __version__
from capdisc.errors import OutputError, RunFailed
from capdisc.loadgen.contract import ProgressSink, Step, Workload, WorkloadKind
from capdisc.records import RequestRecord, is_round
from capdisc.schema import ClientCeiling, WorkloadCeiling
from capdisc.settings import Settings, TargetConfig, ToolsSettings

__all__ = [
    "KINDS",
    "UNITS",
    "cache_dir",
    "cache_path",
    "calibrate",
    "load_ceiling",
    "measure",
    "save_ceiling",
]

KINDS: tuple[WorkloadKind, ...] = ("batch", "stream", "tools")
UNITS: dict[str, str] = {"batch": "req/s", "stream": "chunks/s", "tools": "rounds/s"}
USERS = 100
INTERVAL_S = 0.02  # 100 users every 20 ms: 5,000 tasks/s offered
SETTLE_S = 0.5
HOLD_S = 3.0
# Small batch bodies; streams of 64 content events; tool tasks of 2 calls (3 rounds).
TOKENS: dict[str, int] = {"batch": 16, "stream": 64, "tools": 16}
TOOLS = 2


def cache_dir(settings: Settings) -> Path:
    """Where the ceiling is cached: CAPDISC_CACHE_DIR, else the user's cache directory."""
    if settings.cache_dir is not None:
        return settings.cache_dir
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "capdisc"
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "capdisc" / "cache"
    return Path.home() / ".cache" / "capdisc"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


def machine() -> dict[str, str | int]:
    """What makes one machine's ceiling differ from another's."""
    return {
        "host": platform.node(),
        "system": platform.system(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count() or 1,
        "python": platform.python_version(),
        "locust": _version("locust"),
        "gevent": _version("gevent"),
    }


def _key(identity: dict[str, str | int]) -> str:
    text = json.dumps({"capdisc": __version__, **identity}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def cache_path(directory: Path) -> Path:
    """The cache file of this machine and capdisc version in ``directory``."""
    return directory / f"client-ceiling-{__version__}-{_key(machine())}.json"


def load_ceiling(directory: Path) -> ClientCeiling | None:
    """The cached ceiling of this machine and version, None when there is none (or it is unreadable)."""
    path = cache_path(directory)
    try:
        ceiling = ClientCeiling.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, ValidationError):
        return None
    return ceiling if ceiling.key == _key(machine()) else None


def save_ceiling(ceiling: ClientCeiling, directory: Path) -> Path:
    """Write the cache file atomically; ``OutputError`` when the directory is not writable."""
    path = cache_path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=directory, prefix=".client-ceiling-", suffix=".tmp")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(ceiling.model_dump_json(indent=2) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write the client ceiling to {path}: {exc.strerror}") from None
    return path


class _Hold:
    """The one step of a calibration session; it counts what the window achieved."""

    needs_rows = True

    def __init__(self, kind: WorkloadKind) -> None:
        self.kind = kind
        self.step = Step(index=1, users=USERS, hold_s=HOLD_S, settle_s=SETTLE_S, phase="hold")
        self.result: WorkloadCeiling | None = None

    def first_step(self) -> Step:
        return self.step

    def next_step(self, finished: Step, rows: Sequence[RequestRecord]) -> Step | None:
        assert finished.window_start is not None and finished.window_end is not None
        start, end = finished.window_start, finished.window_end
        measured = [r for r in rows if start <= r.ts_end < end]
        tasks = [r for r in measured if not is_round(r.name)]
        span = max(end - start, 1e-9)
        if self.kind == "tools":
            units = sum(1 for r in measured if is_round(r.name))
        elif self.kind == "stream":
            units = sum(int(r.chunks or 0) for r in tasks)
        else:
            units = len(tasks)
        self.result = _ceiling(self.kind, units / span, len(tasks) / span, finished)
        return None

    def decided_early(self, step: Step, rows: object, remaining_s: float) -> bool:
        return False  # its window's requests are always awaited

    def abandon_step(self, step: Step, rows: object, stopped_at: float, why: str) -> None:
        self.result = None  # a cut-short window measures nothing

    def describe(self) -> str:
        return f"calibrating {self.kind}"


def _ceiling(kind: str, achieved: float, tasks: float, step: Step) -> WorkloadCeiling:
    from capdisc.strategies.client_limits import MAX_CPU, MAX_LAG_P95_MS

    load = step.client
    cpu = load.cpu_mean if load is not None else 1.0
    # A loop so late that it sampled nothing is at its limit too: never extrapolate then.
    saturated = load is None or load.cpu_p50 > MAX_CPU or load.lag_p95_ms > MAX_LAG_P95_MS
    # Not at its limits: scale to one whole core (cautious: a busier loop batches more).
    scale = 1.0 if saturated else 1.0 / min(1.0, max(cpu, 0.05))
    return WorkloadCeiling(
        unit=UNITS[kind],
        rate=round(achieved * scale, 1),
        tasks_per_s=round(tasks * scale, 1),
        achieved=round(achieved, 1),
        cpu=round(cpu, 3),
        saturated=saturated,
    )


def calibrate(
    kinds: Iterable[WorkloadKind], directory: Path, progress: ProgressSink | None
) -> tuple[ClientCeiling, Path]:
    """Measure ``kinds`` now and cache them with this machine's other workloads.

    Raises ``RunFailed`` when a measurement is interrupted (Ctrl+C): nothing is cached;
    ``OutputError`` when the cache cannot be written.
    """
    ceiling = measure(kinds, directory, progress)
    return ceiling, save_ceiling(ceiling, directory)


def measure(
    kinds: Iterable[WorkloadKind], directory: Path, progress: ProgressSink | None
) -> ClientCeiling:
    """Measure ``kinds`` now, merged with what ``directory`` holds of the others."""
    from capdisc.loadgen.context import RunContext
    from capdisc.simulator.config import SimulatorConfig
    from capdisc.simulator.process import EmbeddedSimulator
    from capdisc.target import Target

    started = time.monotonic()
    identity = machine()
    previous = load_ceiling(directory)
    measured = dict(previous.workloads) if previous is not None else {}
    config = SimulatorConfig(
        slots=4096,
        queue_limit=8192,
        prefill_ms=0,
        per_token_ms=0,
        output_tokens=max(TOKENS.values()),
        jitter=0.0,
    )
    with (
        EmbeddedSimulator(config) as simulator,
        tempfile.TemporaryDirectory(prefix="capdisc-calibrate-") as scratch,
        RunContext(
            Path(scratch), failure_threshold=0, users=USERS, progress=progress, stop_timeout=2.0
        ) as run,
    ):
        for kind in kinds:
            target = Target(
                base_url=simulator.base_url,
                config=TargetConfig(max_tokens=TOKENS[kind], timeout=30.0),
                label="calibration",
            )
            workload = Workload(
                kind=kind,
                target=target,
                interval_s=INTERVAL_S,
                version="calibration",
                tools=ToolsSettings(tools=TOOLS) if kind == "tools" else None,
            )
            planner = _Hold(kind)
            run.run(workload, planner)
            if run.stopped or planner.result is None:
                detail = run.control.detail or "the measurement was cut short"
                raise RunFailed(f"calibration of {kind} stopped ({detail}); nothing cached")
            measured[kind] = planner.result
    return ClientCeiling(
        capdisc=__version__,
        machine=identity,
        key=_key(identity),
        measured_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        duration_s=round(time.monotonic() - started, 1),
        workloads=measured,
    )
