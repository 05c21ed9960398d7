"""Configuration of the embedded LLM simulator: its capacity model and its faults.

The capacity model is meant to be reasoned about: ``slots`` requests are served at
once, each takes ``prefill_ms + tokens * per_token_ms`` (times a seeded jitter
factor, and slowed by ``slowdown_per_slot`` for every other active slot), and up to
``queue_limit`` more wait for a slot; beyond that the simulator answers 503. With a
pacing interval P, the saturation point is ``U* = slots * P / service_time``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ConnectionConfig", "FaultConfig", "SimulatorConfig"]


class FaultConfig(BaseModel):
    """Faults a test can switch on to see how capdisc copes."""

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
        default=32, ge=1, description="Tokens per answer, capped by max_tokens/num_predict."
    )
    slowdown_per_slot: float = Field(
        default=0.0,
        ge=0,
        description="Extra per-token time per other active slot (0.1 = +10% each), as batching does.",
    )
    jitter: float = Field(
        default=0.0, ge=0, le=0.9, description="Service time varies uniformly by +/- this share."
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

    def service_time_s(self, tokens: int | None = None) -> float:
        """Mean time one request holds a slot when it is alone, in seconds."""
        count = self.output_tokens if tokens is None else min(tokens, self.output_tokens)
        return (self.prefill_ms + count * self.per_token_ms) / 1000.0
