"""One comparison block's figures and checks, and whether a version built a queue.

A block of ``compare stream`` is one version held at the comparison's load for a
measured window. Besides its figures, each block goes through the queue tests of
discovery (:mod:`capdisc.metrics.trend`): the latency trend within each user and the
backlog in flight. A version a little past its capacity queues slowly: its tasks start
late only after minutes, so the load check passes while its latency grows with
``--duration``; within a block the queue shows as a climb and a growing backlog.

A version *builds a queue* (:func:`queue_reasons`) when at least half of its judged
blocks fail one of those tests: one block's noise never decides alone, unless it is the
version's only block.
"""

from __future__ import annotations

import math

import pandas as pd

from capdisc.metrics.figures import percentile
from capdisc.metrics.trend import judge_evidence, split_censored
from capdisc.verdicts import BlockStats

__all__ = ["block_stats", "queue_reasons"]


def block_stats(
    measured: pd.DataFrame,
    *,
    block: int,
    start: float,
    end: float,
    users: int,
    interval_s: float,
    in_flight_at_start: int | None = None,
    in_flight_at_end: int | None = None,
    cut: bool = False,
    client_bound: bool = False,
) -> BlockStats:
    """The block's figures and queue tests from a version's measured task rows (its rows
    are those of step ``block`` started in the window, cut ones included). A cut block is
    not tested: its window is not whole."""
    rows = measured[(measured["step"] == block)]
    rows = rows[(rows["ts_start"] >= start) & (rows["ts_start"] < end)]
    answered, censored = split_censored(rows)
    good = answered[answered["ok"] == 1]
    stats = BlockStats(
        block=block,
        start=start,
        end=end,
        requests=len(answered),
        failures=len(answered) - len(good),
        p50_ms=percentile(good["duration_ms"], 50),
        ttft_p50_ms=percentile(good["ttft_ms"], 50),
        chunks=int(rows["chunks"].fillna(0).sum()),
        cut=cut,
        client_bound=client_bound,
        in_flight_start=in_flight_at_start,
        in_flight_end=in_flight_at_end,
    )
    if cut or client_bound or end <= start:
        return stats
    evidence = judge_evidence(
        answered,
        window_start=start,
        window_end=end,
        users=users,
        interval_s=interval_s,
        censored=censored,
        in_flight_at_start=in_flight_at_start,
        in_flight_at_end=in_flight_at_end,
    )
    queue = [t for t in (evidence.trend, evidence.backlog) if t is not None]
    verdicts = {t.verdict for t in queue}
    verdict = (
        "fail" if "fail" in verdicts else "inconclusive" if "inconclusive" in verdicts else "pass"
    )
    reasons = [t.reason for t in queue if t.verdict == verdict] if verdict != "pass" else []
    return stats.model_copy(update={"overload": verdict, "overload_reasons": reasons})


def queue_reasons(side: str, blocks: list[BlockStats]) -> str | None:
    """Why ``side``'s blocks show a queue building (None when they do not).

    At least half of the judged blocks (and at least one) must fail a queue test.
    """
    judged = [b for b in blocks if b.overload is not None]
    failed = [b for b in judged if b.overload == "fail"]
    if not failed or len(failed) < math.ceil(len(judged) / 2):
        return None
    first = failed[0]
    detail = "; ".join(first.overload_reasons)
    return (
        f"{side.upper()} built a queue in {len(failed)} of {len(judged)} blocks "
        f"({side.upper()}{first.block}: {detail})"
    )
