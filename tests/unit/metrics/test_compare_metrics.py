"""Every metric a user feels has its verdict, and the overall verdict follows from them.

Synthetic comparisons at the issue's scale (4 A B B A pairs, 1,200 requests per block):
each request has a time to first token, a time per output token and an answer length;
its end-to-end time is TTFT + TPOT x (tokens - 1). B differs from A in one way at a
time. Before per-metric verdicts, the median end-to-end time alone decided, and each of
these cases got the wrong answer (shown by the legacy ``p50`` interval in each test).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from capdisc.metrics.compare import compare_versions, metric_verdict
from capdisc.metrics.decision import Checks, decide, gate
from capdisc.metrics.frame import records_frame
from capdisc.records import RequestRecord

T0 = 1_700_000_000.0
GATE_5 = {"ttft_p50": 5.0, "tpot_p50": 5.0, "e2e_p50": 5.0, "e2e_p95": 5.0, "failures": 0.5}


def streams(
    seed: int,
    *,
    pairs: int = 4,
    per_block: int = 1200,
    ttft: tuple[float, float] = (200.0, 200.0),
    tpot: tuple[float, float] = (10.0, 10.0),
    tokens: tuple[int, int] = (128, 128),
    b_fail: float = 0.0,
    b_tail: tuple[float, float] = (0.0, 1.0),
    sigma: float = 0.1,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A's and B's rows; each tuple is (A, B). ``b_tail`` = (share, factor): that share of
    B's requests takes ``factor`` times as long end to end; ``b_fail`` of B's time out."""
    rng = np.random.default_rng(seed)
    sequence = [(s, k) for k in range(1, pairs + 1) for s in ("ab" if k % 2 else "ba")]
    rows: dict[str, list[RequestRecord]] = {"a": [], "b": []}
    for position, (side, block) in enumerate(sequence):
        i = 0 if side == "a" else 1
        starts = np.sort(position * 120.0 + rng.uniform(0, 120.0, per_block))
        first = ttft[i] * np.exp(rng.normal(0, sigma, per_block))
        per = tpot[i] * np.exp(rng.normal(0, sigma, per_block))
        count = np.full(per_block, tokens[i])
        total = first + per * (count - 1)
        failed = np.zeros(per_block, dtype=bool)
        if side == "b":
            slow = rng.uniform(size=per_block) < b_tail[0]
            total = np.where(slow, total * b_tail[1], total)
            failed = rng.uniform(size=per_block) < b_fail
        for n in range(per_block):
            bad = bool(failed[n])
            rows[side].append(
                RequestRecord(
                    T0 + starts[n],
                    T0 + starts[n],
                    T0 + starts[n] + total[n] / 1000,
                    n,
                    block,
                    side,
                    "stream",
                    0 if bad else 200,
                    0 if bad else 1,
                    30_000.0 if bad else float(total[n]),
                    ttft_ms="" if bad else float(first[n]),
                    tpot_ms="" if bad else float(per[n]),
                    output_tokens="" if bad else int(count[n]),
                    chunks=0 if bad else int(count[n]),
                    error="timeout" if bad else "",
                )
            )
    return records_frame(rows["a"]), records_frame(rows["b"])


def test_metric_verdict_compares_the_interval_with_the_margin() -> None:
    """Inside the margin is equivalent however significant; beyond it decides."""
    assert metric_verdict((0.5, 1.5), 2.0) == "equivalent"
    assert metric_verdict((2.5, 9.0), 2.0) == "slower"
    assert metric_verdict((-9.0, -2.5), 2.0) == "faster"
    assert metric_verdict((1.0, 3.0), 2.0) == "inconclusive"
    assert metric_verdict(None, 2.0) == "inconclusive"
    assert metric_verdict((-30.0, -20.0), 5.0, "shorter", "longer") == "shorter"


def test_a_first_token_regression_is_slower_though_the_median_is_faster() -> None:
    """B's TTFT +60%, end to end -4%. The median alone said b_faster."""
    a, b = streams(1, ttft=(200.0, 320.0), tpot=(10.0, 8.7))
    diff = compare_versions(a, b)
    assert diff.p50_ci95_pct is not None and diff.p50_ci95_pct[1] < 0  # the old verdict
    ttft = diff.metrics["ttft_p50"]
    assert ttft.verdict == "slower" and ttft.change is not None and 55 < ttft.change < 65
    verdict, reason, decided_by = decide(diff)
    assert (verdict, decided_by) == ("b_slower", "ttft_p50")
    assert reason.startswith("TTFT p50 +")
    outcome, code, why = gate(compare_versions(a, b, gate_limits=GATE_5))
    assert (outcome, code) == ("regression", 1) and "TTFT p50" in why


def test_shorter_answers_are_not_faster_they_are_judged_per_token() -> None:
    """same speed per token, answers 25% shorter (96 vs 128 tokens).

    The median alone called B 24.7% faster. The length is checked, end-to-end times are
    compared per output token (equivalent), and the verdict says the answers differ.
    """
    a, b = streams(2, tokens=(128, 96))
    diff = compare_versions(a, b)
    assert diff.p50_pct is not None and diff.p50_pct < -20  # the raw median
    length = diff.metrics["output_tokens"]
    assert length.verdict == "shorter" and length.change is not None and length.change < -20
    assert diff.length_differs
    e2e = diff.metrics["e2e_p50"]
    assert e2e.per_token and e2e.verdict != "faster"
    verdict, reason, _ = decide(diff)
    assert verdict != "b_faster"
    assert "differ in length" in reason and "--output-control ignore_eos" in reason


def test_a_tail_regression_fails_the_gate() -> None:
    """10% of B's requests twice as slow: p95 +77%, median about +1%.

    ``--fail-on-regression 5`` used to pass it (exit 0): the p95 now gates.
    """
    a, b = streams(3, b_tail=(0.10, 2.0))
    diff = compare_versions(a, b, gate_limits=GATE_5)
    assert diff.metrics["e2e_p50"].change is not None and diff.metrics["e2e_p50"].change < 5
    p95 = diff.metrics["e2e_p95"]
    assert p95.verdict == "slower" and p95.change is not None and p95.change > 50
    assert decide(diff)[0] == "b_slower" and decide(diff)[2] == "e2e_p95"
    assert gate(diff)[:2] == ("regression", 1)


def test_a_version_failing_a_third_is_slower_not_inconclusive() -> None:
    """B fails 33.6% of its requests and is 4% faster on the rest: b_slower,
    exit 1 under the gate (it was inconclusive, exit 5)."""
    a, b = streams(4, tpot=(10.0, 9.6), b_fail=0.336)
    diff = compare_versions(a, b, gate_limits=GATE_5)
    failures = diff.metrics["failures"]
    assert failures.verdict == "slower" and failures.change is not None and failures.change > 30
    verdict, reason, decided_by = decide(diff)
    assert (verdict, decided_by) == ("b_slower", "failures") and "fails more" in reason
    assert gate(diff)[:2] == ("regression", 1)


def test_a_tiny_significant_failure_difference_inside_the_margin_does_not_decide() -> None:
    """B fails 0.2% more (significant at this size) but within the 0.5 pt margin."""
    a, b = streams(5, per_block=6000, b_fail=0.002)
    failures = compare_versions(a, b).metrics["failures"]
    assert failures.ci95 is not None and failures.ci95[1] <= 0.5
    assert failures.verdict == "equivalent"


def test_the_same_version_twice_is_no_difference_and_passes_the_gate() -> None:
    """A/A: no metric is faster or slower; the medians are equivalent within 2% (the p95s,
    noisier, may be undecided at that margin); the 5% gate passes."""
    a, b = streams(6)
    diff = compare_versions(a, b)
    verdicts = {name: m.verdict for name, m in diff.metrics.items()}
    assert set(verdicts.values()) <= {"equivalent", "inconclusive"}, verdicts
    assert all(verdicts[m] == "equivalent" for m in ("ttft_p50", "tpot_p50", "e2e_p50"))
    assert decide(diff)[0] in ("equivalent", "inconclusive")
    assert gate(compare_versions(a, b, gate_limits=GATE_5))[:2] == ("pass", 0)


def test_gate_names_the_metrics_that_decide() -> None:
    """--gate e2e_p50: a TTFT regression no longer decides the verdict or the gate."""
    a, b = streams(7, ttft=(200.0, 320.0), tpot=(10.0, 8.7))
    diff = compare_versions(a, b, judged=["e2e_p50"], gate_limits={"e2e_p50": 5.0})
    assert not diff.metrics["ttft_p50"].judged and diff.metrics["ttft_p50"].verdict == "slower"
    assert decide(diff)[0] == "b_faster"
    assert gate(diff)[:2] == ("pass", 0)


def test_checks_come_before_the_metrics() -> None:
    """Client-bound, a broken version, failures, a queue, unequal load: in that order."""
    a, b = streams(8, tpot=(10.0, 8.0))
    diff = compare_versions(a, b, gate_limits=GATE_5)
    assert decide(diff)[0] == "b_faster"
    assert decide(diff, Checks(client_bound=["a1"]))[0] == "inconclusive"
    assert gate(diff, Checks(client_bound=["a1"]))[:2] == ("inconclusive", 5)
    broken_b = Checks(broken="b", broken_detail="B failed 5 of its latest 40 requests")
    assert decide(diff, broken_b)[:1] == ("b_slower",) and gate(diff, broken_b)[1] == 1
    broken_a = Checks(broken="a", broken_detail="A failed 5 of its latest 9 requests")
    assert decide(diff, broken_a)[0] == "inconclusive"
    assert gate(diff, broken_a)[:2] == ("broken", 1)
    queue = ["B built a queue in 3 of 4 blocks (B1: ...)"]
    b_queue = Checks(overloaded=["b"], overload_reasons=queue, queue_free=["a"])
    assert decide(diff, b_queue)[0] == "b_slower" and gate(diff, b_queue)[:2] == ("regression", 1)
    both = Checks(overloaded=["a", "b"], overload_reasons=queue)
    assert decide(diff, both)[0] == "inconclusive" and gate(diff, both)[:2] == ("inconclusive", 5)
    a_queue = Checks(overloaded=["a"], unequal_load=["A started 30% late"], queue_free=["b"])
    assert decide(diff, a_queue)[0] == "b_faster" and gate(diff, a_queue)[:2] == ("pass", 0)
    # A noisy A/A on a real server: 3 of A's 4 blocks and 1 of B's failed a queue test.
    # Which version crosses half is chance: no verdict from it (it was b_faster).
    noisy = Checks(overloaded=["a"], overload_reasons=queue)
    assert decide(diff, noisy)[0] == "inconclusive" and gate(diff, noisy)[:2] == ("inconclusive", 5)
    late = Checks(unequal_load=["B started 30% of its tasks late (> 10%)"])
    assert decide(diff, late)[0] == "inconclusive" and gate(diff, late)[:2] == ("inconclusive", 5)


def test_a_cut_block_leaves_its_pair_out_of_the_latency_intervals() -> None:
    """Only whole pairs enter the intervals; the cut block's failures still count."""
    a, b = streams(9, b_fail=0.0)
    whole = compare_versions(a, b)
    cut = compare_versions(a, b, partial_b=[4])
    assert whole.pairs == 4 and cut.pairs == 3
    assert cut.metrics["failures"].b == whole.metrics["failures"].b


def test_tpot_on_counted_events_against_real_usage_is_not_compared() -> None:
    """Item 5 of issue 24: B's server sends no usage (tokens counted as events, 20 tokens an
    event reads as a TPOT 20 times too high): TPOT is not compared, and says why; on
    both sides estimated, it is compared and says so."""
    a, b = streams(2, per_block=300)
    b_estimated = b.assign(tokens_estimated=1.0)
    diff = compare_versions(a, b_estimated, gate_limits=GATE_5)
    tpot = diff.metrics["tpot_p50"]
    assert tpot.verdict == "inconclusive" and tpot.change is None and not tpot.judged
    assert tpot.note.startswith("not compared: B's output tokens are counted events")
    both = compare_versions(a.assign(tokens_estimated=1.0), b_estimated)
    assert both.metrics["tpot_p50"].note.startswith("~ output tokens counted from events")
    assert compare_versions(a, b).metrics["tpot_p50"].note == ""
