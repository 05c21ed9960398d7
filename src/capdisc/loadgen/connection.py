"""One user's HTTP/1.1 connection to the target: reused while the server keeps it.

Real servers close connections: llama.cpp's server after every streamed answer,
others after N requests on a connection or after an idle time. A request written on
a reused connection that the server had already closed fails before any byte of the
answer arrives (a reset, or the end of the stream where the status line should be);
the server cannot have processed it, so capdisc, like every mainstream HTTP client,
sends it once more on a new connection. That retry is not a failure: the request's
row counts it in ``reconnects``. A failure on a new connection is a real failure.
An answer with ``Connection: close`` (or an HTTP/1.0 answer) is honoured: that
connection is not reused.

The time spent opening connections (TCP, and TLS for https) is measured apart, as
``connect_ms``, so that time to first byte means the same on a server that keeps
connections and on one that closes them.

The parsing is geventhttpclient's (its response parser is C); this module only owns
the one socket of a user, through a connection pool of size one.
"""

from __future__ import annotations

import errno
import functools
import time
from typing import Any
from urllib.parse import urlsplit

from geventhttpclient.connectionpool import ConnectionPool, SSLConnectionPool
from geventhttpclient.response import HTTPConnectionClosed, HTTPSocketPoolResponse

__all__ = ["Exchange", "Response", "UserConnection"]

# Errors of writing to a connection the server has closed.
_CLOSED_WHILE_SENDING = (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED, errno.ESHUTDOWN)
_BLOCK_SIZE = 64 * 1024


class _Timed(ConnectionPool):
    """A pool that notes when it opened a socket, and how long that took."""

    opened = False
    connect_s = 0.0

    def _create_socket(self) -> Any:
        started = time.perf_counter()
        sock = super()._create_socket()
        self.connect_s += time.perf_counter() - started
        self.opened = True
        return sock


class _TimedPool(_Timed):
    pass


class _TimedSSLPool(_Timed, SSLConnectionPool):
    pass


class Response(HTTPSocketPoolResponse):
    """geventhttpclient's response, read as the bytes arrive (for streams)."""

    def read_some(self) -> bytes:
        """The body received since the last call, after one socket read at most when
        nothing is waiting; ``b""`` once the answer is complete.

        Raises ``HTTPConnectionClosed`` when the server closes before the end.
        """
        buffer = self._body_buffer
        if not buffer and not self.message_complete:
            sock = self._sock
            if sock is None:
                raise HTTPConnectionClosed("connection closed before the end of the answer")
            try:
                data = sock.recv(self.block_size)
                if not data:
                    raise HTTPConnectionClosed("connection closed before the end of the answer")
                self.feed(data)
            except BaseException:
                self.release()
                raise
        if not buffer:
            return b""
        data = bytes(buffer)
        del buffer[:]
        return data


class Exchange:
    """The answer to one request, with what it cost to reach the server."""

    __slots__ = ("connect_s", "reconnects", "response")

    def __init__(self, response: Response, connect_s: float, reconnects: int):
        self.response = response
        self.connect_s = connect_s
        self.reconnects = reconnects


class UserConnection:
    """One connection (at most) to ``base_url``, for one user's requests in turn."""

    def __init__(
        self, base_url: str, *, timeout_s: float, headers: dict[str, str] | None = None
    ) -> None:
        url = urlsplit(base_url)
        secure = url.scheme == "https"
        port = url.port or (443 if secure else 80)
        host = url.hostname or "127.0.0.1"
        pool_class = _TimedSSLPool if secure else _TimedPool
        self._new_pool = functools.partial(
            pool_class,
            host,
            port,
            host,
            port,
            size=1,
            connection_timeout=min(timeout_s, 10.0),
            network_timeout=timeout_s,
        )
        self._pool: _Timed = self._new_pool()
        self._base_path = url.path.rstrip("/")
        default_port = port == (443 if secure else 80)
        host_header = url.netloc.rsplit("@", 1)[-1] if not default_port else host
        fixed = {"Host": host_header, "Content-Type": "application/json", **(headers or {})}
        self._fixed_head = "".join(f"{k}: {v}\r\n" for k, v in fixed.items())
        self._heads: dict[str, str] = {}

    def _request(self, path: str, body: bytes) -> bytes:
        start = self._heads.get(path)
        if start is None:
            start = self._heads[path] = (
                f"POST {self._base_path}{path} HTTP/1.1\r\n{self._fixed_head}"
            )
        return (start + f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1") + body

    def post(self, path: str, body: bytes) -> Exchange:
        """Send one POST and read the answer's headers (the body is read by the caller).

        Raises what the socket or the parser raised when the request failed on a new
        connection, or failed again after one retry.
        """
        request = self._request(path, body)
        pool = self._pool
        pool.connect_s = 0.0
        reconnects = 0
        while True:
            pool.opened = False
            sock = pool.get_socket()
            fresh = pool.opened
            try:
                sock.sendall(request)
            except OSError as exc:
                pool.release_socket(sock)
                if fresh or reconnects or exc.errno not in _CLOSED_WHILE_SENDING:
                    raise
                reconnects += 1
                continue
            try:
                response = Response(sock, pool, block_size=_BLOCK_SIZE, method="POST")
            except HTTPConnectionClosed:
                # Closed before the first byte of the answer (the response released
                # the socket): on a reused connection, the server never saw it.
                if fresh or reconnects:
                    raise
                reconnects += 1
                continue
            return Exchange(response, pool.connect_s, reconnects)

    def discard(self) -> None:
        """Drop the connection (after a timeout or an answer left half read).

        A half-read answer may still hold the old pool's only socket: a new pool
        never waits for it.
        """
        old, self._pool = self._pool, self._new_pool()
        old.close()

    def close(self) -> None:
        """Close the connection for good."""
        self._pool.close()
