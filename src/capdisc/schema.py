"""The shared schema of capdisc's results: ``summary.json``.

Both ``metrics`` (which computes figures) and ``reports`` (which renders them)
import this module; it imports only the leaves it names. (One row of ``requests.csv`` is
:class:`capdisc.records.RequestRecord`.) It holds:

- :data:`StopReason`, the one set of reasons a run can end with;
- the ``summary.json`` models, validated by pydantic: schema 1, and schema 2 for a
  discovery, schema 3 for a comparison (:data:`COMPARE_SCHEMA`; older ones still read).
  A compared metric and a block are :mod:`capdisc.verdicts`'; the server's own figures
  (``server``, ``servers``) are :mod:`capdisc.servermetrics`'.

The field names are public API (see the README); add fields freely, rename or remove
them only with a schema bump and a CHANGELOG entry. Times are Unix epoch seconds;
durations are milliseconds measured by capdisc itself, never Locust's buckets.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from capdisc.servermetrics.figures import ServerFigures, ServerInfo
from capdisc.verdicts import BlockStats, GateOutcome, MetricDiff, Verdict

__all__ = [
    "COMPARE_SCHEMA",
    "SCHEMA",
    "AtStop",
    "Capacity",
    "ClientCeiling",
    "ClientInfo",
    "ClientLoad",
    "CompareLoad",
    "CompareSummary",
    "Connections",
    "DiscoverySummary",
    "Goodput",
    "LegacyVerdict",
    "OverloadTests",
    "Pacing",
    "Slo",
    "Spread",
    "StepResult",
    "StopReason",
    "Summary",
    "TargetInfo",
    "Tier",
    "TokenStats",
    "ToolsInfo",
    "VersionDiff",
    "VersionStats",
    "WorkerClock",
    "WorkloadCeiling",
    "dump_summary",
    "load_summary",
]


# The discovery summary's schema: 2 since three-state verdicts and the capacity interval.
SCHEMA = 2

# Why a run ended. "max_users" and "slo" end a discovery (every step passed up to
# --max-users; a step failed its limits), "duration" a comparison; the failure
# threshold and a signal (or a write error) can end either.
# "client_bound": a step showed capdisc itself at its limit (never a server verdict).
StopReason = Literal[
    "max_users", "slo", "duration", "failure_threshold", "interrupted", "client_bound"
]
# Schema-1 comparisons said "no_difference" instead of "equivalent"/"inconclusive"; they
# still read (:data:`LegacyVerdict`).
LegacyVerdict = Literal["no_difference"]
# The comparison summary's schema: 2 since the paired design and its four verdicts, 3
# since every metric a user feels has its own verdict (``diff.metrics``) and ``ttft``
# is the first token (a schema-1 run's was the first byte).
COMPARE_SCHEMA = 3


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


class Connections(_Model):
    """What reaching the server cost: new connections and retries on closed ones.

    A server that closes connections costs its users a connect per request: worth
    seeing, never a failure (see ``reconnects`` in ``requests.csv``).
    """

    requests: int = 0  # requests (tasks) whose row says
    new_share: float = 0.0  # share of them that opened a new connection
    reconnects: int = 0  # reused connections found closed and replaced
    connect_p50_ms: float | None = None  # median time to connect, over new connections


class Spread(_Model):
    """p50, p95 and p99 of one figure over the successful requests, in ms."""

    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None


class TokenStats(_Model):
    """Token-level figures of streamed requests (and token counts of any request).

    ``ttfb``: first body byte; ``ttft``: first token; ``tpot``: time per output token
    after the first; ``itl``: each request's mean gap between content events, and
    ``itl_max`` its longest gap. Times count from a ready connection.
    """

    requests: int = 0  # successful requests counted
    ttfb: Spread = Field(default_factory=Spread)
    ttft: Spread = Field(default_factory=Spread)
    tpot: Spread = Field(default_factory=Spread)
    itl: Spread = Field(default_factory=Spread)
    itl_max: Spread = Field(default_factory=Spread)
    output_tokens: int = 0
    input_tokens: int | None = None
    output_tokens_per_s: float | None = None  # over the measured time
    estimated: bool = False  # some output tokens are counted events (no usage sent)


class Slo(_Model):
    """The limits a request must meet to count as good (``--slo-*``), at a percentile."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None
    percentile: float = 95.0
    min_goodput_pct: float | None = None


class Goodput(_Model):
    """How many requests met every limit of the :class:`Slo`, and each figure at its percentile.

    A good request succeeded and met every limit that is set; a failed request, or one
    without the figure a limit needs (no first token), is not good.
    """

    requests: int
    good: int
    pct: float | None  # good / requests, in percent (None without requests)
    rps: float | None  # good requests per measured second
    # Each figure at the SLO's percentile over every request counted (``n``), failures
    # and requests without the figure ranked slower than every success (None: the
    # percentile falls among those, or nothing was measured).
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None
    # Requests the percentiles are over: every one started in the window and answered
    # (with an end-to-end limit, those still in flight past the await bound too, ranked
    # slowest). 0 in summaries before it existed.
    n: int = 0
    # Distribution-free 95% bounds of each figure's percentile (order statistics):
    # [lower, upper]; a None lower bound is none (too few requests, or, in JSON, among the
    # failures: the reasons say which), a None upper bound is unbounded (too few
    # requests, or the percentile among the failures).
    ttft_bounds_ms: tuple[float | None, float | None] | None = None
    tpot_bounds_ms: tuple[float | None, float | None] | None = None
    e2e_bounds_ms: tuple[float | None, float | None] | None = None
    # The SLO verdict: pass when every upper bound is within its limit, fail when a
    # lower bound is over it, else inconclusive.
    verdict: Literal["pass", "fail", "inconclusive"] | None = None
    # Some TPOT figures were computed from output tokens counted as events (the server
    # sent no usage): a TPOT limit is judged on an estimate.
    tpot_estimated: bool = False


class ClientLoad(_Model):
    """How hard capdisc's own load processes worked over a window (a step, a block).

    From the processes' per-second samples: CPU of the busiest process (1.0 = one core)
    and event-loop lag (how late a 100 ms timer fired) of the most lagging one.
    """

    processes: int
    seconds: int  # samples of the process with the most of them
    busiest: str
    cpu_p50: float  # median of the busiest process's per-second CPU
    cpu_mean: float
    cpu_max: float
    lagging: str
    lag_p95_ms: float  # over every timer of the most lagging process
    lag_max_ms: float


TestVerdict = Literal["pass", "fail", "inconclusive"]


class OverloadTests(_Model):
    """The overload tests of one step (schema 2), each with its verdict.

    ``trend``: least-squares slope of latency against start time within each user, in
    ms per second, with its 95% interval (clustered by user) and the limit above which
    it fails (it passes below 25 ms/s, a queue 2.5% past capacity); ``backlog``:
    requests in flight at the window's end minus at its start, and its noise (SD);
    ``deficit``: tasks offered (users x window / interval) minus started, and its noise;
    ``late_share``: tasks that started late.
    """

    verdict: TestVerdict
    trend_verdict: TestVerdict
    trend_ms_per_s: float | None = None
    trend_low_ms_per_s: float | None = None
    trend_high_ms_per_s: float | None = None
    trend_limit_ms_per_s: float | None = None
    backlog_verdict: TestVerdict | None = None
    backlog_growth: int | None = None
    backlog_noise_sd: float | None = None
    throughput_verdict: TestVerdict
    offered_tasks: float
    deficit: float
    deficit_noise_sd: float
    lateness_verdict: TestVerdict
    late_share: float


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
    connections: Connections = Field(default_factory=Connections)
    tokens: TokenStats = Field(default_factory=TokenStats)
    duration_cv: float | None = None
    latency_growth: float | None = None
    round_p50_ms: list[float] = Field(default_factory=list)
    goodput: Goodput | None = None
    # Schema 2: the verdict in three states (and client-bound), with how it was reached.
    verdict: Literal["pass", "fail", "inconclusive", "client_bound"] | None = None
    # Windows judged together: an inconclusive step extended by this many more.
    extensions: int = 0
    measured_s: float | None = None  # total length of the judged windows
    started: int | None = None  # tasks started in the windows
    censored: int = 0  # of them, still in flight when judged (their ages are lower bounds)
    in_flight_start: int | None = None
    in_flight_end: int | None = None
    tests: OverloadTests | None = None
    passed: bool
    reasons: list[str] = Field(default_factory=list)
    client: ClientLoad | None = None
    # capdisc itself was the limit: not a server verdict, and no capacity is reported.
    client_bound: bool = False
    server: ServerFigures | None = None  # the server's own metrics (never the verdict)
    # With SLO tiers (--slo-ttft 200ms,500ms,1s): each tier's goodput and whether the
    # step passed it, tightest first (the step's verdict is the loosest tier's).
    tiers: list[Goodput] = Field(default_factory=list)
    tiers_passed: list[bool] = Field(default_factory=list)


class Capacity(_Model):
    """The most users a passing step held, with that step's figures, and the interval.

    Schema 2: ``confirmed`` says the level passed after an overload or twice (a level
    seen once while climbing is not); ``fail_users`` / ``fail_rps`` are the lowest level
    that did not pass (failed, or stayed inconclusive) and its offered req/s: the true
    capacity lies in [users, fail_users). ``at_least`` when no level failed.
    """

    users: int
    rps: float
    p50_ms: float | None
    p95_ms: float | None
    failure_rate: float
    at_least: bool = False
    goodput: Goodput | None = None
    confirmed: bool | None = None  # None: a schema-1 summary
    fail_users: int | None = None
    fail_rps: float | None = None
    fail_verdict: Literal["fail", "inconclusive"] | None = None
    # The successful requests p50_ms and p95_ms are over (None: a summary before it).
    n: int | None = None


class Tier(_Model):
    """The capacity under one SLO tier: the most users that passed its limits (see Capacity)."""

    limits: Slo
    users: int | None  # None: no level passed this tier
    rps: float | None
    confirmed: bool | None  # passed twice at that level
    at_least: bool = False  # no level failed this tier
    fail_users: int | None = None  # the lowest level that did not pass it


class AtStop(_Model):
    """The seed's figures: where the run was when it stopped."""

    users: int
    total_requests: int
    failure_rate: float  # of the requests the target answered (cut ones are not failures)
    avg_ms: float | None  # cut requests count at their age: a lower bound
    cut: int = 0  # requests cut in flight by the stop (error "stopped in flight")


class ToolsInfo(_Model):
    """Tool-calling discovery: the fixed count and how often it was wrong."""

    per_task: int
    tasks: int
    wrong_count: int
    orchestration: str = "client"
    duration_cv: float | None = None
    deterministic: bool | None = None
    round_p50_ms: list[float] = Field(default_factory=list)


class WorkloadCeiling(_Model):
    """What one capdisc process drives of one workload on this machine (calibration)."""

    unit: str  # "req/s" (batch), "chunks/s" (stream), "rounds/s" (tools)
    rate: float  # per process, at one whole core
    tasks_per_s: float  # the same in requests, streams or tool tasks per second
    achieved: float  # what the calibration drove, in ``unit``
    cpu: float  # the CPU share it used doing so (1.0 = one core)
    saturated: bool  # the client reached its limits (else extrapolated from ``cpu``)


class ClientCeiling(_Model):
    """The calibration of one machine and capdisc version (the cached JSON file)."""

    capdisc: str
    machine: dict[str, str | int]
    key: str
    measured_at: str
    duration_s: float
    workloads: dict[str, WorkloadCeiling] = Field(default_factory=dict)


class WorkerClock(_Model):
    """A worker's clock against the master's, measured when it connected (its rows corrected)."""

    worker: int
    offset_s: float | None  # worker clock minus master clock; None: could not be measured
    rtt_s: float | None  # round trip of the exchange kept (the offset's error is at most half)
    # A comparison's block ("a1", "b2"): each block is a session, measured anew.
    block: str | None = None


class ClientInfo(_Model):
    """``summary.json`` ``client``: capdisc's own ceiling, the share used, steps it bound."""

    unit: str
    ceiling: float | None  # one process, from the calibration (None: not calibrated)
    calibrated_at: str | None = None
    cache: str | None = None
    processes: int = 1  # processes generating the load (1, or the workers)
    workers_needed: int | None = None  # --workers the planned peak needs (ceiling-based)
    planned_peak: float = 0.0  # in ``unit``
    planned_share: float | None = None  # planned_peak / (ceiling x processes)
    peak: float | None = None  # the most a step (block) achieved, in ``unit``
    peak_share: float | None = None
    cpu_max: float | None = None  # highest step (block) cpu_p50
    lag_p95_max_ms: float | None = None
    limits: dict[str, float] = Field(default_factory=dict)
    # Client-bound steps ("3") or blocks ("a1"), and each block's load (comparison).
    bound: list[str] = Field(default_factory=list)
    blocks: dict[str, ClientLoad] = Field(default_factory=dict)
    clocks: list[WorkerClock] = Field(default_factory=list)


class DiscoverySummary(_Model):
    """Result of ``discover batch`` and ``discover tools``."""

    schema_: int = Field(default=SCHEMA, alias="schema")
    strategy: Literal["batch", "tools", "stream"]
    target: TargetInfo
    started_at: str
    finished_at: str
    stop_reason: StopReason
    stop_detail: str = ""
    interval_s: float
    # Schema 2: each step's measured time, --step-duration rounded up to whole intervals.
    step_s: float | None = None
    failure_threshold: int
    slo: Slo | None = None
    capacity: Capacity | None
    at_stop: AtStop
    steps: list[StepResult]
    # With SLO tiers: one capacity per tier, tightest first (the last is ``capacity``'s).
    tiers: list[Tier] = Field(default_factory=list)
    pacing: Pacing = Field(default_factory=Pacing)
    tools: ToolsInfo | None = None
    client: ClientInfo | None = None
    servers: list[ServerInfo] = Field(default_factory=list)
    files: dict[str, str] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    # The command line that ran it (shell-quoted), so report.html can say how to run it
    # again; empty in a summary written before it was recorded.
    command: str = ""

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
    # Requests started in a measured block and cut in flight by capdisc's stop: not in
    # ``requests`` nor in any figure (they are no answer of the target).
    censored: int = 0
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    chunks_p50: float | None
    pacing: Pacing = Field(default_factory=Pacing)
    connections: Connections = Field(default_factory=Connections)
    tokens: TokenStats = Field(default_factory=TokenStats)
    stop_reason: StopReason = "duration"
    run_dir: str | None = None
    # Measured windows as [block, start, end] (Unix seconds), so a saved run can be reused.
    windows: list[tuple[int, float, float]] = Field(default_factory=list)
    # The load it got: users / interval, and measured tasks per measured second.
    offered_rps: float | None = None
    achieved_rps: float | None = None
    goodput: Goodput | None = None
    # Schema 3: each measured block, with its overload and client checks.
    blocks: list[BlockStats] = Field(default_factory=list)
    server: ServerFigures | None = None  # the server's own metrics over its blocks


class VersionDiff(_Model):
    """B against A, in percent of A (negative = B faster), with 95% intervals.

    Schema 2: the latency figures come from block pairs (the geometric mean of B's to
    A's per-block ratio, failures ranked slower than every success); a schema-1
    summary has only the first fields.
    """

    p50_pct: float | None
    p50_ci95_pct: tuple[float, float] | None
    p95_pct: float | None
    p_value: float | None  # request-level Mann-Whitney U: information, not the verdict
    ttft_p50_pct: float | None = None
    tpot_p50_pct: float | None = None
    method: str = "block bootstrap of the median difference; Mann-Whitney U"
    p95_ci95_pct: tuple[float, float] | None = None
    ttft_p50_ci95_pct: tuple[float, float] | None = None
    tpot_p50_ci95_pct: tuple[float, float] | None = None
    # Failure rates (B minus A), in percentage points.
    failure_rate_pts: float | None = None
    failure_rate_ci95_pts: tuple[float, float] | None = None
    design: Literal["paired", "unpaired"] | None = None
    pairs: int = 0
    blocks_a: int = 0
    blocks_b: int = 0
    # The smallest change of the median this run detects with 80% power, in percent.
    mde_pct: float | None = None
    margin_pct: float | None = None
    # Schema 3: every compared metric by name (:data:`capdisc.verdicts.METRICS`), and
    # whether the answers differ in length (then end-to-end is judged per output token).
    metrics: dict[str, MetricDiff] = Field(default_factory=dict)
    failure_margin_pts: float | None = None
    length_differs: bool = False


class CompareSummary(_Model):
    """Result of ``compare stream``."""

    schema_: int = Field(default=COMPARE_SCHEMA, alias="schema")
    strategy: Literal["stream"] = "stream"
    started_at: str
    finished_at: str
    stop_reason: StopReason = "duration"
    stop_detail: str = ""
    load: CompareLoad
    slo: Slo | None = None
    a: VersionStats
    b: VersionStats
    diff: VersionDiff
    verdict: Verdict | LegacyVerdict
    verdict_reason: str = ""
    # Why the load was not the one asked for (then there is no verdict); empty when it was.
    load_reasons: list[str] = Field(default_factory=list)
    regression_limit_pct: float | None = None
    regression: bool = False
    # With --gate or --fail-on-regression: pass (exit 0), regression (exit 1),
    # inconclusive (exit 5), broken (the baseline failed: exit 1).
    gate: GateOutcome | None = None
    gate_reason: str = ""
    # Schema 3: the metric that decided the verdict (None: no metric did), the version
    # whose failures stopped the run, the versions that built a queue within blocks.
    decided_by: str | None = None
    broken: Literal["a", "b"] | None = None
    overloaded: list[Literal["a", "b"]] = Field(default_factory=list)
    client: ClientInfo | None = None
    servers: list[ServerInfo] = Field(default_factory=list)
    files: dict[str, str] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    # The command line that ran it (shell-quoted), so report.html can say how to run it
    # again; empty in a summary written before it was recorded.
    command: str = ""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


Summary = DiscoverySummary | CompareSummary


def dump_summary(summary: Summary) -> str:
    """Render a summary as the JSON written to ``summary.json``."""
    return summary.model_dump_json(by_alias=True, indent=2) + "\n"


def load_summary(path: Path) -> Summary:
    """Read ``summary.json`` back into its model (discovery or comparison)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    # Both ``discover stream`` and ``compare stream`` say "stream": a comparison has no steps.
    if "steps" in data:
        return DiscoverySummary.model_validate(data)
    return CompareSummary.model_validate(data)
