"""The simulator's overload faults and its batching noise, for the discovery benchmark's servers.

A server that fails slowly once overloaded (``overload_rps``, ``overload_queue``:
HTTP 500 after ``overload_fail_after_s``) is tested as a real child process over
real HTTP on loopback. The windows are long enough (2 s) that a busy machine cannot
spread a burst of back-to-back requests over more than one window, and the slow
failure outlasts the window, so the test never has to wait for the window to pass.
"""

from __future__ import annotations

import json
import socket
import statistics
import struct
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from capdisc.simulator import EmbeddedSimulator, SimulatorConfig
from capdisc.simulator.capacity import SlotPool
from capdisc.simulator.config import FaultConfig
from capdisc.simulator.stats import StatsSnapshot

StartSimulator = Callable[..., EmbeddedSimulator]

WINDOW_S = 2.0
FAIL_AFTER_S = 2.2  # longer than the window: once a slow 500 is back, the window is clear


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"model": "sim-llm", "messages": [{"role": "user", "content": "hi"}], **extra}


def ollama_body() -> dict[str, Any]:
    return {"model": "sim-llm", "messages": [{"role": "user", "content": "hi"}], "stream": False}


def timed_post(url: str, body: dict[str, Any], timeout: float = 10.0) -> tuple[int, float]:
    """POST on a fresh connection: the status code and the seconds it took."""
    with httpx.Client(timeout=timeout, trust_env=False) as client:
        started = time.monotonic()
        status = client.post(url, json=body).status_code
        return status, time.monotonic() - started


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def rate_limited(start_simulator: StartSimulator, limit: int) -> EmbeddedSimulator:
    """A fast simulator that fails slowly beyond ``limit`` arrivals per ``WINDOW_S``."""
    return start_simulator(
        slots=16,
        prefill_ms=0,
        per_token_ms=0,
        faults={
            "overload_rps": limit / WINDOW_S,
            "overload_window_s": WINDOW_S,
            "overload_fail_after_s": FAIL_AFTER_S,
        },
    )


def test_overload_rps_serves_below_the_rate_and_fails_slowly_above(
    start_simulator: StartSimulator,
) -> None:
    """Limit 2 per 2 s: the first two are served at once, the third gets a 500 after 2.2 s,
    and the next one, its window clear again, is served at once."""
    sim = rate_limited(start_simulator, 2)
    url = f"{sim.base_url}/v1/chat/completions"
    served = [timed_post(url, chat_body()) for _ in range(2)]
    assert [status for status, _ in served] == [200, 200]
    assert all(took < 1.0 for _, took in served)

    status, took = timed_post(url, chat_body())
    assert status == 500
    assert took >= FAIL_AFTER_S - 0.05  # slow: only after overload_fail_after_s
    stats = sim.stats()
    assert stats["overloaded"] == 1
    assert stats["served"] == 2
    assert stats["errors"] == 0  # error_rate's counter stays apart
    assert stats["overload_pending"] == 0

    # The failed request left the window while it waited: this one is served at once.
    status, took = timed_post(url, chat_body())
    assert (status, took < 1.0) == (200, True)
    assert sim.stats()["served"] == 3


def test_overload_rps_burst_counts_every_arrival_on_both_apis(
    start_simulator: StartSimulator,
) -> None:
    """A burst of 6 (3 OpenAI, 3 Ollama) against a limit of 2: exactly 2 served fast, 4
    failed slowly, all 4 waiting at once (overload_pending) and none holding a slot."""
    sim = rate_limited(start_simulator, 2)
    bodies = [(f"{sim.base_url}/v1/chat/completions", chat_body())] * 3 + [
        (f"{sim.base_url}/api/chat", ollama_body())
    ] * 3
    with ThreadPoolExecutor(len(bodies)) as pool:
        futures = [pool.submit(timed_post, url, body) for url, body in bodies]
        assert wait_for(lambda: sim.stats()["overload_pending"] == 4)
        gauges = sim.stats()
        results = [f.result() for f in futures]
    assert gauges["in_flight"] == 0 and gauges["active"] == 0
    assert sorted(status for status, _ in results) == [200, 200, 500, 500, 500, 500]
    assert all(took < 1.0 for status, took in results if status == 200)
    assert all(took >= FAIL_AFTER_S - 0.05 for status, took in results if status == 500)
    stats = sim.stats()
    assert (stats["requests"], stats["served"], stats["overloaded"]) == (6, 2, 4)
    assert stats["overload_pending"] == 0


def test_overload_queue_fails_slowly_what_would_wait_behind_the_queue(
    start_simulator: StartSimulator, http: httpx.Client
) -> None:
    """slots=1, overload_queue=1: one served, one queued, the next two get a slow 500."""
    sim = start_simulator(
        slots=1,
        prefill_ms=1500,
        per_token_ms=0,
        output_tokens=1,
        faults={"overload_queue": 1, "overload_fail_after_s": 0.5},
    )
    url = f"{sim.base_url}/v1/chat/completions"

    def gauges() -> tuple[int, int]:
        stats = sim.stats()
        return stats["active"], stats["queued"]

    with ThreadPoolExecutor(4) as pool:
        in_slot = pool.submit(timed_post, url, chat_body())
        assert wait_for(lambda: gauges() == (1, 0))
        in_queue = pool.submit(timed_post, url, chat_body())
        assert wait_for(lambda: gauges() == (1, 1))
        failed = [pool.submit(timed_post, url, chat_body()) for _ in range(2)]
        assert wait_for(lambda: sim.stats()["overload_pending"] == 2)
        assert gauges() == (1, 1)  # they neither queue nor take the slot
        fails = [f.result() for f in failed]
        served = [in_slot.result(), in_queue.result()]
    assert [status for status, _ in fails] == [500, 500]
    assert all(took >= 0.45 for _, took in fails)
    assert [status for status, _ in served] == [200, 200]
    stats = sim.stats()
    assert (stats["served"], stats["overloaded"], stats["rejected"]) == (2, 2, 0)
    # With the queue empty again a request is served.
    assert http.post(url, json=chat_body(), timeout=10).status_code == 200


def test_a_client_resetting_a_slow_failure_is_counted_cancelled(
    start_simulator: StartSimulator,
) -> None:
    """A client that resets its connection during the slow wait: cancelled, none pending.

    (A client that only half-closes is answered when the wait ends, as any request is.)
    """
    sim = start_simulator(faults={"overload_rps": 0.1, "overload_fail_after_s": 30.0})
    host, port = sim.base_url.removeprefix("http://").rsplit(":", 1)
    body = json.dumps(chat_body()).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(head + body)  # 1 arrival > 0.1 x 1 s: fails slowly
        assert wait_for(lambda: sim.stats()["overload_pending"] == 1)
        # Linger 0: close() sends a reset, as a client process that dies does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    assert wait_for(lambda: sim.stats()["cancelled"] == 1)
    stats = sim.stats()
    assert (stats["overload_pending"], stats["overloaded"]) == (0, 0)


# --- batching and noise, on the capacity model itself --------------------------------


def test_jitter_is_one_independent_seeded_factor_per_request() -> None:
    """±30% jitter: each request draws its own factor in [0.7, 1.3] (mean about 1),
    prefill and per-token time scaled alike; the same seed gives the same draws."""
    config = SimulatorConfig(prefill_ms=100, per_token_ms=10, jitter=0.3, seed=5)

    def draws(cfg: SimulatorConfig) -> list[tuple[float, float]]:
        model = SlotPool(cfg, StatsSnapshot())
        return [model.service_times() for _ in range(400)]

    first = draws(config)
    factors = [prefill / 0.1 for prefill, _ in first]
    assert all(
        per_token / 0.01 == pytest.approx(f)
        for (_, per_token), f in zip(first, factors, strict=True)
    )
    assert min(factors) >= 0.7 and max(factors) <= 1.3
    assert min(factors) < 0.75 and max(factors) > 1.25  # the whole range is used
    assert statistics.mean(factors) == pytest.approx(1.0, abs=0.05)
    assert len(set(factors)) == len(factors)  # independent draws, not one per run
    assert draws(config) == first
    assert draws(config.model_copy(update={"seed": 6})) != first


def test_latency_doubles_from_one_to_all_slots_busy(start_simulator: StartSimulator) -> None:
    """slots=4, slowdown_per_slot=1/3, no prefill: 0.3 s alone, 0.6 s with all 4 busy."""
    sim = start_simulator(
        slots=4, prefill_ms=0, per_token_ms=10, output_tokens=30, slowdown_per_slot=1 / 3
    )
    url = f"{sim.base_url}/v1/chat/completions"
    status, alone = timed_post(url, chat_body())
    assert status == 200
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda _: timed_post(url, chat_body()), range(4)))
    assert [status for status, _ in together] == [200] * 4
    assert sim.stats()["max_active"] == 4
    slowest = max(took for _, took in together)
    assert 0.29 <= alone <= 0.5
    # Each token costs twice as much while the four overlap; connecting staggers them a little.
    assert 0.55 <= slowest <= 1.2
    assert slowest / alone >= 1.6


def test_overload_fields_are_validated_and_become_serve_flags() -> None:
    """The fault fields reject nonsense and are `capdisc simulator serve` flags."""
    from capdisc.cli import app

    with pytest.raises(ValueError, match="overload_rps"):
        FaultConfig(overload_rps=0)
    with pytest.raises(ValueError, match="overload_window_s"):
        FaultConfig(overload_window_s=0)
    with pytest.raises(ValueError, match="overload_fail_after_s"):
        FaultConfig(overload_fail_after_s=-1)
    result = CliRunner().invoke(app, ["simulator", "serve", "--help"], terminal_width=250)
    for flag in ("--overload-rps", "--overload-window-s", "--overload-queue"):
        assert flag in result.output, flag
