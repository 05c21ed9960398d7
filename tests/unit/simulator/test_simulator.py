"""The embedded simulator, tested as a real child process over real HTTP on loopback.

Every test talks to ``python -m capdisc.simulator`` started by ``EmbeddedSimulator``
(directly or through the ``start_simulator`` fixture), so the wire format, the
capacity model, the faults and the process handling are all exercised together.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from capdisc.errors import UsageError
from capdisc.simulator import EmbeddedSimulator, SimulatorConfig, SimulatorStartError
from capdisc.simulator.process import READY_PREFIX

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


# --- endpoints ---------------------------------------------------------------------


def test_health_stats_and_model_lists(sim: EmbeddedSimulator, http: httpx.Client) -> None:
    """/health answers ok, /v1/models and /api/tags list the configured model, /stats has every counter."""
    assert http.get(f"{sim.base_url}/health").json() == {"status": "ok"}
    models = http.get(f"{sim.base_url}/v1/models").json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == ["sim-llm"]
    tags = http.get(f"{sim.base_url}/api/tags").json()
    assert [m["name"] for m in tags["models"]] == ["sim-llm"]
    stats = sim.stats()
    for field in (
        "requests",
        "served",
        "rejected",
        "errors",
        "bad_requests",
        "in_flight",
        "max_in_flight",
        "max_active",
        "chunks_sent",
        "reasoning_sent",
        "tool_calls",
        "connections",
        "connections_refused",
    ):
        assert isinstance(stats[field], int), field


def test_openai_json_completion(sim: EmbeddedSimulator, http: httpx.Client) -> None:
    """A non-streamed chat completion carries content, finish_reason stop and exact usage."""
    response = http.post(f"{sim.base_url}/v1/chat/completions", json=chat_body())
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    data = response.json()
    assert data["object"] == "chat.completion"
    assert data["model"] == "sim-llm"
    choice = data["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    assert len(choice["message"]["content"].split()) == TOKENS
    usage = data["usage"]
    assert usage["completion_tokens"] == TOKENS
    assert usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + TOKENS


def test_openai_sse_stream(sim: EmbeddedSimulator, http: httpx.Client) -> None:
    """A stream has a role-only event, one SSE event per token, a finish event, then [DONE]; no CR anywhere."""
    before = sim.stats()
    response = stream_bytes(http, f"{sim.base_url}/v1/chat/completions", chat_body(stream=True))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["transfer-encoding"] == "chunked"
    events = sse_events(response.content)
    assert events[-1] == b"[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    role, tokens, final = chunks[0], chunks[1:-1], chunks[-1]
    assert len(tokens) == TOKENS
    assert role["choices"][0]["delta"] == {"role": "assistant", "content": None}
    assert all(set(c["choices"][0]["delta"]) == {"content"} for c in tokens)
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert all(c["choices"][0]["finish_reason"] is None for c in [role, *tokens])
    assert final["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    text = "".join(c["choices"][0]["delta"]["content"] for c in tokens)
    whole = http.post(f"{sim.base_url}/v1/chat/completions", json=chat_body()).json()
    assert text == whole["choices"][0]["message"]["content"]
    after = sim.stats()
    assert after["chunks_sent"] - before["chunks_sent"] == TOKENS


def test_openai_stream_include_usage(sim: EmbeddedSimulator, http: httpx.Client) -> None:
    """stream_options.include_usage adds a usage event with no choices before [DONE]."""
    body = chat_body(stream=True, stream_options={"include_usage": True})
    events = sse_events(stream_bytes(http, f"{sim.base_url}/v1/chat/completions", body).content)
    usage_event = json.loads(events[-2])
    assert usage_event["choices"] == []
    assert usage_event["usage"]["completion_tokens"] == TOKENS
    assert len(events) == TOKENS + 4  # role, tokens, finish, usage, [DONE]


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_caps_output(sim: EmbeddedSimulator, http: httpx.Client, field: str) -> None:
    """max_tokens / max_completion_tokens cap the tokens (finish_reason length) in JSON and SSE."""
    url = f"{sim.base_url}/v1/chat/completions"
    data = http.post(url, json=chat_body(**{field: 3})).json()
    assert data["usage"]["completion_tokens"] == 3
    assert data["choices"][0]["finish_reason"] == "length"
    events = sse_events(stream_bytes(http, url, chat_body(stream=True, **{field: 3})).content)
    assert len(events) == 1 + 3 + 2  # role, tokens, finish, [DONE]
    assert json.loads(events[-2])["choices"][0]["finish_reason"] == "length"
    big = http.post(url, json=chat_body(**{field: 1000})).json()
    assert big["usage"]["completion_tokens"] == TOKENS


def test_ollama_ndjson_stream(sim: EmbeddedSimulator, http: httpx.Client) -> None:
    """/api/chat streams NDJSON by default: one line per token, then a done line with counts and ns durations."""
    body = {"model": "sim-llm", "messages": user(), "options": {"temperature": 0}}
    response = stream_bytes(http, f"{sim.base_url}/api/chat", body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    assert b"\r" not in response.content
    assert response.content.endswith(b"\n")
    lines = [json.loads(line) for line in response.content.splitlines()]
    tokens, final = lines[:-1], lines[-1]
    assert len(tokens) == TOKENS
    assert all(t["done"] is False and t["message"]["role"] == "assistant" for t in tokens)
    assert final["done"] is True
    assert final["done_reason"] == "stop"
    assert final["eval_count"] == TOKENS
    assert final["prompt_eval_count"] > 0
    for key in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        assert isinstance(final[key], int) and final[key] >= 0
    assert final["total_duration"] >= final["eval_duration"]


def test_ollama_stream_false_and_num_predict(sim: EmbeddedSimulator, http: httpx.Client) -> None:
    """stream false gives one JSON with done true; options.num_predict caps the tokens."""
    body = {"model": "sim-llm", "messages": user(), "stream": False, "options": {"num_predict": 4}}
    data = http.post(f"{sim.base_url}/api/chat", json=body).json()
    assert data["done"] is True
    assert data["done_reason"] == "length"
    assert data["eval_count"] == 4
    assert len(data["message"]["content"].split()) == 4
    streamed = stream_bytes(http, f"{sim.base_url}/api/chat", {**body, "stream": True})
    assert len(streamed.content.splitlines()) == 4 + 1


# --- tools -------------------------------------------------------------------------


def tool_call_of(data: dict[str, Any]) -> dict[str, Any] | None:
    message = data["choices"][0]["message"]
    calls = message.get("tool_calls")
    if not calls:
        return None
    assert len(calls) == 1
    call: dict[str, Any] = calls[0]
    return call


def test_tool_choice_modes(sim: EmbeddedSimulator, http: httpx.Client) -> None:
    """required -> a tool call (first tool), none -> content, a named function -> a call to it."""
    url = f"{sim.base_url}/v1/chat/completions"
    before = sim.stats()["tool_calls"]

    data = http.post(url, json=chat_body(tools=TOOLS, tool_choice="required")).json()
    call = tool_call_of(data)
    assert call is not None
    assert data["choices"][0]["finish_reason"] == "tool_calls"
    assert data["choices"][0]["message"]["content"] is None
    assert call["type"] == "function"
    assert call["id"].startswith("call_")
    assert call["function"]["name"] == "search"
    assert set(json.loads(call["function"]["arguments"])) == {"q"}

    data = http.post(url, json=chat_body(tools=TOOLS, tool_choice="none")).json()
    assert tool_call_of(data) is None
    assert data["choices"][0]["finish_reason"] == "stop"
    assert data["choices"][0]["message"]["content"]

    named = {"type": "function", "function": {"name": "lookup"}}
    data = http.post(url, json=chat_body(tools=TOOLS, tool_choice=named)).json()
    call = tool_call_of(data)
    assert call is not None and call["function"]["name"] == "lookup"

    assert sim.stats()["tool_calls"] - before == 2


def test_tool_choice_auto_counts_tool_results(sim: EmbeddedSimulator, http: httpx.Client) -> None:
    """auto (the default with tools) calls a tool until the conversation holds auto_tool_calls (2) tool results."""
    url = f"{sim.base_url}/v1/chat/completions"
    messages = user("Find the capacity.")
    for round_no in range(3):
        data = http.post(url, json=chat_body(messages=messages, tools=TOOLS)).json()
        call = tool_call_of(data)
        if round_no < 2:
            assert call is not None, f"round {round_no} should call a tool"
            messages = [
                *messages,
                data["choices"][0]["message"],
                {"role": "tool", "tool_call_id": call["id"], "content": "42"},
            ]
        else:
            assert call is None
            assert data["choices"][0]["message"]["content"]


def test_no_tools_means_no_tool_call(sim: EmbeddedSimulator, http: httpx.Client) -> None:
    """Without tools the answer is content, whatever tool_choice auto/none says."""
    url = f"{sim.base_url}/v1/chat/completions"
    for extra in ({}, {"tool_choice": "auto"}, {"tool_choice": "none"}):
        data = http.post(url, json=chat_body(**extra)).json()
        assert tool_call_of(data) is None
    for choice in ("required", {"type": "function", "function": {"name": "x"}}):
        response = http.post(url, json=chat_body(tool_choice=choice))
        assert response.status_code == 400
    response = http.post(
        url,
        json=chat_body(tools=TOOLS, tool_choice={"type": "function", "function": {"name": "x"}}),
    )
    assert response.status_code == 400


def test_streamed_tool_call(sim: EmbeddedSimulator, http: httpx.Client) -> None:
    """A streamed tool call arrives as delta.tool_calls chunks (one per token) whose arguments join into JSON."""
    body = chat_body(stream=True, tools=TOOLS, tool_choice="required")
    events = sse_events(stream_bytes(http, f"{sim.base_url}/v1/chat/completions", body).content)
    assert events[-1] == b"[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": None}
    deltas = [c["choices"][0]["delta"] for c in chunks[1:-1]]
    assert len(deltas) == TOKENS
    first = deltas[0]["tool_calls"][0]
    assert first["id"].startswith("call_") and first["function"]["name"] == "search"
    arguments = "".join(d["tool_calls"][0]["function"]["arguments"] for d in deltas)
    assert len(json.loads(arguments)["q"].split()) == TOKENS
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_ollama_tools(sim: EmbeddedSimulator, http: httpx.Client) -> None:
    """Ollama: a request offering tools gets message.tool_calls with object arguments, streamed or not."""
    body = {"model": "sim-llm", "messages": user(), "tools": TOOLS, "stream": False}
    data = http.post(f"{sim.base_url}/api/chat", json=body).json()
    calls = data["message"]["tool_calls"]
    assert calls[0]["function"]["name"] == "search"
    assert isinstance(calls[0]["function"]["arguments"], dict)
    lines = stream_bytes(http, f"{sim.base_url}/api/chat", {**body, "stream": True})
    parsed = [json.loads(line) for line in lines.content.splitlines()]
    assert parsed[0]["message"]["tool_calls"][0]["function"]["name"] == "search"
    assert parsed[-1]["done"] is True
    no_tools = http.post(
        f"{sim.base_url}/api/chat", json={"messages": user(), "stream": False}
    ).json()
    assert "tool_calls" not in no_tools["message"]


def test_agent_run_rounds_and_time(start_simulator: StartSimulator, http: httpx.Client) -> None:
    """/v1/agent/run with N tool calls does N+1 rounds server-side, each costing one service time."""
    sim = start_simulator(prefill_ms=20, per_token_ms=5, output_tokens=6, slots=1)  # 50 ms/round
    url = f"{sim.base_url}/v1/agent/run"
    for calls in (0, 2):
        started = time.monotonic()
        data = http.post(url, json={"model": "sim-llm", "prompt": "go", "tool_calls": calls}).json()
        elapsed = time.monotonic() - started
        assert data["tool_calls"] == calls
        assert data["rounds"] == calls + 1
        assert data["content"]
        assert 0.05 * (calls + 1) <= elapsed < 0.05 * (calls + 1) + 0.75
    stats = sim.stats()
    assert stats["tool_calls"] == 2
    assert stats["served"] == 2
    assert stats["max_active"] == 1


# --- text --------------------------------------------------------------------------


def test_deterministic_at_temperature_zero(sim: EmbeddedSimulator, http: httpx.Client) -> None:
    """At temperature 0 one prompt always gets one answer; another prompt gets another."""
    url = f"{sim.base_url}/v1/chat/completions"

    def answer(text: str, **extra: Any) -> str:
        body = chat_body(messages=user(text), **extra)
        content: str = http.post(url, json=body).json()["choices"][0]["message"]["content"]
        return content

    assert answer("alpha") == answer("alpha") == answer("alpha")
    assert answer("alpha") != answer("beta")
    varied = {answer("alpha", temperature=1.0) for _ in range(4)}
    assert len(varied) > 1
    seeded = {answer("alpha", temperature=1.0, seed=5) for _ in range(3)}
    assert len(seeded) == 1


# --- capacity model ----------------------------------------------------------------


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


# --- faults ------------------------------------------------------------------------


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


# --- bad input ---------------------------------------------------------------------


BAD_BODIES: list[tuple[str, Any]] = [
    ("/v1/chat/completions", b"{not json"),
    ("/v1/chat/completions", b"[1, 2]"),
    ("/v1/chat/completions", b""),
    ("/v1/chat/completions", {"model": "m"}),
    ("/v1/chat/completions", {"messages": []}),
    ("/v1/chat/completions", {"messages": "hello"}),
    ("/v1/chat/completions", {"messages": [{"content": "no role"}]}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": 5}]}),
    ("/v1/chat/completions", {"messages": user(), "stream": "yes"}),
    ("/v1/chat/completions", {"messages": user(), "max_tokens": 0}),
    ("/v1/chat/completions", {"messages": user(), "max_tokens": "5"}),
    ("/v1/chat/completions", {"messages": user(), "temperature": "hot"}),
    ("/v1/chat/completions", {"messages": user(), "model": 7}),
    ("/v1/chat/completions", {"messages": user(), "tools": {"a": 1}}),
    ("/v1/chat/completions", {"messages": user(), "tools": [{"type": "function"}]}),
    ("/v1/chat/completions", {"messages": user(), "tools": TOOLS, "tool_choice": "always"}),
    ("/api/chat", {"messages": []}),
    ("/api/chat", {"messages": user(), "options": {"num_predict": "x"}}),
    ("/api/chat", {"messages": user(), "options": []}),
    ("/v1/agent/run", {"prompt": "x"}),
    ("/v1/agent/run", {"prompt": "x", "tool_calls": -1}),
    ("/v1/agent/run", {"prompt": "x", "tool_calls": "2"}),
    ("/v1/agent/run", {"prompt": 3, "tool_calls": 1}),
]


def test_bad_bodies_are_400(sim: EmbeddedSimulator, http: httpx.Client) -> None:
    """Invalid JSON, missing or empty messages and wrong types get a 400 JSON error, counted in bad_requests."""
    before = sim.stats()
    for path, body in BAD_BODIES:
        if isinstance(body, bytes):
            response = http.post(f"{sim.base_url}{path}", content=body)
        else:
            response = http.post(f"{sim.base_url}{path}", json=body)
        assert response.status_code == 400, (path, body)
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error"
        assert error["message"]
    after = sim.stats()
    assert after["bad_requests"] - before["bad_requests"] == len(BAD_BODIES)
    assert after["served"] == before["served"]
    assert http.get(f"{sim.base_url}/health").status_code == 200


def test_unknown_path_and_wrong_method(sim: EmbeddedSimulator, http: httpx.Client) -> None:
    """Unknown paths are 404 and wrong methods 405 (with Allow), as JSON errors."""
    missing = http.get(f"{sim.base_url}/v2/nothing")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found_error"
    wrong = http.get(f"{sim.base_url}/v1/chat/completions")
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"
    assert "error" in wrong.json()
    assert http.post(f"{sim.base_url}/health").status_code == 405


def test_oversized_body_is_413(sim: EmbeddedSimulator) -> None:
    """A Content-Length above 8 MiB is refused with 413 before the body is read, and the connection closed."""
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: 9000000\r\n\r\n"
    )
    reply = raw_exchange(sim.base_url, head)
    assert reply.startswith(b"HTTP/1.1 413 ")
    assert b"Connection: close" in reply
    assert b'"error"' in reply


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /health HTTP/9.9\r\n\r\n",
        b"GET /health HTTP/1.1\r\nNo colon here\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: ten\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
    ],
)
def test_malformed_requests_get_4xx_and_close(
    sim: EmbeddedSimulator, http: httpx.Client, raw: bytes
) -> None:
    """A malformed request line, header or framing gets a 4xx JSON error and the connection is closed; the server lives on."""
    reply = raw_exchange(sim.base_url, raw)
    status = int(reply.split(b" ", 2)[1])
    assert 400 <= status < 500
    assert b"Connection: close" in reply
    assert http.get(f"{sim.base_url}/health").status_code == 200


def test_keep_alive_pipelining_and_expect_continue(sim: EmbeddedSimulator) -> None:
    """Two pipelined requests on one connection get two answers in order; Expect: 100-continue is honoured."""
    two = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    reply = raw_exchange(sim.base_url, two)
    assert reply.count(b"HTTP/1.1 ") == 2
    assert reply.index(b"HTTP/1.1 200") < reply.index(b"HTTP/1.1 404")

    body = json.dumps(chat_body()).encode()
    host, port = sim.base_url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        assert sock.recv(4096).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(body)
        answer = b""
        for _ in range(100):
            piece = sock.recv(65536)
            if not piece:
                break
            answer += piece
    assert answer.startswith(b"HTTP/1.1 200 OK")


def test_one_connection_is_reused(start_simulator: StartSimulator) -> None:
    """A keep-alive client makes one connection for many requests."""
    sim = start_simulator(prefill_ms=0, per_token_ms=0)
    with httpx.Client(timeout=5, trust_env=False) as client:
        for _ in range(5):
            client.post(f"{sim.base_url}/v1/chat/completions", json=chat_body())
    stats = sim.stats()
    assert stats["requests"] == 5
    assert stats["connections"] == 2  # the client above, then this stats request


def test_stats_reset(start_simulator: StartSimulator, http: httpx.Client) -> None:
    """POST /stats/reset zeroes the counters."""
    sim = start_simulator(prefill_ms=0, per_token_ms=0)
    http.post(f"{sim.base_url}/v1/chat/completions", json=chat_body(stream=True))
    http.get(f"{sim.base_url}/nope")
    stats = sim.stats()
    assert stats["served"] == 1 and stats["bad_requests"] == 1 and stats["chunks_sent"] > 0
    sim.reset_stats()
    stats = sim.stats()
    for field in (
        "requests",
        "served",
        "bad_requests",
        "chunks_sent",
        "max_in_flight",
        "max_active",
    ):
        assert stats[field] == 0, field


# --- the process -------------------------------------------------------------------


def test_start_failure_is_reported() -> None:
    """A port already taken makes start() raise SimulatorStartError with the child's reason."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        sim = EmbeddedSimulator(SimulatorConfig(), port=port)
        with pytest.raises(SimulatorStartError, match="cannot listen"):
            sim.start()
        assert not sim.alive()


def test_stop_is_clean_and_idempotent() -> None:
    """Leaving the with block stops the child with SIGTERM and exit code 0; stop() twice is harmless."""
    with EmbeddedSimulator(SimulatorConfig()) as sim:
        assert sim.alive()
        assert sim.base_url.startswith("http://127.0.0.1:")
    assert not sim.alive()
    assert sim.returncode == 0
    sim.stop()


def test_module_entry_point_prints_ready_line_and_stops_on_sigint() -> None:
    """python -m capdisc.simulator prints the ready line with the bound port and exits 0 on SIGINT."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "capdisc.simulator", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line.startswith(READY_PREFIX + "http://127.0.0.1:")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_config_import_leaves_server_unloaded() -> None:
    """Importing capdisc.simulator.config (every CLI command does) loads neither the server nor the process module; the package's names still resolve."""
    code = (
        "import sys\n"
        "import capdisc.simulator.config\n"
        "heavy = ('capdisc.simulator.process', 'capdisc.simulator.server')\n"
        "assert not [m for m in heavy if m in sys.modules], sorted(sys.modules)\n"
        "import capdisc.simulator as package\n"
        "assert package.EmbeddedSimulator.__module__ == 'capdisc.simulator.process'\n"
        "assert set(package.__all__) <= set(dir(package))\n"
        "from capdisc.simulator.server import (\n"
        "    MAX_BODY_BYTES, SimulatorServer, StatsSnapshot, format_base_url, read_api_key)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


def test_invalid_config_json_exits_2() -> None:
    """An invalid --config-json exits 2 with a one-line reason naming the field."""
    done = subprocess.run(
        [sys.executable, "-m", "capdisc.simulator", "--config-json", '{"slots": 0}'],
        capture_output=True,
        text=True,
        timeout=15,
    )
    assert done.returncode == 2
    assert "slots" in done.stderr


def process_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie waiting to be reaped counts as exited)."""
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (ProcessLookupError, FileNotFoundError):
        return True


def test_child_exits_when_its_parent_is_killed() -> None:
    """An embedded simulator whose parent dies (SIGKILL, no cleanup) exits by itself within seconds."""
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\n"
            "from capdisc.simulator import EmbeddedSimulator, SimulatorConfig\n"
            "sim = EmbeddedSimulator(SimulatorConfig()).start()\n"
            "print(sim.pid, flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
    )
    child = 0
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        parent.kill()
        parent.wait(5)
        assert wait_for(lambda: process_gone(child), timeout=5.0)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if child and not process_gone(child):
            os.kill(child, signal.SIGKILL)
