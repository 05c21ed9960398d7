"""Workloads against a server that caches prompts: one repeated prompt measures the cache,
capdisc's synthetic prompts reach the server distinct and measure the real prefill."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import StartSimulator
from tests.e2e.helpers import rows_of, run_capdisc, summary_of

pytestmark = pytest.mark.slow

# The prefill dominates: 300 ms, skipped when the prompt cache has the prompt.
CACHING = {
    "slots": 16,
    "prefill_ms": 300,
    "per_token_ms": 1,
    "output_tokens": 8,
    "prompt_cache": True,
}


def _batch(url: str, out: Path, *extra: str) -> dict[str, object]:
    result = run_capdisc(
        "discover", "batch", "--host", url, "--model", "sim-llm", "--start-users", "3",
        "--max-users", "3", "--step-duration", "2s", "--interval", "0.5s",
        "--out", str(out), "--quiet", *extra,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return summary_of(out)


def test_a_repeated_prompt_measures_the_cache_synthetic_ones_do_not(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    """With one prompt the server answers from its cache (faster: a higher capacity);
    synthetic prompts are all distinct at the server and get the uncached service time."""
    cached = start_simulator(**CACHING)
    repeated = _batch(cached.base_url, tmp_path / "repeated")
    hits = cached.stats()["prompt_cache_hits"]
    rows = rows_of(tmp_path / "repeated")
    assert hits == len(rows) - 1  # every load request but the first: a cache hit

    fresh = start_simulator(**CACHING)
    synthetic = _batch(fresh.base_url, tmp_path / "synthetic", "--prompt-tokens", "64:8")
    assert fresh.stats()["prompt_cache_hits"] == 0  # all distinct at the server
    p50_repeated = repeated["steps"][0]["p50_ms"]
    p50_synthetic = synthetic["steps"][0]["p50_ms"]
    assert p50_synthetic >= 300 > p50_repeated  # the prefill, paid or skipped
    # Service time sets capacity (U* = slots x interval / service time).
    assert p50_synthetic > 3 * p50_repeated


def test_output_tokens_with_ignore_eos_get_exactly_that_many(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    """--output-tokens N --output-control ignore_eos: N tokens even past the model's stop."""
    sim = start_simulator(slots=8, prefill_ms=10, per_token_ms=1, output_tokens=8)
    _batch(
        sim.base_url, tmp_path / "run", "--output-tokens", "40", "--output-control", "ignore_eos"
    )
    rows = rows_of(tmp_path / "run")
    assert rows and {r["output_tokens"] for r in rows} == {"40"}
    capped = tmp_path / "capped"
    _batch(sim.base_url, capped, "--output-tokens", "40")  # max_tokens only caps
    assert {r["output_tokens"] for r in rows_of(capped)} == {"8"}


def test_both_versions_get_the_same_prompts_in_the_same_order(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    """A comparison with a dataset: A's n-th request and B's n-th request carry one prompt."""
    sim = start_simulator(slots=8, prefill_ms=10, per_token_ms=1, output_tokens=6)
    out = tmp_path / "run"
    result = run_capdisc(
        "compare", "stream", sim.base_url, sim.base_url, "--model", "sim-llm",
        "--users", "2", "--interval", "0.5s", "--duration", "3s", "--blocks", "1",
        "--dataset", "sample", "--out", str(out), "--quiet",
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr

    def prompt_sizes(side: str) -> list[str]:
        rows = sorted(
            (r for r in rows_of(out) if r["version"] == side), key=lambda r: float(r["ts_start"])
        )
        return [r["input_tokens"] for r in rows]

    a, b = prompt_sizes("a"), prompt_sizes("b")
    n = min(len(a), len(b))
    assert n >= 4 and a[:n] == b[:n]
    assert len(set(a)) > 1  # the dataset's prompts, not one repeated
