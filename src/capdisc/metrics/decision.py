"""From the compared metrics and the run's checks to the comparison's verdict and its gate.

Every metric a user feels has its own verdict (:func:`capdisc.metrics.compare.compare_versions`);
the overall verdict follows from the judged ones (``--gate``, default
:data:`~capdisc.verdicts.DEFAULT_GATE`), after the checks that say the load
itself is not comparable. In order, the first that applies decides:

1. a client-bound block: capdisc itself was the limit, no verdict (``inconclusive``);
2. a version that stopped the run with its failures (``broken``): B is ``b_slower``; a
   broken A (the baseline) leaves ``inconclusive``, and a gate fails closed;
3. failures higher beyond ``--failure-margin``: ``b_slower``, whatever the latency;
4. a queue building within a version's blocks (the overload tests of discovery): B
   alone (no block of A failing them) is ``b_slower``, A alone ``b_faster``; queues in
   blocks of both give no latency verdict;
5. unequal realized load (achieved rate, late starts): no latency verdict;
6. the judged metrics: ``b_slower`` when any is slower beyond its margin, ``b_faster``
   when none is slower and one is faster, ``equivalent`` when all are within their
   margins, else ``inconclusive``.

The gate (``--gate METRIC:PCT`` or ``--fail-on-regression PCT``) reads each judged
metric's interval against its limit: regression (exit 1) when one lies above it, pass
(exit 0) when every upper bound is within it, else inconclusive (exit 5: run longer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from capdisc.schema import VersionDiff
from capdisc.verdicts import METRICS, GateOutcome, MetricDiff, Verdict

__all__ = ["METRIC_LABELS", "Checks", "client_bound_text", "decide", "gate", "metric_text"]

METRIC_LABELS = {
    "failures": "failures",
    "ttft_p50": "TTFT p50",
    "ttft_p95": "TTFT p95",
    "tpot_p50": "TPOT p50",
    "e2e_p50": "end-to-end p50",
    "e2e_p95": "end-to-end p95",
    "output_tokens": "output tokens",
}

Side = Literal["a", "b"]


@dataclass(frozen=True)
class Checks:
    """What the run itself says about the load, before any metric is read."""

    unequal_load: Sequence[str] = ()
    # Versions whose blocks built a queue, and why (one line per version); versions
    # none of whose blocks failed a queue test.
    overloaded: Sequence[Side] = ()
    overload_reasons: Sequence[str] = ()
    queue_free: Sequence[Side] = ()
    # The version whose failures stopped the run (the failure threshold), and how.
    broken: Side | None = None
    broken_detail: str = ""
    client_bound: Sequence[str] = field(default_factory=tuple)

    def queued_alone(self) -> Side | None:
        """The version that built a queue while no block of the other showed one.

        A one-sided overload decides only then: a noisy server trips the queue tests in
        some blocks of both versions of an A/A, and which one crosses half is chance.
        """
        if len(self.overloaded) != 1:
            return None
        side = self.overloaded[0]
        other: Side = "a" if side == "b" else "b"
        return side if other in self.queue_free else None


def client_bound_text(blocks: Sequence[str]) -> str:
    """Why client-bound blocks give no verdict, naming them."""
    return f"client-bound block(s) {', '.join(blocks)}: capdisc itself was the limit"


def _num(value: float, unit: str) -> str:
    sign = "+" if value >= 0 else "-"
    digits = 2 if unit == " pt" else 1
    return f"{sign}{abs(value):.{digits}f}{unit}"


def metric_text(metric: MetricDiff) -> str:
    """``TTFT p50 +60.2% (95% CI +55.1% .. +65.3%, margin ±2%)``."""
    unit = " pt" if metric.unit == "pt" else "%"
    label = METRIC_LABELS.get(metric.metric, metric.metric)
    if metric.per_token:
        label += " at A's answer length"
    if metric.change is None:
        return f"{label}: {metric.note or 'not measured'}"
    text = f"{label} {_num(metric.change, unit)}"
    if metric.ci95 is None:
        return f"{text} ({metric.note or 'no interval'})"
    lo, hi = metric.ci95
    return f"{text} (95% CI {_num(lo, unit)} .. {_num(hi, unit)}, margin \u00b1{metric.margin:g}{unit})"


def _judged(diff: VersionDiff) -> list[MetricDiff]:
    return [
        diff.metrics[name] for name in METRICS if name in diff.metrics and diff.metrics[name].judged
    ]


def _length_note(diff: VersionDiff) -> str:
    length = diff.metrics.get("output_tokens")
    if not diff.length_differs or length is None or length.change is None:
        return ""
    how = "shorter" if length.change < 0 else "longer"
    sizes = (
        f" ({length.b:.0f} against {length.a:.0f} tokens on average)"
        if length.a is not None and length.b is not None
        else ""
    )
    return (
        f"; the answers differ in length: B's are {abs(length.change):.1f}% {how}{sizes}, so "
        "end-to-end times are judged per output token at A's length (for answers of one "
        "length, use "
        "--output-control ignore_eos or min_tokens)"
    )


def decide(diff: VersionDiff, checks: Checks | None = None) -> tuple[Verdict, str, str | None]:
    """The verdict, why in words, and the metric (or check) that decided it."""
    checks = checks or Checks()
    note = _length_note(diff)
    if checks.client_bound:
        return "inconclusive", client_bound_text(checks.client_bound), "client"
    if checks.broken == "b":
        return "b_slower", f"B is broken: {checks.broken_detail}", "broken"
    if checks.broken == "a":
        return (
            "inconclusive",
            f"A, the baseline, is broken: {checks.broken_detail}; no comparison",
            "broken",
        )
    failures = diff.metrics.get("failures")
    if failures is not None and failures.judged and failures.verdict == "slower":
        return "b_slower", f"B fails more often: {metric_text(failures)}", "failures"
    overload = "; ".join(checks.overload_reasons)
    alone = checks.queued_alone()
    if alone == "b":
        return "b_slower", f"B builds a queue at a load A sustains: {overload}", "overload"
    if alone == "a":
        return "b_faster", f"A builds a queue at a load B sustains: {overload}", "overload"
    if checks.overloaded:
        who = (
            "both versions build a queue"
            if len(checks.overloaded) == 2
            else "queues build in blocks of both versions"
        )
        return (
            "inconclusive",
            f"{who} at this load, so no latency verdict: {overload}; compare at fewer --users",
            "overload",
        )
    if checks.unequal_load:
        return "inconclusive", "unequal load: " + "; ".join(checks.unequal_load), "load"
    judged = _judged(diff)
    if not judged:
        return "inconclusive", "no metric to judge", None
    undecided = [m for m in judged if m.verdict == "inconclusive"]
    slower = [m for m in judged if m.verdict == "slower"]
    if slower:
        main = _largest(slower)
        why = metric_text(main) + _also("slower", slower, main) + _also("undecided", undecided)
        return "b_slower", why + note, main.metric
    faster = [m for m in judged if m.verdict == "faster"]
    if faster:
        main = _largest(faster)
        why = metric_text(main) + _also("faster", faster, main) + _also("undecided", undecided)
        return "b_faster", why + note, main.metric
    if all(m.verdict == "equivalent" for m in judged):
        return "equivalent", "every judged metric lies within its margin" + note, None
    why = "; ".join(metric_text(m) for m in undecided)
    return (
        "inconclusive",
        f"{why}: the intervals reach beyond the margins, run longer" + note,
        (undecided[0].metric),
    )


def _largest(metrics: list[MetricDiff]) -> MetricDiff:
    """The metric that decided among several: failures first, then the largest change."""
    for metric in metrics:
        if metric.metric == "failures":
            return metric
    return max(metrics, key=lambda m: abs(m.change or 0.0))


def _also(what: str, metrics: list[MetricDiff], main: MetricDiff | None = None) -> str:
    names = [METRIC_LABELS.get(m.metric, m.metric) for m in metrics if m is not main]
    return f"; {what}: {', '.join(names)}" if names else ""


def gate(diff: VersionDiff, checks: Checks | None = None) -> tuple[GateOutcome, int, str]:
    """The gate's outcome, its exit code and the line that says why.

    Regression (exit 1): a judged metric's interval lies above its limit, or B broke,
    or B alone built a queue. Broken (exit 1): the baseline broke, the gate fails closed.
    Pass (exit 0): every judged metric's upper bound is within its limit. Otherwise
    inconclusive (exit 5): client-bound, unequal load, both versions queued, or an
    interval that spans a limit.
    """
    checks = checks or Checks()
    if checks.client_bound:
        return "inconclusive", 5, "capdisc itself was the limit in some blocks"
    if checks.broken == "b":
        return "regression", 1, f"B is broken: {checks.broken_detail}"
    if checks.broken == "a":
        return "broken", 1, f"A, the baseline, is broken: {checks.broken_detail}"
    judged = [m for m in _judged(diff) if m.gate_limit is not None]
    failures = [m for m in judged if m.metric == "failures"]
    above = [m for m in failures if m.ci95 is not None and m.ci95[0] > (m.gate_limit or 0.0)]
    if above:
        return "regression", 1, f"B fails more often: {metric_text(above[0])}"
    alone = checks.queued_alone()
    if alone == "b":
        return "regression", 1, "B builds a queue at a load A sustains"
    if checks.overloaded and alone is None:
        return "inconclusive", 5, "queues build in blocks of both versions at this load"
    # A alone queued: its late starts are its own, B's metrics are gated as they are.
    if checks.unequal_load and alone != "a":
        return "inconclusive", 5, "the load was unequal"
    above = [m for m in judged if m.ci95 is not None and m.ci95[0] > (m.gate_limit or 0.0)]
    if above:
        return "regression", 1, "; ".join(_beyond(m) for m in above)
    if judged and all(m.ci95 is not None and m.ci95[1] <= (m.gate_limit or 0.0) for m in judged):
        return "pass", 0, "every gated metric is within its limit"
    open_ = [m for m in judged if m.ci95 is None or m.ci95[1] > (m.gate_limit or 0.0)]
    if not open_:
        return "inconclusive", 5, "no metric to gate"
    return "inconclusive", 5, "; ".join(_spans(m) for m in open_) + ": run longer"


def _unit(metric: MetricDiff) -> str:
    return " pt" if metric.unit == "pt" else "%"


def _beyond(metric: MetricDiff) -> str:
    return f"{metric_text(metric)} is above the {metric.gate_limit:g}{_unit(metric)} limit"


def _spans(metric: MetricDiff) -> str:
    label = METRIC_LABELS.get(metric.metric, metric.metric)
    if metric.ci95 is None:
        return f"{label} has no interval"
    return f"{metric_text(metric)} spans the {metric.gate_limit:g}{_unit(metric)} limit"
