"""``GET /metrics`` of the simulator: vLLM's names, read by capdisc's own parser, moving
with the load exactly as ``/stats`` counts it."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from capdisc.servermetrics.families import detect_family, family_named, read_metrics
from capdisc.simulator import EmbeddedSimulator

StartSimulator = Callable[..., EmbeddedSimulator]


def _metrics(client: httpx.Client, sim: EmbeddedSimulator) -> dict[str, float]:
    response = client.get(sim.base_url + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return dict(read_metrics(response.text, family_named("vllm"), sent=0, ts=0).values)


def _until(condition: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_metrics_follow_slots_queue_and_tokens(
    start_simulator: StartSimulator, http: httpx.Client
) -> None:
    sim = start_simulator(slots=2, prefill_ms=0, per_token_ms=40, output_tokens=10)
    assert detect_family(http.get(sim.base_url + "/metrics").text) == family_named("vllm")
    body = {"model": "sim-llm", "messages": [{"role": "user", "content": "hello there"}]}

    def ask(_: int) -> httpx.Response:
        with httpx.Client(timeout=30.0, trust_env=False) as own:
            return own.post(sim.base_url + "/v1/chat/completions", json=body)

    with ThreadPoolExecutor(4) as pool:
        answers = pool.map(ask, range(4))
        _until(lambda: sim.stats()["queued"] == 2)
        busy = _metrics(http, sim)
        assert (busy["running"], busy["waiting"], busy["kv_cache"]) == (2.0, 2.0, 1.0)
        usage = [a.json()["usage"] for a in answers]
    done = _metrics(http, sim)
    stats = sim.stats()
    assert (done["running"], done["waiting"], done["kv_cache"]) == (0.0, 0.0, 0.0)
    assert done["completed"] == stats["served"] == 4
    assert done["generated_tokens"] == stats["generated_tokens"] == 40
    assert done["generated_tokens"] == sum(u["completion_tokens"] for u in usage)
    assert done["prompt_tokens"] == sum(u["prompt_tokens"] for u in usage)
    assert done["preemptions"] == 0.0
    assert "prefix_hits" not in done  # no prompt cache: not published
    assert stats["requests"] == 4  # /metrics is never counted as a request


def test_prefix_cache_counters_with_the_prompt_cache(
    start_simulator: StartSimulator, http: httpx.Client
) -> None:
    sim = start_simulator(prefill_ms=0, per_token_ms=0, output_tokens=3, prompt_cache=True)
    body = {"model": "sim-llm", "messages": [{"role": "user", "content": "one two three"}]}
    for _ in range(3):
        assert http.post(sim.base_url + "/v1/chat/completions", json=body).status_code == 200
    values = _metrics(http, sim)
    assert values["prefix_queries"] == 3 * values["prefix_hits"] / 2  # 2 of 3 hit
    assert values["prefix_hits"] > 0
    assert values["prompt_tokens"] == values["prefix_queries"] / 3  # only the first processed
