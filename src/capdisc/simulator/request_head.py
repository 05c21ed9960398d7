"""Parsing the head of an HTTP/1.1 request: request line, headers and body framing.

A pure function over the connection's buffer, so that the connection itself only
decides when to parse and what to do with the result. Only what capdisc's clients
send is accepted: ``Content-Length`` bodies (no chunked uploads), HTTP/1.1 and 1.0.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_BODY_BYTES = 8 * 1024 * 1024
"""Largest request body accepted; beyond it the answer is 413."""

MAX_HEAD_BYTES = 64 * 1024
"""Largest request head accepted; beyond it the answer is 431."""


@dataclass(slots=True)
class Head:
    """A parsed request head; its body (``length`` bytes) follows in the buffer."""

    method: str
    path: str
    headers: dict[bytes, bytes]  # lower-case names
    length: int
    keep_alive: bool
    expect_continue: bool


class HeadError(Exception):
    """A head that cannot be answered normally: the rest of the byte stream is unusable."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse_head(buf: bytearray) -> Head | None:
    """Take one request head off the front of ``buf``; None while it is incomplete.

    Raises :class:`HeadError` for a malformed or oversized head.
    """
    # RFC 9112 asks servers to ignore empty lines before a request line.
    while buf[:2] == b"\r\n":
        del buf[:2]
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > MAX_HEAD_BYTES:
            raise HeadError(431, "request headers too large")
        return None
    if end > MAX_HEAD_BYTES:
        raise HeadError(431, "request headers too large")
    lines = bytes(buf[:end]).split(b"\r\n")
    del buf[: end + 4]
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[0].isupper():
        raise HeadError(400, "malformed request line")
    method, target, version = parts
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise HeadError(400, "unsupported HTTP version")
    if target.startswith((b"http://", b"https://")):
        slash = target.find(b"/", target.find(b"//") + 2)
        target = target[slash:] if slash >= 0 else b"/"
    if not target.startswith(b"/"):
        raise HeadError(400, "malformed request target")
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        colon = line.find(b":")
        name = line[:colon]
        if colon <= 0 or b" " in name or b"\t" in name:
            raise HeadError(400, "malformed header line")
        key = name.lower()
        value = line[colon + 1 :].strip()
        if key in headers:
            if key == b"content-length" and headers[key] != value:
                raise HeadError(400, "conflicting Content-Length headers")
            headers[key] = headers[key] + b", " + value
        else:
            headers[key] = value
    if b"transfer-encoding" in headers:
        raise HeadError(411, "chunked request bodies are not supported; send Content-Length")
    raw_length = headers.get(b"content-length", b"0").split(b",")[0].strip()
    if not raw_length.isdigit():
        raise HeadError(400, "invalid Content-Length")
    length = int(raw_length)
    if length > MAX_BODY_BYTES:
        raise HeadError(413, f"request body larger than {MAX_BODY_BYTES} bytes")
    # HTTP/1.0 clients get one answer per connection: simpler than echoing their
    # Keep-Alive dialect, and none of the clients capdisc drives speak 1.0.
    connection = headers.get(b"connection")
    keep_alive = version == b"HTTP/1.1" and (
        connection is None or b"close" not in connection.lower()
    )
    query = target.find(b"?")
    return Head(
        method=method.decode(),
        path=(target if query < 0 else target[:query]).decode("latin-1"),
        headers=headers,
        length=length,
        keep_alive=keep_alive,
        expect_continue=headers.get(b"expect", b"").lower() == b"100-continue",
    )
