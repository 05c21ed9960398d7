"""Answers other than 200: an HTTP status, a message, and the counter it bumps.

Any code below a connection (a handler, a validator, the capacity model, a fault)
raises :class:`HttpError`; the connection turns it into a JSON error body, or into a
reset when part of a streamed answer is already on the wire.
"""

from __future__ import annotations

import json


class HttpError(Exception):
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


def bad(message: str) -> HttpError:
    """A 400 for a request body that does not say what the API expects."""
    return HttpError(400, message, "invalid_request_error")


def error_body(message: str, kind: str) -> bytes:
    """The JSON body of an error answer, in the OpenAI shape every client here reads."""
    return json.dumps({"error": {"message": message, "type": kind}}, separators=(",", ":")).encode()
