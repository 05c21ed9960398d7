"""What the simulator tests share: a fast simulator, chat bodies and raw HTTP helpers.

Every test here talks to ``python -m capdisc.simulator`` started by ``EmbeddedSimulator``
(directly or through the ``start_simulator`` fixture): a real child process over real
HTTP on loopback, so the wire format, the capacity model, the faults and the process
handling are exercised together.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from capdisc.simulator import EmbeddedSimulator, SimulatorConfig

StartSimulator = Callable[..., EmbeddedSimulator]

TOKENS = 12
TOOLS = [
    {"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}},
    {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}},
]


def user(text: str = "How fast is the simulator?") -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"model": "sim-llm", "messages": user(), "temperature": 0, **extra}


@pytest.fixture(scope="module")
def sim() -> Iterator[EmbeddedSimulator]:
    """One fast simulator shared by the tests that only read answers."""
    config = SimulatorConfig(
        prefill_ms=0, per_token_ms=1, output_tokens=TOKENS, auto_tool_calls=2, seed=3, slots=8
    )
    with EmbeddedSimulator(config) as running:
        yield running


def sse_events(body: bytes) -> list[bytes]:
    """The ``data:`` payloads of an SSE body; asserts the framing is exact."""
    assert b"\r" not in body
    assert body.endswith(b"\n\n")
    events = body[:-2].split(b"\n\n")
    assert all(e.startswith(b"data: ") for e in events)
    return [e[len(b"data: ") :] for e in events]


def stream_bytes(http: httpx.Client, url: str, body: dict[str, Any]) -> httpx.Response:
    with http.stream("POST", url, json=body) as response:
        response.read()
    return response


def post_all(url: str, bodies: list[dict[str, Any]], timeout: float = 10.0) -> list[int]:
    """POST each body on its own connection, all at once; the status codes in order."""

    def one(body: dict[str, Any]) -> int:
        with httpx.Client(timeout=timeout, trust_env=False) as client:
            return client.post(url, json=body).status_code

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(one, bodies))


def raw_exchange(base_url: str, data: bytes, *, timeout: float = 5.0) -> bytes:
    """Send raw bytes, read until the server closes (or the timeout); what came back."""
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                piece = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not piece:
                break
            received += piece
    return received


def wait_for(predicate: Any, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())
