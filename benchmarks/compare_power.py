"""Power and false-positive rate of ``capdisc compare stream``, measured on real runs.

The question (from the issue): how often does ``compare stream`` detect a true 10%
slowdown, and how often does it call a difference between a target and itself?
Targets: detection >= 90%, false positives <= 5%.

Method. Each repetition is one real ``compare stream`` run: the benchmark calls
``run_compare`` (what the CLI calls) with two embedded-simulator profiles and a fresh
output directory, at reduced scale (few users, short pacing interval, short blocks)
so that many repetitions fit in a few minutes. So everything is the product's own:

- two simulators (``capdisc.simulator`` subprocesses on 127.0.0.1, free ports),
  checked by preflight;
- the load: alternating blocks A B A B, each one Locust session that excludes one
  pacing interval of ramp-up and then measures ``duration / blocks`` seconds, every
  request recorded in ``requests.csv``;
- the verdict: ``compare_versions`` on the measured rows (95% block-bootstrap CI of
  the median difference excludes 0 *and* Mann-Whitney p < 0.05; CONTRACT.md,
  "Verdict"), as written to ``summary.json``.

Two arms, interleaved (one repetition of each in turn, so drift of the machine
hits both alike):

- detection: B's service time is ``1 + --slowdown`` times A's (prefill and per-token
  time both scaled, so the end-to-end median is that much longer); the correct
  verdict is ``b_slower``. Detection rate = share of repetitions with ``b_slower``.
- A/A: both sides run the same simulator configuration (two processes, which differ
  only in the seed of their jitter, as two runs of one server would). The correct
  verdict is ``no_difference``; false-positive rate = share of repetitions with any
  other verdict.

Every simulator has ``--jitter`` (uniform +/- share of the service time per request)
and its own seed per repetition; the users' seed and the bootstrap seed change per
repetition too. Each rate is printed with its 95% Wilson interval: with 20
repetitions a rate of 20/20 only shows the true rate is above ~84%, and 0/20 that it
is below ~16%, so use ``--reps`` to tighten them. A repetition that fails (a
simulator that does not start, a failed request threshold) counts against the
target of its arm: not detected, or a false positive.

    .venv/bin/python benchmarks/compare_power.py [--reps 20] [--users 20]
        [--interval 0.5] [--duration 4.8] [--blocks 2] [--slowdown 0.10]
        [--jitter 0.1] [--seed 0] [--keep DIR] [--time-limit 30m]

Prints one line per repetition, then both rates with "PASS"/"FAIL"; exit code 1
when a target fails or repetitions were skipped.
"""

from __future__ import annotations

# capdisc's load engine imports locust, which gevent-patches the standard library:
# it must be imported before anything else in a process that sends load.
import capdisc.loadgen.engine  # noqa: F401  # isort: skip

import argparse
import math
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from capdisc.durations import parse_duration
from capdisc.errors import CapdiscError
from capdisc.profiles import Profile
from capdisc.settings import CompareSettings, TargetConfig
from capdisc.simulator.config import SimulatorConfig
from capdisc.strategies.stream import CompareRequest, VersionSource, run_compare

Arm = Literal["detect", "aa"]

DETECTION_TARGET = 0.90
FALSE_POSITIVE_TARGET = 0.05
_Z95 = 1.959963984540054

# The base service: 50 ms prefill + 32 tokens x 10 ms = 370 ms per request, with
# slots to spare (20 users every 0.5 s keep about 15 busy): no queueing, so the
# end-to-end time is the service time (plus a few ms of HTTP) and B's is exactly
# (1 + slowdown) times A's service time.
BASE_PREFILL_MS = 50.0
BASE_PER_TOKEN_MS = 10.0
OUTPUT_TOKENS = 32
SLOTS = 64
REQUEST_TIMEOUT_S = 10.0
FAILURE_THRESHOLD = 5
STOP_TIMEOUT_S = 5.0


@dataclass
class Repetition:
    """One comparison and what capdisc concluded."""

    arm: Arm
    index: int
    verdict: str
    p50_pct: float | None = None
    ci: tuple[float, float] | None = None
    p_value: float | None = None
    a_requests: int = 0
    b_requests: int = 0
    seconds: float = 0.0
    error: str = ""
    warnings: tuple[str, ...] = ()

    @property
    def correct(self) -> bool:
        return self.verdict == ("b_slower" if self.arm == "detect" else "no_difference")


def wilson(successes: int, n: int, z: float = _Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (0..1)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def simulator(factor: float, jitter: float, seed: int) -> SimulatorConfig:
    """The base service, ``factor`` times slower (prefill and per-token time alike)."""
    return SimulatorConfig(
        slots=SLOTS,
        prefill_ms=BASE_PREFILL_MS * factor,
        per_token_ms=BASE_PER_TOKEN_MS * factor,
        output_tokens=OUTPUT_TOKENS,
        jitter=jitter,
        seed=seed,
    )


def profile(config: SimulatorConfig, name: str) -> Profile:
    """An embedded profile: capdisc starts this simulator on a free loopback port."""
    target = TargetConfig(
        embedded=True, model=config.model, max_tokens=OUTPUT_TOKENS, timeout=REQUEST_TIMEOUT_S
    )
    return Profile(target=target, simulator=config, name=name)


def sources(
    arm: Arm, rep: int, args: argparse.Namespace
) -> tuple[VersionSource, VersionSource, int]:
    """Both sides of one repetition and its seed (users and bootstrap)."""
    seed = args.seed * 100_000 + rep * 10 + (0 if arm == "detect" else 5)
    factor_b = 1.0 + args.slowdown if arm == "detect" else 1.0
    a = profile(simulator(1.0, args.jitter, seed + 1), "base")
    b = profile(simulator(factor_b, args.jitter, seed + 2), "slow" if arm == "detect" else "base")
    return (
        VersionSource(side="a", label=a.name, profile=a),
        VersionSource(side="b", label=b.name, profile=b),
        seed,
    )


def run_one(arm: Arm, rep: int, args: argparse.Namespace, out_dir: Path) -> Repetition:
    """One comparison exactly as ``capdisc compare stream`` runs it (every output written)."""
    a, b, seed = sources(arm, rep, args)
    settings = CompareSettings(
        users=args.users,
        interval=args.interval,
        duration=args.duration,
        temperature=0.0,
        blocks=args.blocks,
        failure_threshold=FAILURE_THRESHOLD,
        seed=seed,
    )
    request = CompareRequest(
        a=a, b=b, settings=settings, out_dir=out_dir, stop_timeout_s=STOP_TIMEOUT_S
    )
    outcome = run_compare(request, progress=None)
    summary = outcome.summary
    if summary.stop_reason == "interrupted":
        raise KeyboardInterrupt
    if outcome.failure is not None:
        raise RuntimeError(outcome.failure.message)
    if summary.stop_reason != "duration":
        raise RuntimeError(f"run stopped early: {summary.stop_reason}")
    return Repetition(
        arm=arm,
        index=rep,
        verdict=summary.verdict,
        p50_pct=summary.diff.p50_pct,
        ci=summary.diff.p50_ci95_pct,
        p_value=summary.diff.p_value,
        a_requests=summary.a.requests,
        b_requests=summary.b.requests,
        warnings=tuple(outcome.warnings),
    )


def run_repetition(arm: Arm, rep: int, args: argparse.Namespace, work: Path) -> Repetition:
    """Run one repetition of ``arm``; any failure becomes an ``error`` verdict."""
    started = time.monotonic()
    try:
        result = run_one(arm, rep, args, work / f"{arm}-{rep:03d}")
    except (CapdiscError, RuntimeError, OSError) as exc:
        result = Repetition(arm=arm, index=rep, verdict="error", error=str(exc))
    result.seconds = time.monotonic() - started
    return result


def _fmt_pct(value: float | None) -> str:
    return "   n/a" if value is None else f"{value:+6.1f}%"


def describe(r: Repetition, reps: int) -> str:
    """One line per repetition."""
    name = "detect" if r.arm == "detect" else "A/A"
    head = f"{name:6} {r.index:>3}/{reps}  {r.verdict:13}"
    if r.error:
        return f"{head} {r.error}  ({r.seconds:.1f} s)"
    ci = "[   n/a ]" if r.ci is None else f"[{r.ci[0]:+5.1f}, {r.ci[1]:+5.1f}]"
    p = "n/a" if r.p_value is None else f"{r.p_value:.2g}"
    mark = "" if r.correct else "  <-- wrong"
    notes = "".join(f"\n    warning: {w}" for w in r.warnings)
    return (
        f"{head} median diff {_fmt_pct(r.p50_pct)}  CI95 {ci}  p={p:8}"
        f"  n={r.a_requests}/{r.b_requests}  ({r.seconds:.1f} s){mark}{notes}"
    )


def rate_line(label: str, hits: int, n: int, target: float, at_least: bool) -> tuple[str, bool]:
    """``label: 19/20 = 95.0% [Wilson 95% ...]  target >= 90%: PASS``."""
    rate = hits / n if n else 0.0
    lo, hi = wilson(hits, n)
    passed = n > 0 and (rate >= target if at_least else rate <= target)
    sign = ">=" if at_least else "<="
    verdict = "PASS" if passed else "FAIL"
    return (
        f"{label}: {hits}/{n} = {rate:.1%}  (95% Wilson interval {lo:.1%} .. {hi:.1%})"
        f"  target {sign} {target:.0%}: {verdict}",
        passed,
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Detection rate of a true slowdown and false-positive rate of A/A runs of "
            "'capdisc compare stream', on embedded simulators at reduced scale."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--reps", type=int, default=20, help="repetitions per arm")
    parser.add_argument("--users", type=int, default=20, help="users of each block")
    parser.add_argument("--interval", type=float, default=0.5, help="pacing interval, seconds")
    # Locust's shape ticks once a second and spawning takes about 1 s, so a block lasts
    # about 1 + interval + hold seconds rounded up to a whole second, plus ~0.5 s to
    # stop: 2.4 s holds (4.8 / 2) make 3.5 s blocks, 2.5 s ones often 4.5 s.
    parser.add_argument(
        "--duration",
        type=parse_duration,
        default=4.8,
        help="measured seconds per version, split over its blocks (as compare --duration; DUR)",
    )
    parser.add_argument("--blocks", type=int, default=2, help="alternating blocks per version")
    parser.add_argument(
        "--slowdown", type=float, default=0.10, help="B's extra service time in the detection arm"
    )
    parser.add_argument(
        "--jitter", type=float, default=0.1, help="simulator service-time jitter (+/- share)"
    )
    parser.add_argument("--seed", type=int, default=0, help="base seed of every repetition")
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="keep each repetition's run directory (summary.json, requests.csv, ...) here",
    )
    parser.add_argument(
        "--time-limit",
        type=parse_duration,
        default=1800.0,
        help="skip the remaining repetitions after this long (DUR)",
    )
    args = parser.parse_args(argv)
    if args.reps < 1 or args.users < 1 or args.blocks < 1:
        parser.error("--reps, --users and --blocks must be at least 1")
    if args.interval <= 0 or args.duration <= 0 or args.time_limit <= 0:
        parser.error("--interval, --duration and --time-limit must be positive")
    if not 0 < args.slowdown < 10:
        parser.error("--slowdown must be between 0 and 10 (0.10 = 10%)")
    if not 0 <= args.jitter <= 0.9:
        parser.error("--jitter must be between 0 and 0.9")
    if args.keep is not None and args.keep.exists() and any(args.keep.iterdir()):
        parser.error(f"--keep {args.keep}: directory is not empty")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    hold_s = args.duration / args.blocks
    print(
        f"compare stream power: {args.reps} repetitions per arm; {args.users} users every "
        f"{args.interval:g} s; {args.blocks} blocks of {hold_s:g} s per version (plus "
        f"{args.interval:g} s ramp-up each); service {BASE_PREFILL_MS:g} ms + "
        f"{OUTPUT_TOKENS} x {BASE_PER_TOKEN_MS:g} ms, jitter +/-{args.jitter:.0%}; "
        f"detection arm B +{args.slowdown:.0%}",
        flush=True,
    )
    results: list[Repetition] = []
    skipped = 0
    interrupted = False
    started = time.monotonic()
    with ExitStack() as stack:
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            work = args.keep
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="compare-power-")))
        plan: list[tuple[Arm, int]] = [
            (arm, rep) for rep in range(1, args.reps + 1) for arm in ("detect", "aa")
        ]
        for done, (arm, rep) in enumerate(plan):
            if time.monotonic() - started > args.time_limit:
                skipped = len(plan) - done
                print(f"time limit reached: {skipped} repetitions skipped", flush=True)
                break
            try:
                result = run_repetition(arm, rep, args, work)
            except KeyboardInterrupt:
                skipped = len(plan) - done
                interrupted = True
                print(f"interrupted: {skipped} repetitions not run", flush=True)
                break
            results.append(result)
            print(describe(result, args.reps), flush=True)
    elapsed = time.monotonic() - started

    detect = [r for r in results if r.arm == "detect"]
    aa = [r for r in results if r.arm == "aa"]
    detected = sum(r.verdict == "b_slower" for r in detect)
    false_pos = sum(r.verdict != "no_difference" for r in aa)
    errors = sum(r.verdict == "error" for r in results)
    print()
    line, detect_ok = rate_line(
        "detection rate (b_slower)", detected, len(detect), DETECTION_TARGET, at_least=True
    )
    print(line)
    line, fp_ok = rate_line(
        "false-positive rate (A/A)", false_pos, len(aa), FALSE_POSITIVE_TARGET, at_least=False
    )
    print(line)
    diffs = [r.p50_pct for r in detect if r.p50_pct is not None]
    aa_diffs = [r.p50_pct for r in aa if r.p50_pct is not None]
    if diffs:
        print(
            f"detection arm: mean measured median diff {sum(diffs) / len(diffs):+.1f}% "
            f"(true service-time slowdown {args.slowdown:+.0%})"
        )
    if aa_diffs:
        spread = math.sqrt(sum(d * d for d in aa_diffs) / len(aa_diffs))
        print(
            f"A/A arm: mean measured median diff {sum(aa_diffs) / len(aa_diffs):+.2f}%, "
            f"RMS {spread:.2f}%"
        )
    if errors:
        print(f"{errors} repetitions failed (counted against their arm's target)")
    print(f"{len(results)} repetitions in {elapsed / 60:.1f} min")
    if args.keep is not None:
        print(f"records kept in {args.keep}")
    if interrupted:
        return 130
    return 0 if detect_ok and fp_ok and not skipped else 1


if __name__ == "__main__":
    sys.exit(main())
