"""The words of a comparison's verdict, and the models of one compared metric and one block.

A leaf like :mod:`capdisc.schema` (which holds the summary that carries these; a block also
carries the server's own figures, :mod:`capdisc.servermetrics`): both
``metrics`` (which decides) and ``reports`` (which renders) import it.

- :data:`Verdict`: the overall verdict of ``compare stream``;
- :data:`MetricVerdict`: one metric's verdict (``shorter``/``longer`` for the length of
  the answers, which is checked, never judged as speed);
- :data:`GateOutcome`: what ``--gate``/``--fail-on-regression`` decided;
- :class:`MetricDiff`: one metric of ``diff.metrics`` with its change, interval, margin
  and verdict;
- :class:`BlockStats`: one measured block of a version (``a.blocks`` / ``b.blocks``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from capdisc.servermetrics.figures import ServerFigures

__all__ = [
    "DEFAULT_GATE",
    "GATED_METRICS",
    "METRICS",
    "BlockStats",
    "GateOutcome",
    "MetricDiff",
    "MetricVerdict",
    "Verdict",
]

# The verdict of a comparison (schema 2 on). Schema-1 summaries said "no_difference".
Verdict = Literal["b_faster", "b_slower", "equivalent", "inconclusive"]
MetricVerdict = Literal["faster", "slower", "equivalent", "inconclusive", "shorter", "longer"]
# "broken": the baseline (A) failed until the failure threshold stopped the run.
GateOutcome = Literal["pass", "regression", "inconclusive", "broken"]

# Every compared metric, in the order the table and the reasons show them. Each is a
# per-pair log ratio of the blocks' figures (failures ranked slower than every success),
# but ``failures`` (a difference of rates, in points) and ``output_tokens`` (the mean
# length of the answers, checked and never judged as speed).
METRICS = ("failures", "ttft_p50", "ttft_p95", "tpot_p50", "e2e_p50", "e2e_p95", "output_tokens")
# The metrics a gate may name (the length of the answers is not a speed).
GATED_METRICS = METRICS[:-1]
# The metrics that decide the verdict unless ``--gate`` names others.
DEFAULT_GATE = ("ttft_p50", "tpot_p50", "e2e_p50", "e2e_p95", "failures")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MetricDiff(_Model):
    """B against A on one metric: change, 95% interval, margin and verdict.

    ``change`` and ``ci95`` are percent of A (negative: B lower), or percentage points
    for ``failures``. ``judged``: the metric decides the overall verdict (``--gate``).
    ``gate_limit``: the regression limit the gate applies to it (None: not gated).
    """

    metric: str
    unit: Literal["%", "pt"] = "%"
    a: float | None = None  # A's figure over its measured requests (ms, %, tokens)
    b: float | None = None
    change: float | None = None
    ci95: tuple[float, float] | None = None
    margin: float
    verdict: MetricVerdict
    judged: bool = False
    gate_limit: float | None = None
    # e2e only: judged per output token at A's answer length (the answers differ in length).
    per_token: bool = False
    # Why there is no figure (too few pairs, not measured, not comparable).
    note: str = ""


class BlockStats(_Model):
    """One measured block of a version: its window, figures and checks."""

    block: int
    start: float
    end: float
    requests: int
    failures: int
    p50_ms: float | None = None
    ttft_p50_ms: float | None = None
    chunks: int = 0  # streamed chunks of its requests (the client's work)
    # Our requests in flight at the window's start and end (the backlog's counts).
    in_flight_start: int | None = None
    in_flight_end: int | None = None
    # Cut by a stop: its window ends where it was cut, and its pair is left out of the
    # latency intervals (its failures still count).
    cut: bool = False
    # The overload tests of discovery (trend, backlog, throughput, lateness) on this block.
    overload: Literal["pass", "fail", "inconclusive"] | None = None
    overload_reasons: list[str] = Field(default_factory=list)
    client_bound: bool = False
    server: ServerFigures | None = None  # the server's own metrics over the window
