"""Measuring a discovery step: its rows -> its figures and its overload evidence.

The ramp (:mod:`capdisc.strategies.ramp`) decides which level to try next; this module
measures what a level did. A step's figures (:func:`~capdisc.metrics.figures.step_figures`),
its goodput against the token SLOs, and the evidence of the overload tests
(:func:`~capdisc.metrics.trend.judge_evidence`) are taken over every request that
started in its measured time, which an extension prolongs (:class:`OpenStep`). Pure:
no judging, no decision, no file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from capdisc.metrics.figures import step_figures
from capdisc.metrics.frame import records_frame, tasks
from capdisc.metrics.goodput import goodput
from capdisc.metrics.trend import Censored, Evidence, judge_evidence, split_censored
from capdisc.records import RequestRecord
from capdisc.schema import ClientLoad, Slo, StepResult
from capdisc.servermetrics.figures import ServerFigures, combine

__all__ = ["OpenStep", "StepWindow", "measure_step", "open_step"]


@dataclass(frozen=True)
class StepWindow:
    """One measured window of a step, as the engine filled it."""

    index: int
    users: int
    phase: Literal["ramp", "refine", "confirm"]
    window_start: float
    # Where the backlog's first in-flight count was taken: window_start + baseline_s.
    baseline_at: float
    in_flight_at_start: int | None = None
    in_flight_at_end: int | None = None
    client: ClientLoad | None = None
    server: ServerFigures | None = None


@dataclass
class OpenStep:
    """A step being extended: where its measurement began and the rows so far."""

    window_start: float
    in_flight_start: int | None
    in_flight_start_at: float
    rows: list[RequestRecord] = field(default_factory=list)
    extensions: int = 0
    # The server's figures of each window measured so far (an extension adds one).
    server: list[ServerFigures | None] = field(default_factory=list)


def open_step(
    window: StepWindow, rows: Sequence[RequestRecord], opened: OpenStep | None
) -> OpenStep:
    """The step measured on past ``window``: its rows and server figures kept, one more extension."""
    if opened is None:
        opened = OpenStep(
            window_start=window.window_start,
            in_flight_start=window.in_flight_at_start,
            in_flight_start_at=window.baseline_at,
        )
    opened.rows.extend(rows)
    opened.server.append(window.server)
    opened.extensions += 1
    return opened


def measure_step(
    window: StepWindow,
    rows: Sequence[RequestRecord],
    end: float,
    censored_ms: Sequence[float],
    *,
    interval_s: float,
    slo: Slo | None,
    opened: OpenStep | None = None,
    tiers: Sequence[Slo] = (),
) -> tuple[StepResult, Evidence]:
    """The step's figures and overload evidence over its whole measured time, not yet judged.

    ``opened`` holds the earlier windows of an extended step; ``censored_ms`` the ages
    of the window's requests still in flight (counted as started, in no figure). With
    more than one SLO tier (tightest first), each tier's goodput is measured too.
    """
    start = opened.window_start if opened is not None else window.window_start
    all_rows = [*opened.rows, *rows] if opened is not None else list(rows)
    frame = records_frame(all_rows)
    figures = step_figures(
        frame,
        index=window.index,
        users=window.users,
        interval_s=interval_s,
        window_start=start,
        window_end=end,
        phase=window.phase,
    )
    measured = tasks(frame)
    measured = measured[(measured["ts_start"] >= start) & (measured["ts_start"] < end)]
    # Requests cut by a stop are censored at their age, as those still in flight.
    measured, cut = split_censored(measured)
    censored = [Censored(age_ms=age) for age in censored_ms] + cut
    if opened is not None:
        in_flight_start, in_flight_start_at = opened.in_flight_start, opened.in_flight_start_at
    else:
        in_flight_start, in_flight_start_at = window.in_flight_at_start, window.baseline_at
    evidence = judge_evidence(
        measured,
        window_start=start,
        window_end=end,
        users=window.users,
        interval_s=interval_s,
        censored=censored,
        in_flight_at_start=in_flight_start,
        in_flight_at_end=window.in_flight_at_end,
        in_flight_start_at=in_flight_start_at,
    )
    length = end - start
    server = combine([*opened.server, window.server]) if opened is not None else window.server
    figures = figures.model_copy(
        update={
            "client": window.client,
            "server": server,
            "goodput": (
                goodput(measured, slo, length, censored=len(censored)) if slo is not None else None
            ),
            "extensions": opened.extensions if opened is not None else 0,
            "censored": figures.censored + len(censored_ms),
            "started": (figures.started or 0) + len(censored_ms),
            "in_flight_start": in_flight_start,
            "in_flight_end": window.in_flight_at_end,
            "tiers": [goodput(measured, tier, length, censored=len(censored)) for tier in tiers]
            if len(tiers) > 1
            else [],
        }
    )
    return figures, evidence
