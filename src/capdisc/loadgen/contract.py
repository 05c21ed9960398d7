"""Plain data exchanged between the strategies and the load engine (no Locust here).

A strategy hands the engine a :class:`Workload` (what one user does) and a
:class:`StepPlanner` (how many users, for how long). The engine runs a step, gives
the planner the step's raw rows, and the planner answers with the next step or
``None``; the engine never decides anything about capacity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from capdisc.apis.prompts import PromptSource
from capdisc.records import RequestRecord
from capdisc.schema import ClientLoad, StopReason, WorkerClock
from capdisc.servermetrics.figures import ServerFigures
from capdisc.settings import ToolsSettings
from capdisc.target import Target

__all__ = [
    "ProgressSink",
    "ProgressSnapshot",
    "SessionResult",
    "Step",
    "StepPlanner",
    "Workload",
    "WorkloadKind",
]

WorkloadKind = Literal["batch", "stream", "tools"]


@dataclass(frozen=True)
class Workload:
    """What every user of a run does, once per pacing interval."""

    kind: WorkloadKind
    target: Target
    interval_s: float
    temperature: float = 0.0
    seed: int = 0
    version: str = ""
    # How a tool task is made (tools workloads only): the settings the user gave.
    tools: ToolsSettings | None = None
    # What each request asks (None: the target's one prompt and max_tokens).
    prompts: PromptSource | None = None
    # The place of the session's first request in the prompt order: the blocks of one
    # comparison pair share it, and each pair starts past the last, so no prompt is
    # sent to a version twice (a prefix cache would serve it).
    first_request: int = 0


@dataclass
class Step:
    """Users held at one level: ``settle_s`` not measured, then ``hold_s`` measured.

    ``baseline_s`` into the window the first in-flight count is taken (the backlog's
    baseline): a step measured before a whole interval has passed since its spawn
    counts from one interval into its window, where every user is in its pacing cycle
    and whole intervals remain to the window's end.
    """

    index: int
    users: int
    hold_s: float
    settle_s: float
    baseline_s: float = 0.0
    phase: Literal["ramp", "refine", "confirm", "hold"] = "ramp"
    # Seconds with no users before the step, so a queue left by an overloaded
    # step drains and does not weigh on this one: the least of the pause, which
    # lasts until no request of ours is in flight and no user is left (bounded by
    # drain_s plus the await bound; past it, SessionResult.warnings says so).
    drain_s: float = 0.0
    # How long the engine waits, once the window has ended, for the requests (tool
    # tasks) started in the window that are still in flight; the load stays as it is
    # meanwhile. None: the target's request timeout (times the rounds of a tool task).
    await_s: float | None = None
    # Filled by the engine as the step runs (Unix epoch seconds).
    applied_at: float | None = None
    window_start: float | None = None
    window_end: float | None = None
    # When the engine handed the step to the planner: every request started in the
    # window had ended by then, but those in ``censored_ms``.
    closed_at: float | None = None
    # Requests (tool tasks) started in the window and still in flight at
    # ``closed_at`` (the await bound passed): their ages then, in ms, a lower bound
    # on their durations. Their rows come later (in a later step's rows, or cut at
    # stop), never in this step's.
    censored_ms: list[float] = field(default_factory=list)
    # Requests (tool tasks) of ours in flight at window_start + baseline_s and at
    # window_end, whatever step started them; None when the engine cannot know (workers that
    # do not report what they have in flight).
    in_flight_at_start: int | None = None
    in_flight_at_end: int | None = None
    # Filled by the engine before the planner reads the step: how hard capdisc's own
    # load processes worked over the window (None when they sent no sample).
    client: ClientLoad | None = None
    # Filled by the engine when the session stopped during the step, before
    # ``abandon_step``: why (``failure_threshold``: failures of the run stopped it).
    stopped_by: StopReason | None = None
    # Filled likewise: the server's own figures over the window (None when it publishes
    # no metrics capdisc reads, or no scrape fell in the window).
    server: ServerFigures | None = None


class StepPlanner(Protocol):
    """Decides the steps of a session; implemented by the strategies.

    ``needs_rows`` says whether ``next_step`` reads the step's rows: the engine keeps
    them in memory for the length of a step only when the planner asks for them.
    """

    needs_rows: bool

    def first_step(self) -> Step:
        """The step to start with."""
        ...

    def next_step(self, finished: Step, rows: Sequence[RequestRecord]) -> Step | None:
        """Given a finished step (with its ``client`` load) and every row recorded from
        the moment it was applied until ``finished.closed_at``, the next one.

        A request belongs to the step in which it started: the rows hold every
        request started in [window_start, window_end) but those in
        ``finished.censored_ms``, and also rows of requests started before the window
        or after it (the load runs on while the window's requests are awaited), which
        the planner leaves out by their ``ts_start``.
        """
        ...

    def describe(self) -> str:
        """A short phrase for the progress line, e.g. 'step 3 (refine)'."""
        ...

    def decided_early(self, step: Step, rows: Sequence[RequestRecord], remaining_s: float) -> bool:
        """While the engine awaits the window's requests still in flight (their ages in
        ``step.censored_ms``, at most ``remaining_s`` more to wait): True when awaiting
        them cannot change the step's verdict. The engine then closes it at once."""
        ...

    def abandon_step(
        self, step: Step, rows: Sequence[RequestRecord], stopped_at: float, why: str
    ) -> None:
        """The session stopped during ``step`` (threshold, Ctrl+C): keep what it measured.

        ``rows`` include the requests cut at the stop (error
        :data:`~capdisc.loadgen.outcome.STOPPED_IN_FLIGHT`, duration = their age).
        """
        ...


@dataclass(frozen=True)
class ProgressSnapshot:
    """What the live progress line shows, once a second."""

    label: str
    users: int
    rps: float
    requests: int
    failures: int
    failure_threshold: int
    p95_ms: float | None
    elapsed_s: float
    remaining_s: float | None
    # How the threshold counts when not over the whole run (a comparison): e.g.
    # "2/5 in B's latest 100".
    threshold_note: str = ""


class ProgressSink(Protocol):
    """Where live progress goes (the CLI renders it on stderr)."""

    def update(self, snapshot: ProgressSnapshot) -> None:
        """Show one snapshot."""
        ...

    def message(self, text: str) -> None:
        """Show a one-off notice (a stop, a warning)."""
        ...


@dataclass
class SessionResult:
    """How one Locust session ended; the rows themselves are in ``requests.csv``."""

    # None when the planner ended the session (the strategy says why: max_users, slo,
    # duration); otherwise what stopped it (failure_threshold, interrupted).
    stop_reason: StopReason | None
    stop_detail: str
    started_at: float
    finished_at: float
    requests: int
    # Failed requests, without those cut at the stop (they are in ``cut``).
    failures: int
    users_at_stop: int
    warnings: list[str] = field(default_factory=list)
    # Requests cut in flight by the stop (or a drain past its bound): rows with
    # error ``stopped in flight``, status 0, ok 0; counted in ``requests``.
    cut: int = 0
    # Distributed: each worker's clock against the master's (its rows were corrected).
    worker_clocks: list[WorkerClock] = field(default_factory=list)
    # The Locust Environment of the session, kept so several sessions' statistics
    # can be merged into one HTML report (opaque outside loadgen).
    locust_env: object = None
