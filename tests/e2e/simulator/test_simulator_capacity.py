"""The simulator's capacity model, measured from outside: service time, slots, slowdown, queue."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.e2e.simulator.conftest import StartSimulator, chat_body, post_all, wait_for


def test_service_time_of_one_request(start_simulator: StartSimulator, http: httpx.Client) -> None:
    """prefill 50 ms + 10 tokens x 10 ms: a lone request takes about 0.15 s, first token after the prefill."""
    sim = start_simulator(prefill_ms=50, per_token_ms=10, output_tokens=10)
    url = f"{sim.base_url}/v1/chat/completions"
    http.post(url, json=chat_body(max_tokens=1))  # warm the connection
    started = time.monotonic()
    assert http.post(url, json=chat_body()).status_code == 200
    assert 0.15 <= time.monotonic() - started <= 0.9

    started = time.monotonic()
    first_at = None
    with http.stream("POST", url, json=chat_body(stream=True)) as response:
        for _ in response.iter_raw():
            if first_at is None:
                first_at = time.monotonic() - started
    total = time.monotonic() - started
    assert first_at is not None
    assert 0.05 <= first_at <= 0.5
    assert 0.15 <= total <= 0.9


def test_slots_bound_concurrency(start_simulator: StartSimulator) -> None:
    """slots=2 with 4 concurrent requests: at most 2 active, the last done after about 2 service times."""
    sim = start_simulator(slots=2, prefill_ms=50, per_token_ms=10, output_tokens=10)
    url = f"{sim.base_url}/v1/chat/completions"
    started = time.monotonic()
    statuses = post_all(url, [chat_body()] * 4)
    elapsed = time.monotonic() - started
    assert statuses == [200] * 4
    # Two waves of 0.15 s; the upper bound leaves room for a busy machine.
    assert 0.29 <= elapsed <= 1.5
    stats = sim.stats()
    assert stats["max_active"] == 2  # never more than the slots, however many arrive
    assert stats["max_in_flight"] >= 2
    assert stats["served"] == 4
    assert stats["in_flight"] == 0


def test_slowdown_per_slot_stretches_tokens(start_simulator: StartSimulator) -> None:
    """slowdown_per_slot=1 doubles per-token time while two slots are busy."""
    sim = start_simulator(
        slots=2, prefill_ms=0, per_token_ms=10, output_tokens=10, slowdown_per_slot=1.0
    )
    url = f"{sim.base_url}/v1/chat/completions"
    started = time.monotonic()
    assert post_all(url, [chat_body()] * 2) == [200, 200]
    assert 0.17 <= time.monotonic() - started <= 0.9


def test_queue_limit_rejects_with_503(start_simulator: StartSimulator, http: httpx.Client) -> None:
    """slots=1, queue_limit=1: of 4 overlapping requests 2 are served and the 2 that find the queue full get 503 at once."""
    # Sent all at once, a request held up on a busy machine could arrive after the first
    # was served and find room. So each arrives in a state that /stats confirms first,
    # and a long prefill keeps the slot busy and the queue full while the last two land.
    sim = start_simulator(slots=1, queue_limit=1, prefill_ms=1000, per_token_ms=0, output_tokens=1)
    url = f"{sim.base_url}/v1/chat/completions"

    def gauges() -> tuple[int, int]:
        stats = http.get(f"{sim.base_url}/stats").json()
        return stats["active"], stats["queued"]

    with ThreadPoolExecutor(2) as pool:
        in_slot = pool.submit(post_all, url, [chat_body()])
        assert wait_for(lambda: gauges() == (1, 0))
        in_queue = pool.submit(post_all, url, [chat_body()])
        assert wait_for(lambda: gauges() == (1, 1))
        rejected = post_all(url, [chat_body()] * 2)
        statuses = in_slot.result() + in_queue.result() + rejected
    assert rejected == [503, 503]
    assert sorted(statuses) == [200, 200, 503, 503]
    stats = sim.stats()
    assert stats["rejected"] == 2
    assert stats["served"] == 2
    assert stats["requests"] == 4
    response = http.post(f"{sim.base_url}/v1/chat/completions", json=chat_body())
    assert response.status_code == 200


def test_client_disconnect_frees_the_slot(
    start_simulator: StartSimulator, http: httpx.Client
) -> None:
    """A client that leaves mid-stream is counted as cancelled and its slot goes to the next request."""
    sim = start_simulator(slots=1, prefill_ms=0, per_token_ms=20, output_tokens=100)
    url = f"{sim.base_url}/v1/chat/completions"
    with (
        httpx.Client(timeout=5, trust_env=False) as client,
        client.stream("POST", url, json=chat_body(stream=True)) as response,
    ):
        next(response.iter_raw())
    assert wait_for(lambda: sim.stats()["cancelled"] == 1)
    started = time.monotonic()
    assert http.post(url, json=chat_body(max_tokens=2)).status_code == 200
    assert time.monotonic() - started < 0.5
    stats = sim.stats()
    assert stats["active"] == 0 and stats["in_flight"] == 0
