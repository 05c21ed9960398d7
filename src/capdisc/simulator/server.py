"""The embedded LLM simulator: a small HTTP/1.1 server on plain asyncio.

It speaks enough of the OpenAI chat API (``/v1/chat/completions``, JSON and SSE) and
of Ollama's native API (``/api/chat``, JSON and NDJSON) for capdisc to load-test it
exactly as it would a real server, plus a server-orchestrated tool task
(``/v1/agent/run``) and ground-truth counters (``/stats``) that tests compare with
what capdisc measured.

Why hand-written HTTP on ``asyncio.Protocol`` rather than a web framework: the
simulator shares the machine with the load generator, so every microsecond it spends
per streamed token is CPU that the load generator cannot use. A framework stack
(routing, ASGI events, per-event JSON) costs several times a raw server per chunk;
here each chunk is one pre-built byte string and one ``transport.write``.
``benchmarks/simulator.py`` keeps that honest.

Capacity model (see :mod:`capdisc.simulator.config`): ``slots`` requests are served at
once and up to ``queue_limit`` wait; a request that finds the queue full is answered
503 at once. A served request holds its slot for ``prefill_ms`` then ``per_token_ms``
per output token (stretched by ``slowdown_per_slot`` for every other busy slot), all
scaled by one seeded jitter factor drawn per request.

Faults apply to the generation endpoints only; ``/health``, ``/stats`` and the model
lists keep answering so that a test can still observe the simulator. ``crash_after``
= N lets N generation requests in and exits the process abruptly when request N+1
arrives, so a sequential client sees exactly N answers. Likewise, with
``api_key_env`` the generation and model endpoints need ``Authorization: Bearer``
while ``/health`` and ``/stats`` stay open.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import math
import os
import random
import sys
import time
import traceback
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from typing import Any

from capdisc.simulator.config import SimulatorConfig

__all__ = [
    "MAX_BODY_BYTES",
    "SimulatorServer",
    "StatsSnapshot",
    "format_base_url",
    "read_api_key",
]

MAX_BODY_BYTES = 8 * 1024 * 1024
"""Largest request body accepted; beyond it the answer is 413."""

_MAX_HEAD_BYTES = 64 * 1024
_MAX_AGENT_TOOL_CALLS = 1000
_RING_SIZE = 4099
# Below this much time ahead of schedule a stream does not sleep but emits at once:
# a timer per 1 ms token would cost more CPU than the tokens themselves.
_STREAM_MIN_SLEEP_S = 0.002
_BATCH_MIN_SLEEP_S = 0.02
# With per_token_ms = 0 a long answer would otherwise never yield to other connections.
_YIELD_EVERY_TOKENS = 256

_REASONS = {
    100: "Continue",
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

# Words, not real tokens: readable, JSON-safe, and all of similar length.
_WORD_TEXT = (
    "the model answers with steady tokens while load grows and latency stays within "
    "its budget until every slot is busy then requests wait in a queue so throughput "
    "flattens as capacity is reached pacing keeps offered rate honest users send "
    "prompts servers stream chunks back quickly measured carefully simulated output "
    "text for testing only batch tools compare versions faster slower median "
    "percentile interval step"
)
_WORDS = tuple(_WORD_TEXT.split())
_WORD_BYTES = tuple(w.encode() for w in _WORDS)
_SPACED_WORD_BYTES = tuple(b" " + w for w in _WORD_BYTES)
_OPEN_ARGS = b'{\\"q\\": \\"'  # '{"q": "' inside a JSON string
_CLOSE_ARGS = b'\\"}'


def _pieces(suffix: bytes) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """Per word: the end of a streamed chunk, first token (no space) and later ones."""
    return (
        tuple(w + suffix for w in _WORD_BYTES),
        tuple(w + suffix for w in _SPACED_WORD_BYTES),
    )


# Each piece ends a chunk: the word, the rest of the event, the CRLF closing the
# HTTP chunk. Built once, so that a streamed token costs one join and one write.
_OPENAI_PIECES = _pieces(b'"},"logprobs":null,"finish_reason":null}]}\n\n\r\n')
_OLLAMA_PIECES = _pieces(b'"},"done":false}\n\r\n')
_CHUNK_HEADS = tuple(b"%x\r\n" % n for n in range(4096))


def format_base_url(host: str, port: int) -> str:
    """``http://host:port``, bracketing IPv6 literals."""
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}"


def read_api_key(config: SimulatorConfig) -> str | None:
    """The key the simulator requires, read from ``config.api_key_env`` (None: no auth).

    Raises ``ValueError`` naming the variable (never its value) when it is unset or empty.
    """
    if config.api_key_env is None:
        return None
    key = os.environ.get(config.api_key_env, "")
    if not key:
        raise ValueError(
            f"simulator.api_key_env names {config.api_key_env!r}, "
            "but that environment variable is not set"
        )
    return key


@dataclass
class StatsSnapshot:
    """Ground-truth counters of one simulator, as served by ``GET /stats``.

    Counters (zeroed by ``POST /stats/reset``): ``requests`` reached a generation
    endpoint; ``served`` were answered 200 in full; ``rejected`` got 503 (queue full);
    ``errors`` got an injected 500; ``bad_requests`` got a 4xx (any path);
    ``cancelled`` lost their client before the answer was complete; ``chunks_sent``
    content or tool-call chunks streamed (not the final event nor ``[DONE]``);
    ``tool_calls`` tool calls answered (agent rounds included); ``connections``
    accepted; ``connections_refused`` closed at once by ``max_connections``.
    Gauges (kept by a reset): ``in_flight`` generation requests holding a slot or
    queued for one, ``active`` busy slots, ``queued`` waiting requests,
    ``open_connections``; ``max_in_flight`` and ``max_active`` are the peaks since
    the last reset.
    """

    requests: int = 0
    served: int = 0
    rejected: int = 0
    errors: int = 0
    bad_requests: int = 0
    cancelled: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    active: int = 0
    max_active: int = 0
    queued: int = 0
    chunks_sent: int = 0
    tool_calls: int = 0
    connections: int = 0
    open_connections: int = 0
    connections_refused: int = 0

    def as_dict(self) -> dict[str, int]:
        """Every field by name."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def reset(self) -> None:
        """Zero the counters; keep the gauges and restart the peaks from them."""
        keep = {"in_flight", "active", "queued", "open_connections"}
        for f in fields(self):
            if f.name not in keep:
                setattr(self, f.name, 0)
        self.max_in_flight = self.in_flight
        self.max_active = self.active


class _HttpError(Exception):
    """An answer other than 200, with the stats counter it increments."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str,
        *,
        counter: str | None = None,
        headers: bytes = b"",
        close: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.counter = counter or ("bad_requests" if 400 <= status < 500 else None)
        self.headers = headers
        self.close = close


def _bad(message: str) -> _HttpError:
    return _HttpError(400, message, "invalid_request_error")


def _error_body(message: str, kind: str) -> bytes:
    return _dumps({"error": {"message": message, "type": kind}}).encode()


class _Slots:
    """The slot semaphore with a bounded queue; waiters get slots in arrival order."""

    def __init__(self, slots: int, queue_limit: int) -> None:
        self._slots = slots
        self._queue_limit = queue_limit
        self.active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def admit(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None] | None:
        """A future that completes when a slot is ours, or None when the queue is full."""
        fut: asyncio.Future[None] = loop.create_future()
        if self.active < self._slots and not self._waiters:
            self.active += 1
            fut.set_result(None)
            return fut
        if len(self._waiters) >= self._queue_limit:
            return None
        self._waiters.append(fut)
        return fut

    async def wait(self, fut: asyncio.Future[None]) -> None:
        """Wait for an admitted future; a cancelled waiter gives its place or slot back."""
        if fut.done():
            return
        try:
            await fut
        except asyncio.CancelledError:
            if fut.cancelled():
                if fut in self._waiters:
                    self._waiters.remove(fut)
            else:
                # The slot was handed over just before the cancellation landed.
                self.release()
            raise

    def release(self) -> None:
        """Free a slot, or hand it straight to the oldest waiter."""
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.active -= 1


@dataclass(slots=True)
class _Request:
    method: str
    path: str
    headers: dict[bytes, bytes]  # lower-case names
    body: bytes
    keep_alive: bool


@dataclass(slots=True)
class _Head:
    method: str
    path: str
    headers: dict[bytes, bytes]
    length: int
    keep_alive: bool
    expect_continue: bool


@dataclass
class _Chat:
    """A validated chat request, whichever API it came from."""

    model: str
    messages: list[dict[str, Any]]
    stream: bool
    max_tokens: int | None
    temperature: float
    seed: int | None
    tool_names: list[str]
    tool_choice: str | None
    include_usage: bool


class _Connection(asyncio.Protocol):
    """One client connection: parses requests one at a time and runs their handler."""

    def __init__(self, server: SimulatorServer) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._head: _Head | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._eof = False
        self._refused = False
        self._reading_paused = False
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self.keep_alive = True
        self.response_started = False

    # --- asyncio.Protocol -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        stats = self._server.stats
        limit = self._server.config.faults.max_connections
        if limit is not None and stats.open_connections >= limit:
            self._refused = True
            stats.connections_refused += 1
            transport.close()
            return
        stats.connections += 1
        stats.open_connections += 1

    def data_received(self, data: bytes) -> None:
        if self._closed or self._refused:
            return
        self._buf += data
        if self._task is None:
            try:
                self._next_request()
            except Exception:  # never let one client's bytes take the server down
                self._server.log_exception("parsing a request")
                self._fail(400, "malformed request")
        elif len(self._buf) > MAX_BODY_BYTES + _MAX_HEAD_BYTES and not self._reading_paused:
            assert self._transport is not None
            self._transport.pause_reading()
            self._reading_paused = True

    def eof_received(self) -> bool:
        self._eof = True
        # Keep a half-closed connection open only to answer the request in progress:
        # a partial request left in the buffer can never complete.
        return self._task is not None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._closed:
            return
        self._closed = True
        if not self._refused:
            self._server.stats.open_connections -= 1
        if self._task is not None:
            self._task.cancel()
        self._wake_drain()
        self._server.forget(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_drain()

    # --- writing ----------------------------------------------------------------

    @property
    def write_paused(self) -> bool:
        """True while the client lags behind and we should stop writing."""
        return self._write_paused

    def raw_writer(self) -> tuple[Callable[[bytes], None], Callable[[], bool]]:
        """``transport.write`` and ``transport.is_closing`` for a hot streaming loop."""
        assert self._transport is not None
        return self._transport.write, self._transport.is_closing

    def _wake_drain(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def drain(self) -> None:
        """Wait until the client has taken enough of what we wrote."""
        if not self._write_paused or self._closed:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._drain_waiters.append(fut)
        await fut

    def write(self, data: bytes) -> None:
        if self._transport is not None and not self._closed:
            self._transport.write(data)

    def send(
        self,
        status: int,
        body: bytes,
        content_type: bytes = b"application/json",
        extra_headers: bytes = b"",
    ) -> None:
        """One complete response with Content-Length."""
        connection = b"" if self.keep_alive else b"Connection: close\r\n"
        head = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s%s\r\n" % (
            status,
            _REASONS.get(status, "Unknown").encode(),
            content_type,
            len(body),
            connection,
            extra_headers,
        )
        self.response_started = True
        self.write(head + body)

    def start_chunked(self, content_type: bytes) -> None:
        """Headers of a streamed 200 response; chunks follow with ``write``."""
        connection = b"" if self.keep_alive else b"Connection: close\r\n"
        self.response_started = True
        self.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\n%s\r\n" % (content_type, connection)
        )

    # --- request parsing --------------------------------------------------------

    def _fail(self, status: int, message: str) -> None:
        """Answer a framing error and close: the rest of the byte stream is unusable."""
        self._server.stats.bad_requests += 1
        self.keep_alive = False
        self.send(status, _error_body(message, "invalid_request_error"))
        self._buf.clear()
        self._head = None
        if self._transport is not None:
            self._transport.close()

    def _next_request(self) -> None:
        if self._closed or self._transport is None or self._transport.is_closing():
            return
        if self._head is None:
            self._head = self._parse_head()
            if self._head is None:
                if self._eof:
                    # The client stopped sending: a partial request can never complete.
                    self._transport.close()
                return
        head = self._head
        if len(self._buf) < head.length:
            if head.expect_continue:
                head.expect_continue = False
                self.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            if self._eof:
                self._transport.close()
            return
        body = bytes(self._buf[: head.length])
        del self._buf[: head.length]
        self._head = None
        self.keep_alive = head.keep_alive
        request = _Request(head.method, head.path, head.headers, body, head.keep_alive)
        self._task = asyncio.get_running_loop().create_task(self._run(request))
        self._task.add_done_callback(self._request_done)

    def _parse_head(self) -> _Head | None:
        buf = self._buf
        # RFC 9112 asks servers to ignore empty lines before a request line.
        while buf[:2] == b"\r\n":
            del buf[:2]
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > _MAX_HEAD_BYTES:
                self._fail(431, "request headers too large")
            return None
        if end > _MAX_HEAD_BYTES:
            self._fail(431, "request headers too large")
            return None
        lines = bytes(buf[:end]).split(b"\r\n")
        del buf[: end + 4]
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not parts[0].isalpha() or not parts[0].isupper():
            self._fail(400, "malformed request line")
            return None
        method, target, version = parts
        if version not in (b"HTTP/1.1", b"HTTP/1.0"):
            self._fail(400, "unsupported HTTP version")
            return None
        if target.startswith((b"http://", b"https://")):
            slash = target.find(b"/", target.find(b"//") + 2)
            target = target[slash:] if slash >= 0 else b"/"
        if not target.startswith(b"/"):
            self._fail(400, "malformed request target")
            return None
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            colon = line.find(b":")
            name = line[:colon]
            if colon <= 0 or b" " in name or b"\t" in name:
                self._fail(400, "malformed header line")
                return None
            key = name.lower()
            value = line[colon + 1 :].strip()
            if key in headers:
                if key == b"content-length" and headers[key] != value:
                    self._fail(400, "conflicting Content-Length headers")
                    return None
                headers[key] = headers[key] + b", " + value
            else:
                headers[key] = value
        if b"transfer-encoding" in headers:
            self._fail(411, "chunked request bodies are not supported; send Content-Length")
            return None
        raw_length = headers.get(b"content-length", b"0").split(b",")[0].strip()
        if not raw_length.isdigit():
            self._fail(400, "invalid Content-Length")
            return None
        length = int(raw_length)
        if length > MAX_BODY_BYTES:
            self._fail(413, f"request body larger than {MAX_BODY_BYTES} bytes")
            return None
        # HTTP/1.0 clients get one answer per connection: simpler than echoing their
        # Keep-Alive dialect, and none of the clients capdisc drives speak 1.0.
        connection = headers.get(b"connection")
        keep_alive = version == b"HTTP/1.1" and (
            connection is None or b"close" not in connection.lower()
        )
        query = target.find(b"?")
        return _Head(
            method=method.decode(),
            path=(target if query < 0 else target[:query]).decode("latin-1"),
            headers=headers,
            length=length,
            keep_alive=keep_alive,
            expect_continue=headers.get(b"expect", b"").lower() == b"100-continue",
        )

    # --- running handlers -------------------------------------------------------

    async def _run(self, request: _Request) -> None:
        self.response_started = False
        try:
            await self._server.dispatch(self, request)
        except _HttpError as exc:
            if exc.counter is not None:
                stats = self._server.stats
                setattr(stats, exc.counter, getattr(stats, exc.counter) + 1)
            if self.response_started:
                self.abort()
                return
            if exc.close:
                self.keep_alive = False
            self.send(exc.status, _error_body(exc.message, exc.kind), extra_headers=exc.headers)
        except Exception:
            self._server.log_exception(f"{request.method} {request.path}")
            if self.response_started:
                # Half a response is on the wire: only closing tells the client.
                self.abort()
            else:
                self.keep_alive = False
                self.send(500, _error_body("internal simulator error", "internal_error"))

    def abort(self) -> None:
        """Drop the connection at once (the client sees a reset)."""
        if self._transport is not None:
            self._transport.abort()

    def _request_done(self, task: asyncio.Task[None]) -> None:
        self._task = None
        if self._closed or self._transport is None:
            return
        if not self.keep_alive:
            self._transport.close()
            return
        if self._reading_paused:
            self._reading_paused = False
            self._transport.resume_reading()
        if self._buf or self._head is not None:
            try:
                self._next_request()
            except Exception:
                self._server.log_exception("parsing a request")
                self._fail(400, "malformed request")
        elif self._eof:
            self._transport.close()


class SimulatorServer:
    """The simulator's HTTP server, run inside an asyncio event loop.

    ``start`` binds and returns the base URL; ``close`` stops listening and drops
    open connections. Most callers want :func:`capdisc.simulator.serve` or
    :class:`capdisc.simulator.EmbeddedSimulator` instead.
    """

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.stats = StatsSnapshot()
        self._api_key = read_api_key(config)
        self._api_key_bytes = None if self._api_key is None else self._api_key.encode()
        self._slots = _Slots(config.slots, config.queue_limit)
        self._jitter_rng = random.Random(config.seed)
        self._error_rng = random.Random(config.seed + 1)
        self._text_rng = random.Random()
        ring_rng = random.Random(config.seed + 2)
        ring = [ring_rng.randrange(len(_WORDS)) for _ in range(_RING_SIZE)]
        self._ring2 = ring + ring  # doubled so that most slices never wrap
        self._hash_key = str(config.seed).encode()
        self._id_salt = f"{random.getrandbits(32):08x}"
        self._ids = 0
        self._tool_ids = 0
        self._received = 0
        # No fault and no key: the common case skips their checks on the hot path.
        faults = config.faults
        self._plain = self._api_key_bytes is None and faults.crash_after is None and not faults.hang
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self.base_url = ""
        self._routes: dict[str, dict[str, Callable[[_Connection, _Request], Awaitable[None]]]] = {
            "/v1/chat/completions": {"POST": self._openai_chat},
            "/api/chat": {"POST": self._ollama_chat},
            "/v1/agent/run": {"POST": self._agent_run},
            "/v1/models": {"GET": self._openai_models},
            "/api/tags": {"GET": self._ollama_tags},
            "/health": {"GET": self._health},
            "/stats": {"GET": self._get_stats},
            "/stats/reset": {"POST": self._reset_stats},
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

    def _make_connection(self) -> _Connection:
        conn = _Connection(self)
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
        sys.stderr.write(f"capdisc simulator: error while {where}:\n{traceback.format_exc()}")
        sys.stderr.flush()

    # --- routing ----------------------------------------------------------------

    def forget(self, conn: _Connection) -> None:
        """A connection has closed."""
        self._connections.discard(conn)

    async def dispatch(self, conn: _Connection, request: _Request) -> None:
        """Run the handler of one request."""
        methods = self._routes.get(request.path)
        if methods is None:
            raise _HttpError(404, f"no route for {request.path}", "not_found_error")
        handler = methods.get(request.method)
        if handler is None:
            allow = ", ".join(methods)
            raise _HttpError(
                405,
                f"{request.method} is not allowed on {request.path} (allowed: {allow})",
                "invalid_request_error",
                headers=f"Allow: {allow}\r\n".encode(),
            )
        return await handler(conn, request)

    def _check_auth(self, request: _Request) -> None:
        if self._api_key_bytes is None:
            return
        scheme, _, token = request.headers.get(b"authorization", b"").partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(
            token.strip(), self._api_key_bytes
        ):
            raise _HttpError(
                401,
                "missing or invalid API key (expected 'Authorization: Bearer <key>')",
                "authentication_error",
                headers=b'WWW-Authenticate: Bearer realm="capdisc-simulator"\r\n',
            )

    async def _enter_generation(self, request: _Request) -> None:
        """Count a generation request and apply the faults that act before any answer."""
        self.stats.requests += 1
        if self._plain:
            return
        self._received += 1  # unlike stats.requests, never reset
        faults = self.config.faults
        if faults.crash_after is not None and self._received > faults.crash_after:
            sys.stderr.write(
                f"capdisc simulator: crash_after={faults.crash_after} reached, exiting abruptly\n"
            )
            sys.stderr.flush()
            os._exit(70)
        if faults.hang:
            # Cancelled when the client gives up and closes the connection.
            await asyncio.get_running_loop().create_future()
        self._check_auth(request)

    def _maybe_fail(self) -> None:
        rate = self.config.faults.error_rate
        if rate > 0 and self._error_rng.random() < rate:
            raise _HttpError(500, "simulated server error", "server_error", counter="errors")

    def _admit(self) -> asyncio.Future[None]:
        fut = self._slots.admit(asyncio.get_running_loop())
        if fut is None:
            raise _HttpError(
                503,
                f"server overloaded: {self.config.queue_limit} requests already queued",
                "overloaded_error",
                counter="rejected",
            )
        stats = self.stats
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        stats.active = self._slots.active
        stats.max_active = max(stats.max_active, stats.active)
        stats.queued = self._slots.queued
        return fut

    def _leave(self) -> None:
        self.stats.in_flight -= 1

    async def _wait_slot(self, fut: asyncio.Future[None]) -> None:
        if not fut.done():
            await self._slots.wait(fut)
        stats = self.stats
        stats.active = self._slots.active
        stats.max_active = max(stats.max_active, stats.active)
        stats.queued = self._slots.queued

    def _release_slot(self) -> None:
        self._slots.release()
        self.stats.active = self._slots.active
        self.stats.queued = self._slots.queued

    # --- the service-time model -------------------------------------------------

    def _jitter(self) -> float:
        j = self.config.jitter
        return self._jitter_rng.uniform(1.0 - j, 1.0 + j) if j > 0 else 1.0

    async def _service(
        self,
        tokens: int,
        emit: Callable[[int, int], None] | None,
        conn: _Connection | None,
    ) -> tuple[float, float, float]:
        """Hold the (already acquired) slot for one service time.

        ``emit(start, stop)`` writes tokens ``start`` to ``stop - 1`` once they are
        generated. Returns the loop times of the start, of the end of prefill and of
        the end.
        """
        loop = asyncio.get_running_loop()
        cfg = self.config
        factor = self._jitter()
        start = loop.time()
        deadline = start + cfg.prefill_ms / 1000.0 * factor
        if deadline > start:
            await asyncio.sleep(deadline - start)
        prefilled = loop.time()
        per_token = cfg.per_token_ms / 1000.0 * factor
        if per_token <= 0:
            for first in range(0, tokens, _YIELD_EVERY_TOKENS):
                if first:
                    await asyncio.sleep(0)
                if emit is not None:
                    emit(first, min(tokens, first + _YIELD_EVERY_TOKENS))
                    if conn is not None and conn.write_paused:
                        await conn.drain()
            return start, prefilled, loop.time()
        slowdown = cfg.slowdown_per_slot
        slots = self._slots
        min_sleep = _STREAM_MIN_SLEEP_S if emit is not None else _BATCH_MIN_SLEEP_S
        pending = 0  # first token generated but not yet written
        for i in range(tokens):
            # Scheduling on absolute deadlines absorbs timer overshoot and lets fast
            # tokens share one wake-up without changing the total time.
            deadline += per_token * (1.0 + slowdown * (slots.active - 1))
            ahead = deadline - loop.time()
            if ahead > min_sleep:
                if emit is not None and pending < i:
                    emit(pending, i)
                    pending = i
                    if conn is not None and conn.write_paused:
                        await conn.drain()
                        ahead = deadline - loop.time()
                if ahead > 0:
                    await asyncio.sleep(ahead)
        ahead = deadline - loop.time()
        if ahead > 0:
            await asyncio.sleep(ahead)
        if emit is not None and pending < tokens:
            emit(pending, tokens)
        return start, prefilled, loop.time()

    # --- text -------------------------------------------------------------------

    def _token_ids(self, chat: _Chat, count: int) -> list[int]:
        """Token indices of an answer: a window of a seeded ring of words.

        Deterministic when the temperature is 0 or the request names a seed: the
        window starts at a hash of the last user message, so one prompt always gets
        one answer. Otherwise it starts anywhere.
        """
        if chat.temperature == 0 or chat.seed is not None:
            text = _last_user_text(chat.messages)
            digest = hashlib.blake2b(
                f"{chat.seed}\x00{text}".encode("utf-8", "replace"),
                digest_size=8,
                key=self._hash_key,
            ).digest()
            start = int.from_bytes(digest, "big") % _RING_SIZE
        else:
            start = self._text_rng.randrange(_RING_SIZE)
        if count <= _RING_SIZE:
            return self._ring2[start : start + count]
        return [self._ring2[(start + i) % _RING_SIZE] for i in range(count)]

    def _next_id(self) -> str:
        self._ids += 1
        return f"{self._id_salt}{self._ids:010x}"

    def _next_tool_id(self) -> str:
        self._tool_ids += 1
        return f"call_{self._tool_ids}"

    # --- OpenAI /v1/chat/completions --------------------------------------------

    async def _openai_chat(self, conn: _Connection, request: _Request) -> None:
        await self._enter_generation(request)
        chat = _parse_openai(_json_object(request.body), self.config.model)
        tool = _openai_tool(chat, self.config.auto_tool_calls)
        count = self.config.output_tokens
        if chat.max_tokens is not None:
            count = min(count, chat.max_tokens)
        finish = (
            "tool_calls"
            if tool is not None
            else "length"
            if count < self.config.output_tokens
            else "stop"
        )
        ids = self._token_ids(chat, count)
        prompt_tokens = _prompt_tokens(chat.messages)
        self._maybe_fail()
        ticket = self._admit()
        try:
            if chat.stream:
                conn.start_chunked(b"text/event-stream")
                await self._wait_slot(ticket)
                try:
                    await self._openai_stream(conn, chat, ids, tool, finish, prompt_tokens)
                finally:
                    self._release_slot()
            else:
                await self._wait_slot(ticket)
                try:
                    await self._service(count, None, None)
                finally:
                    self._release_slot()
                conn.send(200, self._openai_body(chat, ids, tool, finish, prompt_tokens))
            if tool is not None:
                self.stats.tool_calls += 1
            self.stats.served += 1
        except asyncio.CancelledError:
            self.stats.cancelled += 1
            raise
        finally:
            self._leave()

    def _openai_body(
        self, chat: _Chat, ids: list[int], tool: str | None, finish: str, prompt_tokens: int
    ) -> bytes:
        message: dict[str, Any] = {"role": "assistant", "content": None}
        if tool is None:
            message["content"] = _join_text(ids)
        else:
            message["tool_calls"] = [
                {
                    "id": self._next_tool_id(),
                    "type": "function",
                    "function": {"name": tool, "arguments": json.dumps({"q": _join_text(ids)})},
                }
            ]
        body = {
            "id": f"chatcmpl-{self._next_id()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": chat.model,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(ids),
                "total_tokens": prompt_tokens + len(ids),
            },
        }
        return _dumps(body).encode()

    async def _openai_stream(
        self,
        conn: _Connection,
        chat: _Chat,
        ids: list[int],
        tool: str | None,
        finish: str,
        prompt_tokens: int,
    ) -> None:
        stats = self.stats
        meta = (
            b'data: {"id":"chatcmpl-%b","object":"chat.completion.chunk","created":%d,"model":%b,'
            % (
                self._next_id().encode(),
                int(time.time()),
                _json_string(chat.model),
            )
        )
        common = meta + b'"choices":[{"index":0,'
        emit: Callable[[int, int], None]
        if tool is None:
            emit = _content_emitter(
                conn,
                stats,
                ids,
                common + b'"delta":{"role":"assistant","content":"',
                common + b'"delta":{"content":"',
                _OPENAI_PIECES,
            )
        else:
            call_id = self._next_tool_id().encode()
            first_prefix = common + (
                b'"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,'
                b'"id":"%b","type":"function","function":{"name":%b,"arguments":"'
                % (call_id, _dumps(tool).encode())
            )
            prefix = common + b'"delta":{"tool_calls":[{"index":0,"function":{"arguments":"'
            suffix = b'"}}]},"logprobs":null,"finish_reason":null}]}\n\n\r\n'
            last = len(ids) - 1

            def emit(begin: int, end: int) -> None:
                for i in range(begin, end):
                    if i == 0:
                        piece = _OPEN_ARGS + _WORD_BYTES[ids[0]]
                    else:
                        piece = _SPACED_WORD_BYTES[ids[i]]
                    if i == last:
                        piece += _CLOSE_ARGS
                    head = first_prefix if i == 0 else prefix
                    size = len(head) + len(piece) + len(suffix) - 2
                    conn.write(b"%x\r\n%b%b%b" % (size, head, piece, suffix))
                stats.chunks_sent += end - begin

        await self._service(len(ids), emit, conn)
        tail = common + b'"delta":{},"logprobs":null,"finish_reason":"%b"}]}\n\n' % finish.encode()
        if chat.include_usage:
            usage = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(ids),
                "total_tokens": prompt_tokens + len(ids),
            }
            tail += meta + b'"choices":[],"usage":%b}\n\n' % _dumps(usage).encode()
        tail += b"data: [DONE]\n\n"
        conn.write(b"%x\r\n%b\r\n0\r\n\r\n" % (len(tail), tail))

    # --- Ollama /api/chat -------------------------------------------------------

    async def _ollama_chat(self, conn: _Connection, request: _Request) -> None:
        await self._enter_generation(request)
        received = asyncio.get_running_loop().time()
        chat = _parse_ollama(_json_object(request.body), self.config.model)
        tool = chat.tool_names[0] if chat.tool_names else None
        count = self.config.output_tokens
        if chat.max_tokens is not None:
            count = min(count, chat.max_tokens)
        done_reason = "length" if tool is None and count < self.config.output_tokens else "stop"
        ids = self._token_ids(chat, count)
        prompt_tokens = _prompt_tokens(chat.messages)
        self._maybe_fail()
        ticket = self._admit()
        now = time.time()
        created_at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + (
            f".{int(now % 1 * 1e6):06d}Z"
        )
        model_json = _json_string(chat.model)
        try:
            if chat.stream:
                conn.start_chunked(b"application/x-ndjson")
            await self._wait_slot(ticket)
            try:
                if chat.stream and tool is None:
                    timing = await self._ollama_stream(conn, ids, model_json, created_at)
                else:
                    timing = await self._service(count, None, None)
            finally:
                self._release_slot()
            message: dict[str, Any] = {"role": "assistant", "content": ""}
            if tool is not None:
                message["tool_calls"] = [
                    {"function": {"name": tool, "arguments": {"q": _join_text(ids)}}}
                ]
            elif not chat.stream:
                message["content"] = _join_text(ids)
            start, prefilled, end = timing
            final = {
                "model": chat.model,
                "created_at": created_at,
                "message": message,
                "done_reason": done_reason,
                "done": True,
                "total_duration": _ns(end - received),
                "load_duration": _ns(start - received),  # time queued for a slot
                "prompt_eval_count": prompt_tokens,
                "prompt_eval_duration": _ns(prefilled - start),
                "eval_count": len(ids),
                "eval_duration": _ns(end - prefilled),
            }
            if not chat.stream:
                conn.send(200, _dumps(final).encode())
            else:
                lines = b""
                if tool is not None:
                    # Ollama sends a parsed tool call as one message, when it is complete.
                    call = {
                        "model": chat.model,
                        "created_at": created_at,
                        "message": message,
                        "done": False,
                    }
                    lines += _dumps(call).encode() + b"\n"
                    self.stats.chunks_sent += 1
                    final["message"] = {"role": "assistant", "content": ""}
                lines += _dumps(final).encode() + b"\n"
                conn.write(b"%x\r\n%b\r\n0\r\n\r\n" % (len(lines), lines))
            if tool is not None:
                self.stats.tool_calls += 1
            self.stats.served += 1
        except asyncio.CancelledError:
            self.stats.cancelled += 1
            raise
        finally:
            self._leave()

    async def _ollama_stream(
        self, conn: _Connection, ids: list[int], model_json: bytes, created_at: str
    ) -> tuple[float, float, float]:
        # One timestamp per answer: formatting a clock per token would cost more than
        # the rest of the chunk, and no client reads it.
        prefix = b'{"model":%b,"created_at":"%b","message":{"role":"assistant","content":"' % (
            model_json,
            created_at.encode(),
        )
        emit = _content_emitter(conn, self.stats, ids, prefix, prefix, _OLLAMA_PIECES)
        return await self._service(len(ids), emit, conn)

    # --- /v1/agent/run ----------------------------------------------------------

    async def _agent_run(self, conn: _Connection, request: _Request) -> None:
        await self._enter_generation(request)
        body = _json_object(request.body)
        model = _opt_str(body, "model") or self.config.model
        prompt = body.get("prompt", "")
        if not isinstance(prompt, str):
            raise _bad("'prompt' must be a string")
        raw_calls = body.get("tool_calls")
        if not isinstance(raw_calls, int) or isinstance(raw_calls, bool):
            raise _bad("'tool_calls' must be an integer")
        calls = raw_calls
        if not 0 <= calls <= _MAX_AGENT_TOOL_CALLS:
            raise _bad(f"'tool_calls' must be an integer from 0 to {_MAX_AGENT_TOOL_CALLS}")
        max_tokens = _opt_positive_int(body, "max_tokens")
        count = self.config.output_tokens
        if max_tokens is not None:
            count = min(count, max_tokens)
        self._maybe_fail()
        chat = _Chat(
            model=model,
            messages=[{"role": "user", "content": prompt}],
            stream=False,
            max_tokens=max_tokens,
            temperature=0.0,
            seed=None,
            tool_names=[],
            tool_choice=None,
            include_usage=False,
        )
        ticket = self._admit()
        try:
            for round_no in range(calls + 1):
                # Each round queues again, as a real agent loop's next model call would.
                if round_no > 0:
                    fut = self._slots.admit(asyncio.get_running_loop())
                    if fut is None:
                        raise _HttpError(
                            503,
                            f"server overloaded during round {round_no + 1}",
                            "overloaded_error",
                            counter="rejected",
                        )
                    ticket = fut
                    self.stats.active = self._slots.active
                    self.stats.max_active = max(self.stats.max_active, self.stats.active)
                await self._wait_slot(ticket)
                try:
                    await self._service(count, None, None)
                finally:
                    self._release_slot()
                if round_no < calls:
                    self.stats.tool_calls += 1
            answer = {
                "model": model,
                "tool_calls": calls,
                "rounds": calls + 1,
                "content": _join_text(self._token_ids(chat, count)),
            }
            conn.send(200, _dumps(answer).encode())
            self.stats.served += 1
        except asyncio.CancelledError:
            self.stats.cancelled += 1
            raise
        finally:
            self._leave()

    # --- models, health, stats --------------------------------------------------

    async def _openai_models(self, conn: _Connection, request: _Request) -> None:
        self._check_auth(request)
        body = {
            "object": "list",
            "data": [
                {
                    "id": self.config.model,
                    "object": "model",
                    "created": 0,
                    "owned_by": "capdisc-simulator",
                }
            ],
        }
        conn.send(200, _dumps(body).encode())

    async def _ollama_tags(self, conn: _Connection, request: _Request) -> None:
        self._check_auth(request)
        name = self.config.model
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
        conn.send(200, _dumps(body).encode())

    async def _health(self, conn: _Connection, request: _Request) -> None:
        conn.send(200, b'{"status":"ok"}')

    async def _get_stats(self, conn: _Connection, request: _Request) -> None:
        conn.send(200, _dumps(self.stats.as_dict()).encode())

    async def _reset_stats(self, conn: _Connection, request: _Request) -> None:
        self.stats.reset()
        conn.send(200, _dumps(self.stats.as_dict()).encode())


def _content_emitter(
    conn: _Connection,
    stats: StatsSnapshot,
    ids: list[int],
    first_prefix: bytes,
    prefix: bytes,
    pieces: tuple[tuple[bytes, ...], tuple[bytes, ...]],
) -> Callable[[int, int], None]:
    """``emit(start, stop)`` for a content stream: one HTTP chunk and one write per token."""
    write, closing = conn.raw_writer()
    heads = _CHUNK_HEADS
    n_heads = len(heads)
    first_pieces, later_pieces = pieces
    # Frames per word, built on first use: an answer has a few dozen distinct words,
    # so most tokens cost one list lookup and one write.
    frames: list[bytes | None] = [None] * len(later_pieces)
    base = len(prefix) - 2  # the piece's closing CRLF is not chunk data
    join = b"".join

    def emit(start: int, stop: int) -> None:
        if start == 0 and stop > 0:
            piece = first_pieces[ids[0]]
            size = len(first_prefix) - 2 + len(piece)
            write(join((heads[size] if size < n_heads else b"%x\r\n" % size, first_prefix, piece)))
            stats.chunks_sent += 1
            start = 1
        # Checked every few chunks, not every one: once the client is gone, asyncio
        # drops our writes but warns from the fifth on.
        for block in range(start, stop, 4):
            if closing():
                return
            end = block + 4 if block + 4 < stop else stop
            for idx in ids[block:end]:
                data = frames[idx]
                if data is None:
                    piece = later_pieces[idx]
                    size = base + len(piece)
                    data = join(
                        (heads[size] if size < n_heads else b"%x\r\n" % size, prefix, piece)
                    )
                    frames[idx] = data
                write(data)
            stats.chunks_sent += end - block

    return emit


# --- request validation -------------------------------------------------------------


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


@functools.lru_cache(maxsize=64)
def _json_string(text: str) -> bytes:
    """A JSON string literal; cached because every streamed answer embeds its model."""
    return json.dumps(text).encode()


def _ns(seconds: float) -> int:
    return max(0, round(seconds * 1e9))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_object(body: bytes) -> dict[str, Any]:
    if not body:
        raise _bad("request body must be a JSON object")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise _bad("request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise _bad("request body must be a JSON object")
    return data


def _opt_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _bad(f"'{key}' must be a string")
    return value


def _opt_positive_int(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not _is_int(value) or value < 1:
        raise _bad(f"'{key}' must be a positive integer")
    return int(value)


def _opt_number(body: dict[str, Any], key: str, default: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _bad(f"'{key}' must be a number")
    if not 0 <= value <= 2:
        raise _bad(f"'{key}' must be between 0 and 2")
    return float(value)


def _opt_bool(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _bad(f"'{key}' must be true or false")
    return value


def _opt_seed(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not _is_int(value):
        raise _bad(f"'{key}' must be an integer")
    return int(value)


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' must be a non-empty list")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _bad(f"messages[{i}] must be an object")
        if not isinstance(message.get("role"), str):
            raise _bad(f"messages[{i}].role must be a string")
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise _bad(f"messages[{i}].content must be a string, a list of parts or null")
    return messages


def _tool_names(body: dict[str, Any]) -> list[str]:
    tools = body.get("tools")
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise _bad("'tools' must be a list")
    names: list[str] = []
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if (
            not isinstance(tool, dict)
            or tool.get("type", "function") != "function"
            or not isinstance(function, dict)
            or not isinstance(function.get("name"), str)
            or not function["name"]
        ):
            raise _bad(f"tools[{i}] must be {{'type': 'function', 'function': {{'name': ...}}}}")
        names.append(function["name"])
    return names


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


def _prompt_tokens(messages: list[dict[str, Any]]) -> int:
    # The usual rule of thumb: about 4 characters a token, plus a few per message.
    return sum(3 + (len(_content_text(m.get("content"))) + 3) // 4 for m in messages)


def _join_text(ids: list[int]) -> str:
    return " ".join(_WORDS[i] for i in ids)


def _parse_openai(body: dict[str, Any], default_model: str) -> _Chat:
    model = _opt_str(body, "model") or default_model
    messages = _messages(body)
    max_tokens = _opt_positive_int(body, "max_completion_tokens")
    if max_tokens is None:
        max_tokens = _opt_positive_int(body, "max_tokens")
    names = _tool_names(body)
    choice = body.get("tool_choice")
    tool_choice: str | None
    if choice is None:
        tool_choice = "auto" if names else "none"
    elif choice in ("auto", "none", "required"):
        tool_choice = str(choice)
    elif (
        isinstance(choice, dict)
        and choice.get("type") == "function"
        and isinstance(choice.get("function"), dict)
        and isinstance(choice["function"].get("name"), str)
    ):
        name = choice["function"]["name"]
        if name not in names:
            raise _bad(f"tool_choice names {name!r}, which is not in 'tools'")
        tool_choice = "=" + name
    else:
        raise _bad(
            "'tool_choice' must be 'auto', 'none', 'required' or "
            "{'type': 'function', 'function': {'name': ...}}"
        )
    if tool_choice != "none" and not names and tool_choice != "auto":
        raise _bad("'tool_choice' is only allowed when 'tools' are given")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise _bad("'stream_options' must be an object")
    include_usage = bool(options and options.get("include_usage") is True)
    return _Chat(
        model=model,
        messages=messages,
        stream=_opt_bool(body, "stream", False),
        max_tokens=max_tokens,
        temperature=_opt_number(body, "temperature", 1.0),
        seed=_opt_seed(body, "seed"),
        tool_names=names,
        tool_choice=tool_choice,
        include_usage=include_usage,
    )


def _openai_tool(chat: _Chat, auto_tool_calls: int) -> str | None:
    """The tool the answer calls, or None for a content answer."""
    if not chat.tool_names or chat.tool_choice is None or chat.tool_choice == "none":
        return None
    if chat.tool_choice.startswith("="):
        return chat.tool_choice[1:]
    if chat.tool_choice == "required":
        return chat.tool_names[0]
    results = sum(1 for m in chat.messages if m.get("role") == "tool")
    return chat.tool_names[0] if results < auto_tool_calls else None


def _parse_ollama(body: dict[str, Any], default_model: str) -> _Chat:
    model = _opt_str(body, "model") or default_model
    messages = _messages(body)
    options = body.get("options")
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise _bad("'options' must be an object")
    num_predict = options.get("num_predict")
    if num_predict is not None and not _is_int(num_predict):
        raise _bad("'options.num_predict' must be an integer")
    # Ollama reads num_predict <= 0 as "no limit".
    max_tokens = int(num_predict) if num_predict is not None and num_predict > 0 else None
    return _Chat(
        model=model,
        messages=messages,
        stream=_opt_bool(body, "stream", True),
        max_tokens=max_tokens,
        temperature=_opt_number(options, "temperature", 0.8),
        seed=_opt_seed(options, "seed"),
        tool_names=_tool_names(body),
        tool_choice=None,
        include_usage=False,
    )
