"""Token figures measured by capdisc against the simulator's own, known values.

At light load (a few users, slots to spare) the simulator emits token i at
``prefill_ms + i * per_token_ms`` after admitting the request (see
``simulator/capacity.py``), so capdisc's time to first token should read
``prefill_ms + per_token_ms`` and its time per output token ``per_token_ms``. This runs ``capdisc compare stream`` (the real
command, in a subprocess) against one simulator per setting and prints, for each,
the simulator's values, capdisc's p50s and the error. Target: within 2% or 2 ms.

    .venv/bin/python benchmarks/token_accuracy.py            # ~1 min
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from capdisc.simulator.config import SimulatorConfig
from capdisc.simulator.process import EmbeddedSimulator

# (prefill ms, per-token ms, output tokens, early role event)
SETTINGS = [
    (50.0, 10.0, 40, False),
    (200.0, 5.0, 60, False),
    (300.0, 20.0, 20, True),
    (20.0, 2.0, 100, False),
]


def measure(
    prefill: float, per_token: float, tokens: int, early: bool, args: argparse.Namespace
) -> dict[str, float]:
    config = SimulatorConfig(
        slots=64, prefill_ms=prefill, per_token_ms=per_token, output_tokens=tokens,
        early_role_event=early,
    )  # fmt: skip
    with EmbeddedSimulator(config) as sim, tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        result = subprocess.run(
            [
                sys.executable, "-m", "capdisc", "compare", "stream", sim.base_url, sim.base_url,
                "--model", config.model, "--max-tokens", str(tokens), "--users", str(args.users),
                "--interval", str(args.interval), "--duration", str(args.duration),
                "--blocks", "1", "--out", str(out), "--quiet", "--json",
            ],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if result.returncode not in (0, 1):
            raise RuntimeError(result.stderr)
        summary = json.loads((out / "summary.json").read_text())
    tokens_a = summary["a"]["tokens"]
    return {"ttft": tokens_a["ttft"]["p50_ms"], "tpot": tokens_a["tpot"]["p50_ms"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds per side")
    args = parser.parse_args()
    worst_ok = True
    print(
        f"{'prefill':>8} {'per-token':>9} {'tokens':>6} {'early':>5} | {'ttft p50':>9} {'err':>7} | {'tpot p50':>9} {'err':>7} | verdict"
    )
    for prefill, per_token, tokens, early in SETTINGS:
        got = measure(prefill, per_token, tokens, early, args)
        verdicts = []
        cells = []
        for name, truth in (("ttft", prefill + per_token), ("tpot", per_token)):
            value = got[name]
            err = value - truth
            ok = abs(err) <= max(0.02 * truth, 2.0)
            verdicts.append(ok)
            cells.append(f"{value:8.2f}ms {err:+6.2f}")
        verdict = "PASS" if all(verdicts) else "FAIL"
        worst_ok &= all(verdicts)
        print(
            f"{prefill:7.0f}ms {per_token:8.1f}ms {tokens:6d} {early!s:>5} | {cells[0]} | {cells[1]} | {verdict}"
        )
    print(
        "target: within 2% or 2 ms of the simulator's own values:", "PASS" if worst_ok else "FAIL"
    )
    return 0 if worst_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
