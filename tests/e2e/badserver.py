"""A deliberately broken HTTP server for tests: it answers capdisc's preflight ("ping")
properly, and every other request in one chosen bad way. Threaded, loopback only,
stopped by the test.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

GOOD_JSON = json.dumps(
    {"choices": [{"message": {"role": "assistant", "content": "ok"}}], "usage": {}}
).encode()


def _token(text: bytes) -> bytes:
    return b'{"choices":[{"delta":{"content":"%s"}}]}' % text


MODES: dict[str, bytes] = {
    # A valid SSE stream of 5 content events with CRLF line endings: a success.
    "crlf": b"".join(b"data: %s\r\n\r\n" % _token(b"t%d" % i) for i in range(5))
    + b"data: [DONE]\r\n\r\n",
    # Random bytes, no events.
    "garbage": bytes(range(256)) * 4,
    # Two content events, then the line is cut.
    "partial": b'data: %s\n\ndata: %s\n\ndata: {"x' % (_token(b"a"), _token(b"b")),
    # Invalid UTF-8 inside the content text: the events still count (bytes, not text).
    "bad_utf8": b"".join(b"data: %s\n\n" % _token(b"\xff\xfe\xfa%d" % i) for i in range(4)),
    # A single 2 MB content event.
    "huge_line": b"data: " + _token(b"x" * 2_000_000) + b"\n\n",
    # HTTP 200 carrying an error object.
    "error_json": b'{"error": {"message": "model overloaded"}}',
    # A 200 stream with an error event after two tokens.
    "error_event": b'data: %s\n\ndata: %s\n\ndata: {"error": {"message": "out of memory"}}\n\n'
    % (_token(b"a"), _token(b"b")),
    # Only a role event, the finish event and [DONE]: no token at all.
    "zero_tokens": b'data: {"choices":[{"delta":{"role":"assistant","content":null}}]}\n\n'
    b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n',
}


def _response(body: bytes, content_type: str = "text/event-stream") -> bytes:
    head = (
        f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    return head + body


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


@contextmanager
def bad_server(mode: str) -> Iterator[str]:
    """Serve ``mode`` on a free loopback port; yields the base URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.2)
    stop = threading.Event()

    def handle(conn: socket.socket) -> None:
        with conn:
            try:
                request = _read_request(conn)
                if not request:
                    return
                if b'"content":"ping"' in request and b'"stream":true' in request:
                    conn.sendall(_response(MODES["crlf"]))
                elif b'"content":"ping"' in request:
                    conn.sendall(_response(GOOD_JSON, "application/json"))
                elif mode == "close":
                    return
                elif mode == "hang":
                    stop.wait(30)  # accept, read, never answer
                    return
                elif mode == "error_json":
                    conn.sendall(_response(MODES[mode], "application/json"))
                elif mode == "wrong_type":
                    conn.sendall(_response(GOOD_JSON, "text/html"))
                else:
                    conn.sendall(_response(MODES[mode]))
            except OSError:
                pass

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=2)
        listener.close()
