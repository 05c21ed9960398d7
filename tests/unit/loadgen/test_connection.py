"""One user's connection: reuse, the once-only retry, and answers that say not to reuse."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from capdisc.loadgen.connection import UserConnection

BODY = b'{"ok": true}'


@contextmanager
def raw_server(
    answer: bytes, *, close_after_answer: bool = False
) -> Iterator[tuple[str, list[int]]]:
    """A loopback server answering every request with ``answer``; yields (url, accepted)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.1)
    accepted: list[int] = []
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            for _ in range(100):  # bounded: a test sends a handful of requests
                data = b""
                try:
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            return
                        data += chunk
                except OSError:
                    return
                conn.sendall(answer)
                if close_after_answer:
                    return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            accepted.append(1)
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def _answer(version: bytes = b"1.1", extra: bytes = b"") -> bytes:
    return b"HTTP/%s 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s" % (
        version,
        len(BODY),
        extra,
        BODY,
    )


def _post(conn: UserConnection) -> tuple[float, int]:
    exchange = conn.post("/v1/chat/completions", b"{}")
    assert exchange.response.read() == BODY
    exchange.response.release()
    return exchange.connect_s, exchange.reconnects


def test_a_kept_connection_is_reused() -> None:
    """HTTP/1.1 with keep-alive: one connection, only the first request pays the connect."""
    with raw_server(_answer()) as (url, accepted):
        conn = UserConnection(url, timeout_s=5)
        first = _post(conn)
        later = [_post(conn) for _ in range(3)]
        conn.close()
    assert first[0] > 0 and first[1] == 0
    assert all(connect == 0 and reconnects == 0 for connect, reconnects in later)
    assert len(accepted) == 1


@pytest.mark.parametrize(
    "answer",
    [_answer(extra=b"Connection: close\r\n"), _answer(version=b"1.0")],
    ids=["close", "http10"],
)
def test_an_answer_that_says_close_is_not_reused(answer: bytes) -> None:
    """``Connection: close`` and HTTP/1.0: each request opens its own connection, no retry."""
    with raw_server(answer) as (url, accepted):
        conn = UserConnection(url, timeout_s=5)
        results = [_post(conn) for _ in range(3)]
        conn.close()
    assert all(connect > 0 and reconnects == 0 for connect, reconnects in results)
    assert len(accepted) == 3


def test_a_server_that_closes_silently_costs_a_retry_not_a_failure() -> None:
    """A server that closes after each answer without saying so: the next request is retried
    once on a new connection (or finds the close first and simply connects)."""
    with raw_server(_answer(), close_after_answer=True) as (url, accepted):
        conn = UserConnection(url, timeout_s=5)
        results = [_post(conn) for _ in range(4)]
        conn.close()
    # Each request after the first found its connection closed: before sending (a new
    # connection at once) or by the missing answer (a retry on a new one); either way
    # one new connection per request, and no error.
    assert all(connect > 0 for connect, _ in results)
    assert all(reconnects <= 1 for _, reconnects in results)
    assert len(accepted) == 4
