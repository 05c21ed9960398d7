"""The simulator's ground truth: the counters and gauges served by ``GET /stats``.

Tests compare them with what capdisc measured, so every layer updates them where the
event happens: the connection counts connections and bad requests, the capacity model
its slots and queue, the handlers what they served.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass
class StatsSnapshot:
    """Ground-truth counters of one simulator, as served by ``GET /stats``.

    Counters (zeroed by ``POST /stats/reset``): ``requests`` reached a generation
    endpoint; ``served`` were answered 200 in full; ``rejected`` got 503 (queue full);
    ``errors`` got an injected 500 (``error_rate``); ``overloaded`` got the overload
    faults' slow 500 (``overload_rps``, ``overload_queue``); ``bad_requests`` got a
    4xx (any path);
    ``cancelled`` lost their client before the answer was complete; ``chunks_sent``
    content or tool-call chunks streamed (not the role-only event, the reasoning
    events, the finish or usage event nor ``[DONE]``); ``reasoning_sent`` reasoning
    events streamed (``reasoning_content`` deltas, Ollama ``thinking`` lines), so
    that ``chunks_sent + reasoning_sent`` are the events that carry output tokens;
    ``tool_calls`` tool calls answered (agent rounds included); ``connections``
    accepted; ``connections_refused`` closed at once by ``max_connections``;
    ``dropped`` requests that arrived on a connection being closed (never read);
    ``prompt_cache_hits`` requests whose prompt the prompt cache had seen;
    ``generated_tokens`` output tokens generated (reasoning included, counted as they are
    generated, so a request cut short counts what it got); ``prompt_tokens`` prompt
    tokens processed (a cached prompt's are not); ``prompt_cache_queries`` and
    ``prompt_cache_hit_tokens`` the prompt tokens looked up in, and served from, the
    prompt cache (``prompt_cache`` on). ``GET /metrics`` publishes them with vLLM's names.
    Gauges (kept by a reset): ``in_flight`` generation requests holding a slot or
    queued for one, ``active`` busy slots, ``queued`` waiting requests,
    ``overload_pending`` requests waiting for their slow 500 (not in ``in_flight``:
    they hold no slot), ``open_connections``; ``max_in_flight`` and ``max_active`` are the peaks since
    the last reset.
    """

    requests: int = 0
    served: int = 0
    rejected: int = 0
    errors: int = 0
    overloaded: int = 0
    overload_pending: int = 0
    bad_requests: int = 0
    cancelled: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    active: int = 0
    max_active: int = 0
    queued: int = 0
    chunks_sent: int = 0
    reasoning_sent: int = 0
    tool_calls: int = 0
    connections: int = 0
    open_connections: int = 0
    connections_refused: int = 0
    dropped: int = 0
    prompt_cache_hits: int = 0
    generated_tokens: int = 0
    prompt_tokens: int = 0
    prompt_cache_queries: int = 0
    prompt_cache_hit_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        """Every field by name."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def reset(self) -> None:
        """Zero the counters; keep the gauges and restart the peaks from them."""
        keep = {"in_flight", "active", "queued", "overload_pending", "open_connections"}
        for f in fields(self):
            if f.name not in keep:
                setattr(self, f.name, 0)
        self.max_in_flight = self.in_flight
        self.max_active = self.active
