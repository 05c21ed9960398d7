"""The embedded LLM simulator: a small HTTP/1.1 server on plain asyncio.

It speaks enough of the OpenAI chat API (``/v1/chat/completions``, JSON and SSE) and
of Ollama's native API (``/api/chat``, JSON and NDJSON) for capdisc to load-test it
exactly as it would a real server, plus a server-orchestrated tool task
(``/v1/agent/run``) and ground-truth counters (``/stats``, and ``/metrics`` in
Prometheus text under vLLM's names) that tests compare with what capdisc measured.

:class:`SimulatorServer` only composes the parts and routes requests to them; each
concern lives in one module:

- :mod:`~capdisc.simulator.protocol`: the HTTP/1.1 connection (and why it is
  hand-written), with :mod:`~capdisc.simulator.request_head` parsing request heads;
- :mod:`~capdisc.simulator.capacity`: slots, queue limit and service time;
- :mod:`~capdisc.simulator.faults`: ``max_connections``, ``crash_after``,
  ``error_rate``, ``hang``, the slow overload failures; :mod:`~capdisc.simulator.auth`:
  the optional API key;
- :mod:`~capdisc.simulator.openai_api`, :mod:`~capdisc.simulator.ollama_api`,
  :mod:`~capdisc.simulator.agent_api`, :mod:`~capdisc.simulator.endpoints`: one
  module per API, sharing a :class:`~capdisc.simulator.context.Context`;
- :mod:`~capdisc.simulator.streaming`: the per-token write path;
  :mod:`~capdisc.simulator.text`: answer text; :mod:`~capdisc.simulator.bodies`:
  request validation; :mod:`~capdisc.simulator.stats`: the counters.
"""

from __future__ import annotations

import asyncio

from capdisc.simulator.agent_api import AgentApi
from capdisc.simulator.auth import read_api_key
from capdisc.simulator.config import SimulatorConfig
from capdisc.simulator.context import Context
from capdisc.simulator.endpoints import Endpoints
from capdisc.simulator.errors import HttpError
from capdisc.simulator.faults import Faults
from capdisc.simulator.ollama_api import OllamaApi
from capdisc.simulator.openai_api import OpenAIApi
from capdisc.simulator.protocol import Handler, Request, ServerConnection, log_exception
from capdisc.simulator.request_head import MAX_BODY_BYTES
from capdisc.simulator.stats import StatsSnapshot

__all__ = [
    "MAX_BODY_BYTES",
    "SimulatorServer",
    "StatsSnapshot",
    "format_base_url",
    "read_api_key",
]


def format_base_url(host: str, port: int) -> str:
    """``http://host:port``, bracketing IPv6 literals."""
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}"


class SimulatorServer:
    """The simulator's HTTP server, run inside an asyncio event loop.

    ``start`` binds and returns the base URL; ``close`` stops listening and drops
    open connections. Most callers want :func:`capdisc.simulator.serve` or
    :class:`capdisc.simulator.EmbeddedSimulator` instead. Raises ``ValueError`` when
    ``config.api_key_env`` names an unset variable.
    """

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.stats = StatsSnapshot()
        ctx = Context(config, self.stats)
        self.faults: Faults = ctx.faults
        self.closing = config.connections
        self._server: asyncio.Server | None = None
        self._connections: set[ServerConnection] = set()
        self.base_url = ""
        openai = OpenAIApi(ctx)
        ollama = OllamaApi(ctx)
        agent = AgentApi(ctx)
        small = Endpoints(ctx)
        self._routes: dict[str, dict[str, Handler]] = {
            "/v1/chat/completions": {"POST": openai.chat},
            "/api/chat": {"POST": ollama.chat},
            "/v1/agent/run": {"POST": agent.run},
            "/v1/models": {"GET": small.openai_models},
            "/api/tags": {"GET": small.ollama_tags},
            "/health": {"GET": small.health},
            "/stats": {"GET": small.get_stats},
            "/stats/reset": {"POST": small.reset_stats},
            "/metrics": {"GET": small.metrics},
        }

    # --- lifecycle --------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0: a free port) and return the base URL."""
        loop = asyncio.get_running_loop()
        # A deep backlog: 200 users connecting at once must not wait for SYN retries.
        self._server = await loop.create_server(
            self._make_connection, host, port, backlog=2048, reuse_address=True
        )
        sockname = self._server.sockets[0].getsockname()
        self.base_url = format_base_url(host, int(sockname[1]))
        return self.base_url

    def _make_connection(self) -> ServerConnection:
        conn = ServerConnection(self)
        self._connections.add(conn)
        return conn

    async def close(self) -> None:
        """Stop listening and drop every open connection."""
        if self._server is None:
            return
        self._server.close()
        for conn in list(self._connections):
            conn.abort()
        self._connections.clear()
        await self._server.wait_closed()
        self._server = None

    def log_exception(self, where: str) -> None:
        """A bug in the simulator: report it on stderr and keep serving."""
        log_exception(where)

    # --- routing ----------------------------------------------------------------

    def forget(self, conn: ServerConnection) -> None:
        """A connection has closed."""
        self._connections.discard(conn)

    async def dispatch(self, conn: ServerConnection, request: Request) -> None:
        """Run the handler of one request."""
        methods = self._routes.get(request.path)
        if methods is None:
            raise HttpError(404, f"no route for {request.path}", "not_found_error")
        handler = methods.get(request.method)
        if handler is None:
            allow = ", ".join(methods)
            raise HttpError(
                405,
                f"{request.method} is not allowed on {request.path} (allowed: {allow})",
                "invalid_request_error",
                headers=f"Allow: {allow}\r\n".encode(),
            )
        return await handler(conn, request)
