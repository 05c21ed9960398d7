"""HTTP/1.1 on a bare ``asyncio.Protocol``: one client connection of the simulator.

Why hand-written HTTP on ``asyncio.Protocol`` rather than a web framework: the
simulator shares the machine with the load generator, so every microsecond it spends
per streamed token is CPU that the load generator cannot use. A framework stack
(routing, ASGI events, per-event JSON) costs several times a raw server per chunk;
here each chunk is one pre-built byte string and one ``transport.write``.
``benchmarks/simulator.py`` keeps that honest.

A :class:`ServerConnection` reads one request at a time (pipelined ones wait in its buffer),
runs the handler the server routes it to as a task, and decides afterwards whether
the connection stays open. Answers are complete (``send``, with Content-Length) or
chunked (``start_chunked``, then ``write`` of ready-framed chunks).
"""

from __future__ import annotations

import asyncio
import sys
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from capdisc.simulator.config import ConnectionConfig
from capdisc.simulator.errors import HttpError, error_body
from capdisc.simulator.faults import Faults
from capdisc.simulator.request_head import (
    MAX_BODY_BYTES,
    MAX_HEAD_BYTES,
    Head,
    HeadError,
    parse_head,
)
from capdisc.simulator.stats import StatsSnapshot

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


@dataclass(slots=True)
class Request:
    """One complete request, as a handler sees it."""

    method: str
    path: str
    headers: dict[bytes, bytes]  # lower-case names
    body: bytes
    keep_alive: bool


Handler = Callable[["ServerConnection", Request], Awaitable[None]]
"""Answers one request on its connection, or raises :class:`HttpError`."""


class Site(Protocol):
    """What a connection needs from the server that accepted it."""

    @property
    def stats(self) -> StatsSnapshot: ...

    @property
    def closing(self) -> ConnectionConfig: ...

    @property
    def faults(self) -> Faults: ...

    async def dispatch(self, conn: ServerConnection, request: Request) -> None: ...

    def forget(self, conn: ServerConnection) -> None: ...


def log_exception(where: str) -> None:
    """A bug in the simulator: report it on stderr and keep serving."""
    sys.stderr.write(f"capdisc simulator: error while {where}:\n{traceback.format_exc()}")
    sys.stderr.flush()


class ServerConnection(asyncio.Protocol):
    """One client connection: parses requests one at a time and runs their handler."""

    def __init__(self, site: Site) -> None:
        self._site = site
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._head: Head | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._eof = False
        self._refused = False
        self._reading_paused = False
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self.keep_alive = True
        self.response_started = False
        # The closing policy's state: answers given, whether the last was streamed,
        # a close already decided (requests arriving meanwhile are dropped), idle timer.
        self._answered = 0
        self._streamed = False
        self._closing = False
        self._idle: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        stats = self._site.stats
        if self._site.faults.refuses_connection(stats.open_connections):
            self._refused = True
            stats.connections_refused += 1
            transport.close()
            return
        stats.connections += 1
        stats.open_connections += 1

    def data_received(self, data: bytes) -> None:
        if self._closed or self._refused:
            return
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if self._closing:
            self._site.stats.dropped += data.count(b" HTTP/1.")
            return
        self._buf += data
        if self._task is None:
            try:
                self._next_request()
            except Exception:  # never let one client's bytes take the server down
                log_exception("parsing a request")
                self._fail(400, "malformed request")
        elif len(self._buf) > MAX_BODY_BYTES + MAX_HEAD_BYTES and not self._reading_paused:
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
            self._site.stats.open_connections -= 1
        if self._idle is not None:
            self._idle.cancel()
        if self._task is not None:
            self._task.cancel()
        self._wake_drain()
        self._site.forget(self)

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
        self._streamed = True
        self.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\n%s\r\n" % (content_type, connection)
        )

    def abort(self) -> None:
        """Drop the connection at once (the client sees a reset)."""
        if self._transport is not None:
            self._transport.abort()

    # --- reading requests -------------------------------------------------------

    def _fail(self, status: int, message: str) -> None:
        """Answer a framing error and close: the rest of the byte stream is unusable."""
        self._site.stats.bad_requests += 1
        self.keep_alive = False
        self.send(status, error_body(message, "invalid_request_error"))
        self._buf.clear()
        self._head = None
        if self._transport is not None:
            self._transport.close()

    def _next_request(self) -> None:
        if self._closed or self._transport is None or self._transport.is_closing():
            return
        if self._head is None:
            try:
                self._head = parse_head(self._buf)
            except HeadError as exc:
                self._fail(exc.status, exc.message)
                return
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
        request = Request(head.method, head.path, head.headers, body, head.keep_alive)
        self._task = asyncio.get_running_loop().create_task(self._run(request))
        self._task.add_done_callback(self._request_done)

    # --- running handlers -------------------------------------------------------

    async def _run(self, request: Request) -> None:
        self.response_started = False
        try:
            await self._site.dispatch(self, request)
        except HttpError as exc:
            if exc.counter is not None:
                stats = self._site.stats
                setattr(stats, exc.counter, getattr(stats, exc.counter) + 1)
            if self.response_started:
                self.abort()
                return
            if exc.close:
                self.keep_alive = False
            self.send(exc.status, error_body(exc.message, exc.kind), extra_headers=exc.headers)
        except Exception:
            log_exception(f"{request.method} {request.path}")
            if self.response_started:
                # Half a response is on the wire: only closing tells the client.
                self.abort()
            else:
                self.keep_alive = False
                self.send(500, error_body("internal simulator error", "internal_error"))

    def _request_done(self, task: asyncio.Task[None]) -> None:
        # Whether the connection outlives its request is decided here, once the
        # answer is complete: the one place a closing policy belongs.
        self._task = None
        if self._closed or self._transport is None:
            return
        if not self.keep_alive:
            self._transport.close()
            return
        self._answered += 1
        policy = self._site.closing
        streamed, self._streamed = self._streamed, False
        if (policy.close_after_stream and streamed) or (
            policy.requests_per_connection is not None
            and self._answered >= policy.requests_per_connection
        ):
            self._close_soon(policy.close_delay_ms / 1000.0)
            return
        if self._reading_paused:
            self._reading_paused = False
            self._transport.resume_reading()
        if self._buf or self._head is not None:
            try:
                self._next_request()
            except Exception:
                log_exception("parsing a request")
                self._fail(400, "malformed request")
        elif self._eof:
            self._transport.close()
        elif policy.idle_timeout_ms is not None:
            loop = asyncio.get_running_loop()
            self._idle = loop.call_later(policy.idle_timeout_ms / 1000.0, self._close_soon, 0.0)

    def _close_soon(self, delay_s: float) -> None:
        """Close silently after ``delay_s``; what the client sends meanwhile is dropped."""
        self._closing = True
        self._idle = None
        if self._buf:  # a request already waiting: it is dropped with the connection
            self._site.stats.dropped += bytes(self._buf).count(b" HTTP/1.")
            self._buf.clear()
            self._head = None
        if self._transport is None:
            return
        if delay_s <= 0:
            self._transport.close()
        else:
            asyncio.get_running_loop().call_later(delay_s, self._transport.close)
