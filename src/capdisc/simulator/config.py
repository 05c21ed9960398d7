"""Configuration of the embedded LLM simulator: its capacity model and its faults.

The capacity model is meant to be reasoned about: ``slots`` requests are served at
once, each takes ``prefill_ms + tokens * per_token_ms`` (times a seeded jitter
factor, and slowed by ``slowdown_per_slot`` for every other active slot; with
``drift_per_min`` it also grows linearly with the time since the start), and up to
``queue_limit`` more wait for a slot; beyond that the simulator answers 503. With a
pacing interval P, the saturation point is ``U* = slots * P / service_time``.

Batching: each token costs ``per_token_ms * (1 + slowdown_per_slot * (busy - 1))``,
``busy`` being the busy slots at that token, so latency grows with the requests in
flight, and throughput ``busy / service_time(busy)`` is highest with every slot busy:
``U* = slots * P / (prefill + tokens * per_token * (1 + slowdown_per_slot * (slots -
1)))``. ``slowdown_per_slot = 1 / (slots - 1)`` with no prefill doubles the latency
from one busy slot to all. The jitter factor is drawn independently for each request
(not per token), uniform in ``[1 - jitter, 1 + jitter]``, mean 1, so U* keeps the
mean service time.

An answer's tokens are ``reasoning_tokens`` reasoning tokens, streamed first, then
``output_tokens`` content (or tool-call) tokens, each costing ``per_token_ms``. A
request's ``max_tokens``/``num_predict`` caps the total of both, reasoning first (as
a reasoning model that runs out of tokens while thinking): with ``reasoning_tokens``
8, ``output_tokens`` 32 and ``max_tokens`` 10 the answer has 8 reasoning tokens and
2 content tokens; with ``max_tokens`` 5, 5 reasoning tokens and no content, no tool
call, and finish reason ``length``. Usage counts (``completion_tokens``,
``eval_count``) are reasoning plus content tokens.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ConnectionConfig", "FaultConfig", "SimulatorConfig"]


class FaultConfig(BaseModel):
    """Faults a test can switch on to see how capdisc copes.

    The overload faults model a server that fails slowly once overloaded (a gateway
    timing out, a worker that thrashes): with ``overload_rps`` 9.5,
    ``overload_window_s`` 2 and ``overload_fail_after_s`` 12, a request that finds
    more than 19 arrivals within the last 2 s (itself included) gets HTTP 500 after
    12 s. Such a request holds no slot and no place in the queue. Paced users put
    their own previous request at the window's edge, where timer noise decides
    whether it counts: a rate halfway between two user levels and a window of at
    least two pacing intervals keep that noise from failing the lower level (at 1 s
    pacing, 9 users pass and 10 fail with the settings above).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_connections: int | None = Field(
        default=None, ge=1, description="Connections beyond this many are closed at once."
    )
    crash_after: int | None = Field(
        default=None, ge=1, description="Exit the process after serving this many requests."
    )
    error_rate: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Share of requests answered with HTTP 500."
    )
    hang: bool = Field(default=False, description="Accept requests and never answer them.")
    overload_rps: float | None = Field(
        default=None,
        gt=0,
        description="Once the generation requests that arrived within the last "
        "overload_window_s (every one counted, this one too) exceed this rate times the "
        "window, a new one fails slowly: HTTP 500 after overload_fail_after_s.",
    )
    overload_window_s: float = Field(
        default=1.0,
        gt=0,
        description="The sliding window over which overload_rps counts arrivals, in seconds.",
    )
    overload_queue: int | None = Field(
        default=None,
        ge=0,
        description="A request that would wait for a slot behind this many queued ones "
        "fails slowly (HTTP 500 after overload_fail_after_s): a slow queue_limit.",
    )
    overload_fail_after_s: float = Field(
        default=10.0,
        ge=0,
        description="How long a request failed by overload_rps or overload_queue waits "
        "before its HTTP 500, in seconds.",
    )


class ConnectionConfig(BaseModel):
    """How the simulator closes connections, the way real servers do.

    Closes are silent (no ``Connection: close``) and come ``close_delay_ms`` after the
    answer: a client that sends its next request on that connection meanwhile gets it
    dropped unread (counted in ``/stats`` as ``dropped``) and must reconnect, as
    against llama.cpp's server, which closes after every streamed answer.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    close_after_stream: bool = Field(
        default=False, description="Close the connection after each streamed answer."
    )
    requests_per_connection: int | None = Field(
        default=None, ge=1, description="Close a connection after this many answers on it."
    )
    idle_timeout_ms: float | None = Field(
        default=None, gt=0, description="Close a connection idle for this long."
    )
    close_delay_ms: float = Field(
        default=20.0,
        ge=0,
        description="How long after the answer such a close comes (requests sent meanwhile are dropped).",
    )


class SimulatorConfig(BaseModel):
    """Everything that shapes the simulator's answers and its capacity."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(default="sim-llm", min_length=1, description="Model name it serves.")
    slots: int = Field(default=4, ge=1, description="Requests served at the same time.")
    queue_limit: int = Field(
        default=1024, ge=0, description="Requests that may wait for a slot; beyond it, 503."
    )
    prefill_ms: float = Field(default=50.0, ge=0, description="Time before the first token.")
    per_token_ms: float = Field(default=10.0, ge=0, description="Time per output token.")
    output_tokens: int = Field(
        default=32,
        ge=1,
        description="Content (or tool-call) tokens per answer; max_tokens/num_predict cap "
        "them together with the reasoning tokens.",
    )
    prefill_per_token_ms: float = Field(
        default=0.0,
        ge=0,
        description="Extra prefill time per prompt token (prompt words), as real prefill grows with the prompt.",
    )
    prompt_cache: bool = Field(
        default=False,
        description="A prompt seen before (the same messages) skips its prefill, like llama.cpp's cache.",
    )
    reasoning_tokens: int = Field(
        default=0,
        ge=0,
        description="Reasoning tokens streamed before the content (reasoning_content / "
        "Ollama thinking), per_token_ms each; max_tokens caps reasoning + content, "
        "reasoning first.",
    )
    early_role_event: bool = Field(
        default=False,
        description="Send the OpenAI stream's role-only event as soon as a slot is free, "
        "before the prefill (as gateways do), not with the first token (as llama.cpp does).",
    )
    slowdown_per_slot: float = Field(
        default=0.0,
        ge=0,
        description="Extra per-token time per other active slot (0.1 = +10% each), as batching does.",
    )
    jitter: float = Field(
        default=0.0, ge=0, le=0.9, description="Service time varies uniformly by +/- this share."
    )
    drift_per_min: float = Field(
        default=0.0,
        ge=0,
        description="Service time grows by this share per minute since the start "
        "(0.05 = +5% after one minute, +10% after two), as a server that slows down.",
    )
    seed: int = Field(default=0, description="Seed for jitter, errors and text.")
    auto_tool_calls: int = Field(
        default=1,
        ge=0,
        description="With tool_choice auto: call tools until the conversation holds this many results.",
    )
    api_key_env: str | None = Field(
        default=None,
        description="If set, requests must carry 'Authorization: Bearer <value of this variable>'.",
    )
    faults: FaultConfig = Field(default_factory=FaultConfig)
    connections: ConnectionConfig = Field(default_factory=ConnectionConfig)

    def answer_tokens(
        self, max_tokens: int | None = None, min_tokens: int | None = None
    ) -> tuple[int, int]:
        """Reasoning and content tokens of an answer to a request with ``max_tokens``.

        The cap covers both, reasoning first: the content gets what is left of it.
        ``min_tokens`` (or ``ignore_eos``, which asks for ``max_tokens``) makes the
        answer at least that long, as vLLM and llama.cpp do.
        """
        reasoning, content = self.reasoning_tokens, self.output_tokens
        if min_tokens is not None:
            content = max(content, min_tokens - reasoning)
        if max_tokens is not None:
            reasoning = min(reasoning, max_tokens)
            content = min(content, max_tokens - reasoning)
        return reasoning, content

    def service_time_s(self, tokens: int | None = None) -> float:
        """Mean time one request holds a slot when it is alone, in seconds.

        ``tokens`` is the request's ``max_tokens`` (None: no cap); it caps reasoning
        and content tokens together, as :meth:`answer_tokens` says.
        """
        reasoning, content = self.answer_tokens(tokens)
        return (self.prefill_ms + (reasoning + content) * self.per_token_ms) / 1000.0
