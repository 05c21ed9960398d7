"""``summary.json``: the result of a run, schema 1, validated by these models.

The field names are public API (see CONTRACT.md and the README); add fields freely,
rename or remove them only with a schema bump and a CHANGELOG entry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AtStop",
    "Capacity",
    "CompareLoad",
    "CompareSummary",
    "DiscoverySummary",
    "Pacing",
    "StepResult",
    "StopReason",
    "Summary",
    "TargetInfo",
    "ToolsInfo",
    "Verdict",
    "VersionDiff",
    "VersionStats",
    "dump_summary",
    "load_summary",
]

SCHEMA = 1

StopReason = Literal["max_users", "failure_threshold", "slo", "interrupted", "duration"]
Verdict = Literal["b_faster", "b_slower", "no_difference"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TargetInfo(_Model):
    """What was loaded; never a secret."""

    url: str
    model: str
    api: str
    profile: str = ""
    embedded: bool = False


class Pacing(_Model):
    """How well constant pacing held: tasks that started later than scheduled."""

    tasks: int = 0
    late: int = 0
    late_share: float = 0.0
    slip_p50_ms: float = 0.0
    slip_p95_ms: float = 0.0
    slip_max_ms: float = 0.0


class StepResult(_Model):
    """One step of a discovery ramp, measured after all its users started."""

    index: int
    users: int
    phase: Literal["ramp", "refine", "confirm"] = "ramp"
    window_start: float
    window_end: float
    offered_rps: float
    achieved_rps: float
    requests: int
    failures: int
    failure_rate: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    avg_ms: float | None
    pacing: Pacing = Field(default_factory=Pacing)
    duration_cv: float | None = None
    latency_growth: float | None = None
    round_p50_ms: list[float] = Field(default_factory=list)
    passed: bool
    reasons: list[str] = Field(default_factory=list)


class Capacity(_Model):
    """The most users a passing step held, with that step's figures."""

    users: int
    rps: float
    p50_ms: float | None
    p95_ms: float | None
    failure_rate: float
    at_least: bool = False


class AtStop(_Model):
    """The seed's figures: where the run was when it stopped."""

    users: int
    total_requests: int
    failure_rate: float
    avg_ms: float | None


class ToolsInfo(_Model):
    """Tool-calling discovery: the fixed count and how often it was wrong."""

    per_task: int
    tasks: int
    wrong_count: int
    orchestration: str = "client"
    duration_cv: float | None = None
    deterministic: bool | None = None
    round_p50_ms: list[float] = Field(default_factory=list)


class DiscoverySummary(_Model):
    """Result of ``discover batch`` and ``discover tools``."""

    schema_: int = Field(default=SCHEMA, alias="schema")
    strategy: Literal["batch", "tools"]
    target: TargetInfo
    started_at: str
    finished_at: str
    stop_reason: StopReason
    stop_detail: str = ""
    interval_s: float
    failure_threshold: int
    capacity: Capacity | None
    at_stop: AtStop
    steps: list[StepResult]
    pacing: Pacing = Field(default_factory=Pacing)
    tools: ToolsInfo | None = None
    files: dict[str, str] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class CompareLoad(_Model):
    """The fixed load both versions got."""

    users: int
    interval_s: float
    duration_s: float
    temperature: float
    blocks: int = 1
    order: str = "alternating"


class VersionStats(_Model):
    """Figures of one version of a comparison."""

    label: str
    target: TargetInfo | None = None
    requests: int
    failures: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    chunks_p50: float | None
    pacing: Pacing = Field(default_factory=Pacing)
    stop_reason: StopReason = "duration"
    run_dir: str | None = None
    # Measured windows as [block, start, end] (Unix seconds), so a saved run can be reused.
    windows: list[tuple[int, float, float]] = Field(default_factory=list)


class VersionDiff(_Model):
    """B against A, in percent of A (negative = B faster)."""

    p50_pct: float | None
    p50_ci95_pct: tuple[float, float] | None
    p95_pct: float | None
    p_value: float | None
    ttft_p50_pct: float | None = None
    method: str = "block bootstrap of the median difference; Mann-Whitney U"


class CompareSummary(_Model):
    """Result of ``compare stream``."""

    schema_: int = Field(default=SCHEMA, alias="schema")
    strategy: Literal["stream"] = "stream"
    started_at: str
    finished_at: str
    stop_reason: StopReason = "duration"
    load: CompareLoad
    a: VersionStats
    b: VersionStats
    diff: VersionDiff
    verdict: Verdict
    regression_limit_pct: float | None = None
    regression: bool = False
    files: dict[str, str] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


Summary = DiscoverySummary | CompareSummary


def dump_summary(summary: Summary) -> str:
    """Render a summary as the JSON written to ``summary.json``."""
    return summary.model_dump_json(by_alias=True, indent=2) + "\n"


def load_summary(path: Path) -> Summary:
    """Read ``summary.json`` back into its model (discovery or comparison)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("strategy") == "stream":
        return CompareSummary.model_validate(data)
    return DiscoverySummary.model_validate(data)
