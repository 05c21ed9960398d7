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
from capdisc.metrics.compare import compare_versions, decide
from capdisc.profiles import Profile
from capdisc.settings import CompareSettings, TargetConfig
from capdisc.simulator.config import SimulatorConfig
from capdisc.strategies.stream import CompareRequest, VersionSource, run_compare

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
    """What the server does besides noise; ``effect`` is B's true slowdown (0.10 = +10%)."""

    label: str
    scale: Scale
    effect: float = 0.0
    drift_per_10min: float = 0.0
    block_sd: float = 0.0
    wander_sd: float = 0.0  # slow server-state fluctuation: AR(1), 5 min correlation time
    required: bool = False  # one of the targets (the others are information)

    @property
    def detect(self) -> bool:
        return self.effect != 0.0


def scenarios() -> list[Scenario]:
    out = []
    for scale in (V1V2, DEFAULT):
        out += [
            Scenario("A/A, no drift", scale, required=True),
            Scenario("A/A, +5% per 10 min drift", scale, drift_per_10min=0.05, required=True),
            Scenario("A/A, 1% random block effects", scale, block_sd=0.01, required=True),
            Scenario("A/A, 2% slow fluctuation", scale, wander_sd=0.02),
            Scenario("A/A, drift + block effects", scale, drift_per_10min=0.05, block_sd=0.01),
            Scenario("B +10%", scale, effect=0.10, required=scale is V1V2),
            Scenario("B +10%, 1% block effects", scale, effect=0.10, block_sd=0.01),
        ]
    return out


def simulate(s: Scenario, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The measured rows of one comparison, A B B A, as ``compare_versions`` reads them."""
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
        minutes = (position + rng.uniform(0, 1, n)) * scale.block_min
        log_ms = (
            math.log(500.0)
            + rng.normal(0, scale.sigma, n)
            + rng.normal(0, s.block_sd)
            + wander[position]
            + np.log1p(s.drift_per_10min * minutes / 10.0)
            + (math.log1p(s.effect) if side == "b" else 0.0)
        )
        frames[side].append(
            pd.DataFrame(
                {
                    "name": "stream",
                    "step": block,
                    "ok": 1,
                    "duration_ms": np.exp(log_ms),
                    "ttft_ms": np.nan,
                    "tpot_ms": np.nan,
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
    header = "| scale | scenario | b_faster | b_slower | equivalent | inconclusive | target | MDE | CI width |"
    print(header)
    print("|---|---|---:|---:|---:|---:|---|---:|---:|")
    all_ok = True
    for index, s in enumerate(scenarios()):
        rng = np.random.default_rng([seed, index])
        counts: Counter[str] = Counter()
        mdes, widths = [], []
        for _ in range(reps):
            diff = compare_versions(*simulate(s, rng))
            counts[decide(diff, [])[0]] += 1
            if diff.mde_pct is not None and diff.p50_ci95_pct is not None:
                mdes.append(diff.mde_pct)
                widths.append(diff.p50_ci95_pct[1] - diff.p50_ci95_pct[0])
        if s.detect:
            hits = counts["b_slower"]
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
        print(f"| {s.scale.name} | {s.label} | {cells} | {target} | {mde} | {width} |", flush=True)
    return all_ok


# -- real runs -------------------------------------------------------------------------

BASE_PREFILL_MS, BASE_PER_TOKEN_MS, OUTPUT_TOKENS = 50.0, 10.0, 32


def _profile(name: str, factor: float, drift: float, seed: int) -> Profile:
    config = SimulatorConfig(
        slots=64,
        prefill_ms=BASE_PREFILL_MS * factor,
        per_token_ms=BASE_PER_TOKEN_MS * factor,
        output_tokens=OUTPUT_TOKENS,
        jitter=0.1,
        seed=seed,
        drift_per_min=drift,
    )
    target = TargetConfig(embedded=True, model=config.model, max_tokens=OUTPUT_TOKENS, timeout=10.0)
    return Profile(target=target, simulator=config, name=name)


def real_run(arm: str, rep: int, args: argparse.Namespace, out: Path) -> str:
    """One comparison exactly as the CLI runs it; returns a line with its verdict."""
    seed = args.seed * 1000 + rep * 10
    factor = 1.1 if arm == "B +10%" else 1.0
    drift = args.drift if "drift" in arm else 0.0
    a = _profile("a", 1.0, drift, seed + 1)
    b = _profile("b", factor, drift, seed + 2)
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
        summary = run_compare(request, progress=None).summary
    except (CapdiscError, OSError) as exc:
        return f"error: {exc}"
    d = summary.diff
    ci = "-" if d.p50_ci95_pct is None else f"{d.p50_ci95_pct[0]:+.1f} .. {d.p50_ci95_pct[1]:+.1f}"
    mde = "-" if d.mde_pct is None else f"{d.mde_pct:.1f}"
    return (
        f"{summary.verdict:12} median {d.p50_pct or 0:+.1f}% CI {ci} MDE {mde}% "
        f"({summary.a.requests}/{summary.b.requests} requests, {time.monotonic() - started:.0f} s)"
    )


def run_real(args: argparse.Namespace) -> None:
    print(
        f"\nreal runs: {args.users} users every {args.interval:g} s, {args.duration:g} s per "
        f"version in 4 pairs; drift arm {args.drift:+.0%}/min\n"
    )
    with tempfile.TemporaryDirectory(prefix="compare-power-") as work:
        for rep in range(1, args.real_reps + 1):
            for arm in ("B +10%", "A/A", "A/A with drift"):
                out = Path(work) / f"{arm.replace(' ', '_').replace('/', '')}-{rep}"
                print(f"{arm:15} {rep}: {real_run(arm, rep, args, out)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim-reps", type=int, default=2000, help="simulated repetitions")
    parser.add_argument("--real-reps", type=int, default=3, help="real runs per arm (0: none)")
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
