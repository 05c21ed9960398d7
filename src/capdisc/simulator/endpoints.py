"""The small endpoints: model lists, health, the ground-truth counters and ``/metrics``.

``/v1/models`` (OpenAI) and ``/api/tags`` (Ollama) list the one configured model and
need the API key when there is one; ``/health``, ``/stats`` and ``/metrics`` (the same
state in Prometheus text, under vLLM's names) stay open, as vLLM's ``/metrics`` does,
so that a test can observe a simulator whatever its faults, and are never counted as
requests.
"""

from __future__ import annotations

import hashlib

from capdisc.simulator.bodies import dumps
from capdisc.simulator.context import Context
from capdisc.simulator.metrics import CONTENT_TYPE, metrics_text
from capdisc.simulator.protocol import Request, ServerConnection


class Endpoints:
    """Handlers of ``/v1/models``, ``/api/tags``, ``/health``, ``/stats``, ``/stats/reset``
    and ``/metrics``."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    async def openai_models(self, conn: ServerConnection, request: Request) -> None:
        self._ctx.auth.check(request)
        body = {
            "object": "list",
            "data": [
                {
                    "id": self._ctx.config.model,
                    "object": "model",
                    "created": 0,
                    "owned_by": "capdisc-simulator",
                }
            ],
        }
        conn.send(200, dumps(body).encode())

    async def ollama_tags(self, conn: ServerConnection, request: Request) -> None:
        self._ctx.auth.check(request)
        name = self._ctx.config.model
        body = {
            "models": [
                {
                    "name": name,
                    "model": name,
                    "modified_at": "1970-01-01T00:00:00Z",
                    "size": 0,
                    "digest": hashlib.sha256(name.encode()).hexdigest(),
                    "details": {"family": "capdisc-simulator", "format": "simulated"},
                }
            ]
        }
        conn.send(200, dumps(body).encode())

    async def health(self, conn: ServerConnection, request: Request) -> None:
        conn.send(200, b'{"status":"ok"}')

    async def get_stats(self, conn: ServerConnection, request: Request) -> None:
        conn.send(200, dumps(self._ctx.stats.as_dict()).encode())

    async def metrics(self, conn: ServerConnection, request: Request) -> None:
        text = metrics_text(self._ctx.stats, self._ctx.config)
        conn.send(200, text.encode(), content_type=CONTENT_TYPE)

    async def reset_stats(self, conn: ServerConnection, request: Request) -> None:
        self._ctx.stats.reset()
        conn.send(200, dumps(self._ctx.stats.as_dict()).encode())
