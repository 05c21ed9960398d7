"""The simulator's two chat APIs, its tools and its agent endpoint, over real HTTP."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from capdisc.simulator import EmbeddedSimulator
from tests.e2e.simulator.conftest import (
    TOKENS,
    TOOLS,
    StartSimulator,
    chat_body,
    sse_events,
    stream_bytes,
    user,
)


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
