"""The token events of the simulator's streams, read as they arrive on loopback.

What capdisc's token figures rest on: a role-only event first (with the first token,
as llama.cpp sends it, or before the prefill with ``early_role_event``), reasoning
tokens before the content (``reasoning_content`` / Ollama ``thinking``), and usage
counts (``usage``, ``eval_count``) that count both. Times are checked as lower
bounds and order only: the machine is shared and a late read is always possible.
"""

from __future__ import annotations

import itertools
import json
import time
import tomllib
from collections.abc import Callable
from typing import Any, NamedTuple

import httpx
import pytest

from capdisc.simulator import EmbeddedSimulator, SimulatorConfig

StartSimulator = Callable[..., EmbeddedSimulator]

ROLE_DELTA = {"role": "assistant", "content": None}
PROMPT = "How fast is the simulator?"


class Event(NamedTuple):
    """One SSE event or NDJSON line: when its last byte arrived, in which read."""

    t: float  # seconds after the request was sent
    read: int
    raw: bytes

    @property
    def data(self) -> Any:
        payload = self.raw.removeprefix(b"data: ")
        return None if payload == b"[DONE]" else json.loads(payload)

    @property
    def delta(self) -> dict[str, Any]:
        delta: dict[str, Any] = self.data["choices"][0]["delta"]
        return delta


@pytest.fixture
def sim_fast(start_simulator: StartSimulator) -> EmbeddedSimulator:
    """3 reasoning tokens and 4 content tokens, fast."""
    return start_simulator(prefill_ms=0, per_token_ms=1, output_tokens=4, reasoning_tokens=3)


def messages() -> list[dict[str, Any]]:
    return [{"role": "user", "content": PROMPT}]


def openai_body(**extra: Any) -> dict[str, Any]:
    return {"model": "sim-llm", "messages": messages(), "temperature": 0, **extra}


def ollama_body(**extra: Any) -> dict[str, Any]:
    return {"model": "sim-llm", "messages": messages(), "options": {"temperature": 0}, **extra}


def timed_events(http: httpx.Client, url: str, body: dict[str, Any]) -> list[Event]:
    """Stream ``body`` to ``url``; every event with its arrival time and read number."""
    sse = url.endswith("/completions")
    sep = b"\n\n" if sse else b"\n"
    events: list[Event] = []
    buf = b""
    started = time.monotonic()
    with http.stream("POST", url, json=body) as response:
        assert response.status_code == 200
        for read_no, data in enumerate(response.iter_raw()):
            now = time.monotonic() - started
            buf += data
            *complete, buf = buf.split(sep)
            events.extend(Event(now, read_no, raw) for raw in complete)
    assert buf == b"", "the stream must end with a whole event"
    assert b"\r" not in b"".join(e.raw for e in events)
    return events


def split_openai(events: list[Event]) -> dict[str, list[Event]]:
    """A stream's events by kind; asserts they come in the order role, reasoning,
    content (or tool calls), finish, usage, [DONE]."""
    kinds: dict[str, list[Event]] = {
        k: [] for k in ("role", "reasoning", "content", "finish", "usage", "done")
    }
    order = []
    for event in events:
        data = event.data
        if data is None:
            kind = "done"
        elif not data["choices"]:
            kind = "usage"
        elif data["choices"][0]["finish_reason"] is not None:
            kind = "finish"
        else:
            delta = event.delta
            kind = (
                "role"
                if delta == ROLE_DELTA
                else "reasoning"
                if set(delta) == {"reasoning_content"}
                else "content"
            )
            assert kind != "content" or set(delta) in ({"content"}, {"tool_calls"}), delta
        kinds[kind].append(event)
        order.append(kind)
    assert order == sorted(order, key=list(kinds).index), order
    assert len(kinds["role"]) == len(kinds["finish"]) == len(kinds["done"]) == 1
    return kinds


def text(events: list[Event], key: str) -> str:
    return "".join(e.delta[key] for e in events)


# --- the role event ------------------------------------------------------------------


def test_role_event_rides_with_the_first_token(
    start_simulator: StartSimulator, http: httpx.Client
) -> None:
    """By default the role-only event is the first event, shaped like llama.cpp's, and
    arrives in the same write as the first token, after the prefill."""
    sim = start_simulator(prefill_ms=150, per_token_ms=10, output_tokens=4)
    events = timed_events(http, f"{sim.base_url}/v1/chat/completions", openai_body(stream=True))
    kinds = split_openai(events)
    role, first = kinds["role"][0], kinds["content"][0]
    assert events[0] is role
    assert role.raw.startswith(b'data: {"id":"chatcmpl-')
    assert role.raw.endswith(
        b'"object":"chat.completion.chunk",'
        b'"created":%d,"model":"sim-llm","choices":[{"index":0,'
        b'"delta":{"role":"assistant","content":null},"logprobs":null,"finish_reason":null}]}'
        % role.data["created"]
    )
    assert role.read == first.read  # one write: the role rides on the first token
    assert role.t >= 0.15
    assert len(kinds["content"]) == 4
    assert all("role" not in e.delta for e in kinds["content"])
    assert len({e.data["id"] for e in events[:-1]}) == 1


def test_early_role_event_comes_before_the_prefill(
    start_simulator: StartSimulator, http: httpx.Client
) -> None:
    """early_role_event: the role event is written alone as soon as a slot is free,
    so it arrives about prefill_ms before the first content event."""
    sim = start_simulator(prefill_ms=400, per_token_ms=10, output_tokens=3, early_role_event=True)
    events = timed_events(http, f"{sim.base_url}/v1/chat/completions", openai_body(stream=True))
    kinds = split_openai(events)
    role, first = kinds["role"][0], kinds["content"][0]
    assert events[0] is role
    assert role.read < first.read
    assert first.t - role.t >= 0.3
    assert first.t >= 0.4


def test_role_event_on_a_streamed_tool_call(
    sim_fast: EmbeddedSimulator, http: httpx.Client
) -> None:
    """A tool-call stream also opens with the role-only event; the first tool_calls
    delta names the call (as llama.cpp's transcript shows)."""
    tools = [{"type": "function", "function": {"name": "search", "parameters": {}}}]
    body = openai_body(stream=True, tools=tools, tool_choice="required")
    kinds = split_openai(timed_events(http, f"{sim_fast.base_url}/v1/chat/completions", body))
    calls = [e.delta["tool_calls"][0] for e in kinds["content"]]
    # 3 reasoning tokens, then the call's 4 tokens
    assert len(kinds["reasoning"]) == 3 and len(calls) == 4
    assert calls[0]["id"].startswith("call_") and calls[0]["function"]["name"] == "search"
    arguments = "".join(c["function"]["arguments"] for c in calls)
    assert len(json.loads(arguments)["q"].split()) == 4
    assert kinds["finish"][0].data["choices"][0]["finish_reason"] == "tool_calls"


# --- reasoning tokens ------------------------------------------------------------------


def test_reasoning_tokens_come_first_and_take_time(
    start_simulator: StartSimulator, http: httpx.Client
) -> None:
    """reasoning_tokens=3: the first reasoning event comes after the prefill (with the
    role event), the first content event 3 x per_token_ms later; /stats counts
    reasoning events apart from content chunks."""
    sim = start_simulator(prefill_ms=200, per_token_ms=100, output_tokens=2, reasoning_tokens=3)
    before = sim.stats()
    events = timed_events(http, f"{sim.base_url}/v1/chat/completions", openai_body(stream=True))
    kinds = split_openai(events)
    role, reasoning, content = kinds["role"][0], kinds["reasoning"], kinds["content"]
    assert len(reasoning) == 3 and len(content) == 2
    assert role.read == reasoning[0].read  # the role rides on the first token: reasoning
    assert reasoning[0].t >= 0.2
    assert content[0].t - reasoning[0].t >= 0.2  # 3 x 100 ms, less a late first read
    assert all(b.t >= a.t for a, b in itertools.pairwise(events))
    after = sim.stats()
    assert after["reasoning_sent"] - before["reasoning_sent"] == 3
    assert after["chunks_sent"] - before["chunks_sent"] == 2


def test_early_role_then_reasoning(start_simulator: StartSimulator, http: httpx.Client) -> None:
    """early_role_event with reasoning: role alone before the prefill, then reasoning."""
    sim = start_simulator(
        prefill_ms=300, per_token_ms=5, output_tokens=2, reasoning_tokens=2, early_role_event=True
    )
    events = timed_events(http, f"{sim.base_url}/v1/chat/completions", openai_body(stream=True))
    kinds = split_openai(events)
    assert kinds["role"][0].read < kinds["reasoning"][0].read
    assert kinds["reasoning"][0].t - kinds["role"][0].t >= 0.2
    assert len(kinds["reasoning"]) == 2 and len(kinds["content"]) == 2


def test_usage_counts_reasoning_and_content(
    sim_fast: EmbeddedSimulator, http: httpx.Client
) -> None:
    """include_usage: completion_tokens = every output token streamed (reasoning
    included), prompt_tokens as in the non-streamed answer; the non-streamed answer
    carries the same reasoning_content and content as the stream."""
    url = f"{sim_fast.base_url}/v1/chat/completions"
    body = openai_body(stream=True, stream_options={"include_usage": True})
    kinds = split_openai(timed_events(http, url, body))
    usage = kinds["usage"][0].data["usage"]
    streamed = len(kinds["reasoning"]) + len(kinds["content"])
    assert streamed == 7
    assert usage["completion_tokens"] == streamed
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 3}
    # The simulator's estimate: 3 per message plus a token per 4 characters.
    assert usage["prompt_tokens"] == 3 + (len(PROMPT) + 3) // 4
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert kinds["finish"][0].data["choices"][0]["finish_reason"] == "stop"

    whole = http.post(url, json=openai_body()).json()
    message = whole["choices"][0]["message"]
    assert message["reasoning_content"] == text(kinds["reasoning"], "reasoning_content")
    assert message["content"] == text(kinds["content"], "content")
    assert len(message["reasoning_content"].split()) == 3
    assert len(message["content"].split()) == 4
    assert whole["usage"] == usage


@pytest.mark.parametrize(
    ("max_tokens", "reasoning", "content"), [(5, 3, 2), (3, 3, 0), (2, 2, 0), (100, 3, 4)]
)
def test_max_tokens_caps_reasoning_and_content(
    sim_fast: EmbeddedSimulator, http: httpx.Client, max_tokens: int, reasoning: int, content: int
) -> None:
    """max_tokens caps reasoning + content, reasoning first; a cap that leaves no
    content ends with finish_reason length and no tool call."""
    url = f"{sim_fast.base_url}/v1/chat/completions"
    body = openai_body(stream=True, max_tokens=max_tokens, stream_options={"include_usage": True})
    kinds = split_openai(timed_events(http, url, body))
    assert (len(kinds["reasoning"]), len(kinds["content"])) == (reasoning, content)
    assert kinds["usage"][0].data["usage"]["completion_tokens"] == reasoning + content
    finish = "stop" if content == 4 else "length"
    assert kinds["finish"][0].data["choices"][0]["finish_reason"] == finish
    tools = [{"type": "function", "function": {"name": "search", "parameters": {}}}]
    whole = http.post(
        url, json=openai_body(max_tokens=max_tokens, tools=tools, tool_choice="required")
    ).json()
    choice = whole["choices"][0]
    assert ("tool_calls" in choice["message"]) == (content > 0)
    assert choice["finish_reason"] == ("tool_calls" if content else "length")
    assert whole["usage"]["completion_tokens"] == reasoning + content


# --- Ollama ----------------------------------------------------------------------------


def test_ollama_thinking_lines_and_eval_counts(
    sim_fast: EmbeddedSimulator, http: httpx.Client
) -> None:
    """/api/chat: thinking lines (content "") first, then content lines, then the done
    line whose eval_count counts both and prompt_eval_count matches the OpenAI usage."""
    url = f"{sim_fast.base_url}/api/chat"
    lines = [e.data for e in timed_events(http, url, ollama_body())]
    thinking, content, final = lines[:3], lines[3:-1], lines[-1]
    for line in thinking:
        assert line["done"] is False
        assert line["message"]["content"] == "" and line["message"]["thinking"]
    for line in content:
        assert line["done"] is False
        assert line["message"]["content"] and "thinking" not in line["message"]
    assert len(content) == 4
    assert final["done"] is True and final["done_reason"] == "stop"
    assert final["eval_count"] == 7
    assert final["prompt_eval_count"] == 3 + (len(PROMPT) + 3) // 4
    assert final["message"] == {"role": "assistant", "content": ""}

    whole = http.post(url, json=ollama_body(stream=False)).json()
    assert whole["message"]["thinking"] == "".join(t["message"]["thinking"] for t in thinking)
    assert whole["message"]["content"] == "".join(c["message"]["content"] for c in content)
    assert whole["eval_count"] == 7
    assert whole["prompt_eval_count"] == final["prompt_eval_count"]

    capped = http.post(
        url, json=ollama_body(stream=False, options={"temperature": 0, "num_predict": 2})
    ).json()
    assert capped["eval_count"] == 2 and capped["done_reason"] == "length"
    assert capped["message"]["content"] == "" and len(capped["message"]["thinking"].split()) == 2


def test_ollama_thinking_timing_and_tools(
    start_simulator: StartSimulator, http: httpx.Client
) -> None:
    """The first thinking line comes after the prefill, the first content line
    reasoning_tokens x per_token_ms later; with tools, thinking lines stream before
    the tool call message (sent whole)."""
    sim = start_simulator(prefill_ms=150, per_token_ms=80, output_tokens=2, reasoning_tokens=3)
    url = f"{sim.base_url}/api/chat"
    events = timed_events(http, url, ollama_body())
    thinking, content = events[:3], events[3:-1]
    assert all(e.data["message"].get("thinking") for e in thinking)
    assert len(content) == 2 and all(e.data["message"]["content"] for e in content)
    assert thinking[0].t >= 0.15
    assert content[0].t - thinking[0].t >= 0.16  # 3 x 80 ms, less a late first read

    before = sim.stats()
    tools = [{"type": "function", "function": {"name": "search", "parameters": {}}}]
    lines = [e.data for e in timed_events(http, url, ollama_body(tools=tools))]
    assert [bool(line["message"].get("thinking")) for line in lines] == [True] * 3 + [False] * 2
    assert lines[3]["message"]["tool_calls"][0]["function"]["name"] == "search"
    assert lines[-1]["done"] is True and lines[-1]["eval_count"] == 5
    after = sim.stats()
    assert after["reasoning_sent"] - before["reasoning_sent"] == 3
    assert after["chunks_sent"] - before["chunks_sent"] == 1
    assert after["tool_calls"] - before["tool_calls"] == 1


# --- configuration ---------------------------------------------------------------------


def test_config_fields_service_time_and_flags() -> None:
    """The new fields validate, count in the service time, are profile keys of
    [simulator] and become ``capdisc simulator serve`` flags."""
    config = SimulatorConfig.model_validate(
        {"prefill_ms": 50, "per_token_ms": 10, "output_tokens": 20, "reasoning_tokens": 10}
    )
    assert config.answer_tokens() == (10, 20)
    assert config.answer_tokens(15) == (10, 5)
    assert config.answer_tokens(4) == (4, 0)
    assert config.service_time_s() == pytest.approx(0.35)
    assert config.service_time_s(15) == pytest.approx(0.2)
    assert (
        SimulatorConfig(reasoning_tokens=0).service_time_s() == SimulatorConfig().service_time_s()
    )
    with pytest.raises(ValueError, match="reasoning_tokens"):
        SimulatorConfig(reasoning_tokens=-1)
    assert SimulatorConfig.model_validate({"early_role_event": True}).early_role_event

    from capdisc.cli.options import model_flags
    from capdisc.profiles import parse_profile

    table = tomllib.loads("[simulator]\nearly_role_event = true\nreasoning_tokens = 5\n")
    profile = parse_profile(table, name="reasoning", path=None)
    assert profile.simulator_config.early_role_event is True
    assert profile.simulator_config.reasoning_tokens == 5

    params = {p.name: p for p in model_flags(SimulatorConfig, panel="Simulator")}

    def decls(name: str) -> tuple[Any, ...]:
        info = params[name].annotation.__metadata__[0]
        assert info.help, name  # the field's description
        # typer.Option(*decls): the first declaration lands in ``default``
        return (info.default, *info.param_decls)

    assert decls("early_role_event") == ("--early-role-event/--no-early-role-event",)
    assert decls("reasoning_tokens") == ("--reasoning-tokens",)
