"""The simulator's injected faults and its API-key check."""

from __future__ import annotations

import contextlib
import socket

import httpx
import pytest

from capdisc.errors import UsageError
from capdisc.simulator import EmbeddedSimulator, SimulatorConfig
from tests.e2e.simulator.conftest import StartSimulator, chat_body, wait_for


def test_fault_max_connections(start_simulator: StartSimulator) -> None:
    """Connections beyond max_connections are closed at once and counted as refused."""
    sim = start_simulator(faults={"max_connections": 2})
    host, port = sim.base_url.removeprefix("http://").rsplit(":", 1)
    held = []
    try:
        for _ in range(2):
            sock = socket.create_connection((host, int(port)), timeout=2)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
            held.append(sock)
        with socket.create_connection((host, int(port)), timeout=2) as extra:
            extra.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            with contextlib.suppress(ConnectionResetError):
                assert extra.recv(4096) == b""
    finally:
        for sock in held:
            sock.close()
    assert wait_for(lambda: sim.stats()["open_connections"] == 1)
    stats = sim.stats()
    assert stats["connections_refused"] == 1


def test_fault_crash_after(start_simulator: StartSimulator, http: httpx.Client) -> None:
    """crash_after=2: two generation requests are answered, the third kills the process."""
    sim = start_simulator(prefill_ms=0, per_token_ms=0, faults={"crash_after": 2})
    url = f"{sim.base_url}/v1/chat/completions"
    for _ in range(2):
        assert http.post(url, json=chat_body()).status_code == 200
    with pytest.raises(httpx.TransportError):
        http.post(url, json=chat_body())
    assert wait_for(lambda: not sim.alive())
    assert sim.returncode not in (None, 0)


def test_fault_error_rate(start_simulator: StartSimulator, http: httpx.Client) -> None:
    """error_rate=0.5 answers a seeded share of requests with a JSON 500, counted in errors."""
    sim = start_simulator(prefill_ms=0, per_token_ms=0, seed=1, faults={"error_rate": 0.5})
    url = f"{sim.base_url}/v1/chat/completions"
    responses = [http.post(url, json=chat_body()) for _ in range(30)]
    failed = [r for r in responses if r.status_code == 500]
    assert 5 <= len(failed) <= 25
    assert all(r.status_code in (200, 500) for r in responses)
    assert failed[0].json()["error"]["type"] == "server_error"
    stats = sim.stats()
    assert stats["errors"] == len(failed)
    assert stats["served"] == 30 - len(failed)


def test_fault_hang(start_simulator: StartSimulator, http: httpx.Client) -> None:
    """hang: generation requests are read and never answered; health and stats still answer."""
    sim = start_simulator(faults={"hang": True})
    with pytest.raises(httpx.ReadTimeout):
        http.post(f"{sim.base_url}/v1/chat/completions", json=chat_body(), timeout=0.5)
    assert http.get(f"{sim.base_url}/health").status_code == 200
    stats = sim.stats()
    assert stats["requests"] == 1
    assert stats["served"] == 0


def test_auth(
    start_simulator: StartSimulator, http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With api_key_env, generation and model endpoints need the Bearer key (401 otherwise); health and stats stay open."""
    key = "sk-test-value-never-logged"
    monkeypatch.setenv("CAPDISC_TEST_SIM_KEY", key)
    sim = start_simulator(api_key_env="CAPDISC_TEST_SIM_KEY", prefill_ms=0, per_token_ms=0)
    url = f"{sim.base_url}/v1/chat/completions"
    missing = http.post(url, json=chat_body())
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "authentication_error"
    wrong = http.post(url, json=chat_body(), headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    good = {"Authorization": f"Bearer {key}"}
    assert http.post(url, json=chat_body(), headers=good).status_code == 200
    assert http.get(f"{sim.base_url}/v1/models").status_code == 401
    assert http.get(f"{sim.base_url}/v1/models", headers=good).status_code == 200
    assert http.get(f"{sim.base_url}/api/tags").status_code == 401
    assert http.get(f"{sim.base_url}/health").status_code == 200
    assert sim.stats()["bad_requests"] == 4
    assert key not in " ".join(sim.command())
    assert key not in sim.log()


def test_auth_variable_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """An api_key_env naming an unset variable fails at start with a UsageError naming the variable."""
    monkeypatch.delenv("CAPDISC_TEST_UNSET_KEY", raising=False)
    sim = EmbeddedSimulator(SimulatorConfig(api_key_env="CAPDISC_TEST_UNSET_KEY"))
    with pytest.raises(UsageError, match="CAPDISC_TEST_UNSET_KEY"):
        sim.start()
