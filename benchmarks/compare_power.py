"""Power and false verdicts of ``capdisc compare stream``: a simulation, then real runs.

The question (issue 13): is a verdict ever fooled by a server that drifts, by block-to-
block effects, or by nothing at all (A/A), and is a true 10% slowdown found? Targets:
A/A false verdicts (``b_faster`` or ``b_slower``) at most 5% under (i) no drift,
(ii) +5% per 10 min linear drift, (iii) 1% random block effects; a 10% slowdown found
(``b_slower``) in at least 90% of runs at the shipped ``v1``/``v2`` scale.

1. **Statistics-level simulation** (``--sim-reps``, default 2000 per scenario). Each
   repetition builds the measured rows of one comparison, block by block in A B B A
   order, at one of two scales: the shipped ``v1``/``v2`` profiles (40 users every 2 s,
   40 s per version in 4 pairs: 200 requests per block, per-request noise of the
   simulator's +/-10% jitter) and the built-in default (200 users every 20 s, 8 min per
   version in 4 pairs: 1200 requests per block, lognormal noise of sd 0.3). A block
   lasts its hold, one interval of ramp-up and about a second to start and stop; drift
   is applied at each request's time. The rows go through ``compare_versions`` and
   ``decide``, the product's own statistics. Printed per scenario: the share of each
   verdict (false ones with a 95% Wilson interval) and the median minimum detectable
   effect (80% power) and interval width.
2. **Real runs** (``--real-reps``, default 3 per arm): ``run_compare`` (what the CLI
   calls) with two embedded simulators at reduced scale: a 10% slowdown, an A/A, and an
   A/A with the simulator's drift knob (``drift_per_min``, default +50%/min, so that
   adjacent blocks differ by a few percent). A real run costs about 30 s on 2 cores.

    .venv/bin/python benchmarks/compare_power.py [--sim-reps 2000] [--real-reps 3]
        [--users 20] [--interval 0.5] [--duration 4.8] [--drift 0.5] [--seed 0]

Exit code 1 when a simulated target fails.
"""

from __future__ import annotations

# capdisc's load engine imports locust, which gevent-patches the standard library:
# it must be imported before anything else in a process that sends load.
import capdisc.loadgen.engine  # noqa: F401  # isort: skip

import argparse
import math
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from capdisc.errors import CapdiscError
from capdisc.metrics.compare import compare_versions
from capdisc.metrics.decision import decide
from capdisc.profiles import Profile
from capdisc.settings import CompareSettings, TargetConfig
from capdisc.simulator.config import SimulatorConfig
from capdisc.strategies.compare_stream import CompareRequest, VersionSource, run_compare

DETECTION_TARGET = 0.90
FALSE_TARGET = 0.05
_Z95 = 1.959963984540054
VERDICTS = ("b_faster", "b_slower", "equivalent", "inconclusive")


@dataclass(frozen=True)
class Scale:
    """The load of one comparison: what sets the requests per block and the block length."""

    name: str
    users: int
    interval_s: float
    duration_s: float
    pairs: int
    sigma: float  # per-request log-normal noise

    @property
    def per_block(self) -> int:
        return round(self.users * self.duration_s / self.pairs / self.interval_s)

    @property
    def block_min(self) -> float:
        """A block's wall time: hold, one interval of ramp-up, ~1 s to start and stop."""
        return (self.duration_s / self.pairs + self.interval_s + 1.0) / 60.0


V1V2 = Scale("v1/v2", users=40, interval_s=2.0, duration_s=40.0, pairs=4, sigma=0.06)
DEFAULT = Scale("default", users=200, interval_s=20.0, duration_s=480.0, pairs=4, sigma=0.3)


@dataclass(frozen=True)
class Scenario:
    """What the servers do besides noise. B's true effects: ``effect`` on every latency
    (0.10 = +10%), ``ttft_effect`` and ``tpot_effect`` on one, ``tail`` (share, factor)
    of its requests that much slower end to end, ``b_fail`` extra failures, ``b_tokens``
    times the answer length; ``background_fail`` fails on both sides."""

    label: str
    scale: Scale
    effect: float = 0.0
    ttft_effect: float = 0.0
    tpot_effect: float = 0.0
    tail: tuple[float, float] = (0.0, 1.0)
    b_fail: float = 0.0
    b_tokens: float = 1.0
    background_fail: float = 0.0
    drift_per_10min: float = 0.0
    block_sd: float = 0.0
    wander_sd: float = 0.0  # slow server-state fluctuation: AR(1), 5 min correlation time
    required: bool = False  # one of the issues' targets (the others are information)
    # What a run must find: "b_slower", or "length" (the answers differ, and B is not
    # called faster for it); empty for an A/A run (no b_faster or b_slower allowed).
    expect: str = ""

    @property
    def detect(self) -> bool:
        return bool(self.expect)


def scenarios() -> list[Scenario]:
    out = []
    for scale in (V1V2, DEFAULT):
        default = scale is DEFAULT
        out += [
            Scenario("A/A, no drift", scale, required=True),
            Scenario("A/A, +5% per 10 min drift", scale, drift_per_10min=0.05, required=True),
            Scenario("A/A, 1% random block effects", scale, block_sd=0.01, required=True),
            Scenario("A/A, 0.2% background failures", scale, background_fail=0.002, required=True),
            Scenario("A/A, 2% slow fluctuation", scale, wander_sd=0.02),
            Scenario("A/A, drift + block effects", scale, drift_per_10min=0.05, block_sd=0.01),
            Scenario("B +10%", scale, effect=0.10, required=not default, expect="b_slower"),
            Scenario(
                "B +10%, 1% block effects", scale, effect=0.10, block_sd=0.01, expect="b_slower"
            ),
            Scenario("B TTFT +20%", scale, ttft_effect=0.20, required=default, expect="b_slower"),
            Scenario("B TPOT +10%", scale, tpot_effect=0.10, required=default, expect="b_slower"),
            Scenario(
                "B p95 tail +50% (10% of requests x1.9)",
                scale,
                tail=(0.10, 1.9),
                required=default,
                expect="b_slower",
            ),
            Scenario("B failures +2 pt", scale, b_fail=0.02, required=default, expect="b_slower"),
            Scenario(
                "B answers 25% shorter", scale, b_tokens=0.75, required=default, expect="length"
            ),
        ]
    return out


TTFT_MS, TPOT_MS, TOKENS, TIMEOUT_MS = 200.0, 10.0, 128, 30_000.0


def simulate(s: Scenario, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The measured rows of one comparison, A B B A, as ``compare_versions`` reads them.

    Each request: TTFT and TPOT lognormal (the scale's noise on TTFT, half of it on
    TPOT) times the server's state (drift, block effect, wander), ``TOKENS`` tokens
    (times ``b_tokens`` for B), end to end TTFT + TPOT x (tokens - 1); a failure is a
    timeout with no token figures.
    """
    scale = s.scale
    n = scale.per_block
    order = [(side, k) for k in range(1, scale.pairs + 1) for side in ("ab" if k % 2 else "ba")]
    # Slow fluctuation: AR(1) sampled at the blocks' midpoints, stationary sd wander_sd.
    rho = math.exp(-scale.block_min / 5.0)
    wander = np.zeros(len(order))
    if s.wander_sd:
        wander[0] = rng.normal(0, s.wander_sd)
        for i in range(1, len(order)):
            wander[i] = rho * wander[i - 1] + rng.normal(0, s.wander_sd * math.sqrt(1 - rho**2))
    frames: dict[str, list[pd.DataFrame]] = {"a": [], "b": []}
    for position, (side, block) in enumerate(order):
        b = side == "b"
        minutes = (position + rng.uniform(0, 1, n)) * scale.block_min
        state = (
            rng.normal(0, s.block_sd)
            + wander[position]
            + np.log1p(s.drift_per_10min * minutes / 10.0)
            + (math.log1p(s.effect) if b else 0.0)
        )
        ttft = np.exp(math.log(TTFT_MS) + rng.normal(0, scale.sigma, n) + state)
        tpot = np.exp(math.log(TPOT_MS) + rng.normal(0, scale.sigma / 2, n) + state)
        if b:
            ttft *= 1.0 + s.ttft_effect
            tpot *= 1.0 + s.tpot_effect
        tokens = np.full(n, round(TOKENS * (s.b_tokens if b else 1.0)), dtype="float64")
        total = ttft + tpot * (tokens - 1)
        if b and s.tail[0]:
            total = np.where(rng.uniform(size=n) < s.tail[0], total * s.tail[1], total)
        fail = s.background_fail + (s.b_fail if b else 0.0)
        failed = rng.uniform(size=n) < fail
        frames[side].append(
            pd.DataFrame(
                {
                    "name": "stream",
                    "step": block,
                    "ok": np.where(failed, 0, 1),
                    "duration_ms": np.where(failed, TIMEOUT_MS, total),
                    "ttft_ms": np.where(failed, np.nan, ttft),
                    "tpot_ms": np.where(failed, np.nan, tpot),
                    "output_tokens": np.where(failed, np.nan, tokens),
                }
            )
        )
    return pd.concat(frames["a"]), pd.concat(frames["b"])


def wilson(k: int, n: int) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (0..1)."""
    if n == 0:
        return (0.0, 1.0)
    p, z = k / n, _Z95
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def run_simulation(reps: int, seed: int) -> bool:
    print(
        f"statistics-level simulation: {reps} repetitions per scenario; v1/v2 scale "
        f"{V1V2.per_block} requests per block, default scale {DEFAULT.per_block}; 4 pairs\n"
    )
    header = (
        "| scale | scenario | b_faster | b_slower | equivalent | inconclusive | target "
        "| decided by (runs) | MDE | CI width |"
    )
    print(header)
    print("|---|---|---:|---:|---:|---:|---|---|---:|---:|")
    all_ok = True
    for index, s in enumerate(scenarios()):
        rng = np.random.default_rng([seed, index])
        counts: Counter[str] = Counter()
        deciders: Counter[str] = Counter()
        mdes, widths = [], []
        found = 0
        for _ in range(reps):
            diff = compare_versions(*simulate(s, rng))
            verdict, _, decided_by = decide(diff)
            counts[verdict] += 1
            deciders[decided_by or "-"] += verdict in ("b_faster", "b_slower")
            if s.expect == "length":  # flagged, and no speed verdict for it
                found += diff.length_differs and verdict in ("equivalent", "inconclusive")
            else:
                found += verdict == s.expect
            if diff.mde_pct is not None and diff.p50_ci95_pct is not None:
                mdes.append(diff.mde_pct)
                widths.append(diff.p50_ci95_pct[1] - diff.p50_ci95_pct[0])
        if s.detect:
            hits = found
            ok = hits / reps >= DETECTION_TARGET
            lo, hi = wilson(hits, reps)
            target = f"found {hits / reps:.1%} [{lo:.1%}, {hi:.1%}]"
            goal = f" >= {DETECTION_TARGET:.0%}"
        else:
            wrong = counts["b_faster"] + counts["b_slower"]
            ok = wrong / reps <= FALSE_TARGET
            lo, hi = wilson(wrong, reps)
            target = f"false {wrong / reps:.1%} [{lo:.1%}, {hi:.1%}]"
            goal = f" <= {FALSE_TARGET:.0%}"
        if s.required:
            target += f"{goal}: {'PASS' if ok else 'FAIL'}"
        else:
            ok = True  # information: not one of the targets
        all_ok &= ok
        cells = " | ".join(f"{counts[v] / reps:.1%}" for v in VERDICTS)
        mde = f"\u00b1{statistics.median(mdes):.1f}%" if mdes else "-"
        width = f"{statistics.median(widths):.1f} pt" if widths else "-"
        decided = ", ".join(f"{k} {v}" for k, v in deciders.most_common(2) if v) or "-"
        print(
            f"| {s.scale.name} | {s.label} | {cells} | {target} | {decided} | {mde} | {width} |",
            flush=True,
        )
    return all_ok


# -- real runs -------------------------------------------------------------------------

BASE_PREFILL_MS, BASE_PER_TOKEN_MS, OUTPUT_TOKENS = 50.0, 10.0, 32
# The real arms and what B's simulator changes: (prefill, per token, output tokens,
# error rate, drift), and what the run must find ("" for an A/A: no b_faster/b_slower).
ARMS: dict[str, tuple[float, float, int, float, bool, str]] = {
    "A/A": (1.0, 1.0, OUTPUT_TOKENS, 0.0, False, ""),
    "A/A with drift": (1.0, 1.0, OUTPUT_TOKENS, 0.0, True, ""),
    "B +10%": (1.1, 1.1, OUTPUT_TOKENS, 0.0, False, "b_slower"),
    "B TTFT +20%": (1.25, 1.0, OUTPUT_TOKENS, 0.0, False, "b_slower"),
    "B failures 2%": (1.0, 1.0, OUTPUT_TOKENS, 0.02, False, "b_slower"),
    "B answers 25% shorter": (1.0, 1.0, 24, 0.0, False, "length"),
}


def _profile(
    name: str, prefill: float, per_token: float, tokens: int, errors: float, drift: float, seed: int
) -> Profile:
    config = SimulatorConfig.model_validate(
        {
            "slots": 64,
            "prefill_ms": BASE_PREFILL_MS * prefill,
            "per_token_ms": BASE_PER_TOKEN_MS * per_token,
            "output_tokens": tokens,
            "jitter": 0.1,
            "seed": seed,
            "drift_per_min": drift,
            "faults": {"error_rate": errors},
        }
    )
    target = TargetConfig(embedded=True, model=config.model, max_tokens=OUTPUT_TOKENS, timeout=10.0)
    return Profile(target=target, simulator=config, name=name)


def real_run(arm: str, rep: int, args: argparse.Namespace, out: Path) -> str:
    """One comparison exactly as the CLI runs it; returns a line with its verdict."""
    seed = args.seed * 1000 + rep * 10
    prefill, per_token, tokens, errors, drifting, expect = ARMS[arm]
    drift = args.drift if drifting else 0.0
    a = _profile("a", 1.0, 1.0, OUTPUT_TOKENS, 0.0, drift, seed + 1)
    b = _profile("b", prefill, per_token, tokens, errors, drift, seed + 2)
    settings = CompareSettings(
        users=args.users,
        interval=args.interval,
        duration=args.duration,
        blocks=4,
        failure_threshold=5,
        seed=seed,
    )
    request = CompareRequest(
        a=VersionSource(side="a", label="a", profile=a),
        b=VersionSource(side="b", label="b", profile=b),
        settings=settings,
        out_dir=out,
    )
    started = time.monotonic()
    try:
        summary = run_compare(request, None, out.parent / "cache").summary
    except (CapdiscError, OSError) as exc:
        return f"error: {exc}"
    d = summary.diff
    if expect == "length":
        ok = d.length_differs and summary.verdict in ("equivalent", "inconclusive")
    elif expect:
        ok = summary.verdict == expect
    else:
        ok = summary.verdict not in ("b_faster", "b_slower")
    return (
        f"{'ok  ' if ok else 'MISS'} {summary.verdict:12} decided by {summary.decided_by or '-':14} "
        f"({summary.a.requests}/{summary.b.requests} requests, stop {summary.stop_reason}, "
        f"{time.monotonic() - started:.0f} s)"
    )


def run_real(args: argparse.Namespace) -> None:
    print(
        f"\nreal runs: {args.users} users every {args.interval:g} s, {args.duration:g} s per "
        f"version in 4 pairs; drift arm {args.drift:+.0%}/min\n"
    )
    with tempfile.TemporaryDirectory(prefix="compare-power-") as work:
        for rep in range(1, args.real_reps + 1):
            for arm in ARMS:
                out = (
                    Path(work) / f"{arm.replace(' ', '_').replace('/', '').replace('%', '')}-{rep}"
                )
                print(f"{arm:22} {rep}: {real_run(arm, rep, args, out)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim-reps", type=int, default=500, help="simulated repetitions")
    parser.add_argument("--real-reps", type=int, default=2, help="real runs per arm (0: none)")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--duration", type=float, default=4.8, help="seconds per version")
    parser.add_argument("--drift", type=float, default=0.5, help="drift per minute, real arm")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.monotonic()
    ok = run_simulation(args.sim_reps, args.seed) if args.sim_reps > 0 else True
    if args.real_reps > 0:
        run_real(args)
    print(
        f"\n{(time.monotonic() - started) / 60:.1f} min; simulated targets {'PASS' if ok else 'FAIL'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
