"""A cheap server of plain text SSE events, as a gateway's ``EventSourceResponse`` sends them.

``benchmarks/loadgen.py --part http`` measures capdisc's ``api = "http"`` client with
``chunk_rule = "any"`` on plain text events (``data: word\\r\\n\\r\\n``, sse-starlette's
framing). A FastAPI + sse-starlette gateway costs several times a minimal server per
chunk and stalls now and then (LOCUST_NOTES), so it would be the bottleneck; this
server writes the same bytes from plain asyncio: after ``prefill_ms``, one event per
``per_token_ms`` tick to every open stream (one timer for all of them), then
``data: [DONE]``. Any POST streams; ``GET /stats`` answers ``{"chunks_sent": N}``.

    .venv/bin/python benchmarks/plain_events.py [--tokens 200] [--per-token-ms 1]
        [--prefill-ms 5]        # prints "listening on PORT" (loopback only)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

# The request reader of the simulator benchmark's raw asyncio baseline.
from simulator import BaselineProtocol

_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
_WORDS = [b"interval", b" within", b" percentile", b" and", b" back", b" steady"]


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


_EVENTS = [_chunk(b"data: %b\r\n\r\n" % w) for w in _WORDS]
_TAIL = _chunk(b"data: [DONE]\r\n\r\n") + b"0\r\n\r\n"


class _Stream:
    __slots__ = ("due", "left", "transport")

    def __init__(self, transport: asyncio.Transport, due: float, left: int) -> None:
        self.transport, self.due, self.left = transport, due, left


class PlainEvents:
    """The streams in flight and the one ticker that writes their events."""

    def __init__(self, tokens: int, per_token_s: float, prefill_s: float) -> None:
        self.tokens, self.per_token_s, self.prefill_s = tokens, per_token_s, prefill_s
        self.streams: list[_Stream] = []
        self.sent = 0

    def start(self, transport: asyncio.Transport) -> None:
        transport.write(_HEAD)
        self.streams.append(_Stream(transport, time.monotonic() + self.prefill_s, self.tokens))

    async def tick(self) -> None:
        while True:
            await asyncio.sleep(self.per_token_s)
            now = time.monotonic()
            keep = []
            for stream in self.streams:
                if stream.transport.is_closing():
                    continue
                if stream.due <= now:
                    stream.left -= 1
                    stream.transport.write(_EVENTS[stream.left % len(_EVENTS)])
                    self.sent += 1
                    if stream.left <= 0:
                        stream.transport.write(_TAIL)
                        continue
                keep.append(stream)
            self.streams = keep


class _Protocol(BaselineProtocol):
    """Reads requests as the simulator benchmark's baseline does; streams plain events."""

    def __init__(self, server: PlainEvents) -> None:
        super().__init__(b"", [], b"")
        self.server = server

    def answer(self, head: bytes) -> None:
        assert self.transport is not None
        if head.startswith(b"get /stats"):
            body = json.dumps({"chunks_sent": self.server.sent}).encode()
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
            )
        else:
            self.server.start(self.transport)


class PlainEventsProcess:
    """This server in a subprocess, as benchmarks/loadgen.py needs it: pid, base_url, stats()."""

    def __init__(self, tokens: int, per_token_ms: float, prefill_ms: float) -> None:
        self._cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            *("--tokens", str(tokens), "--per-token-ms", str(per_token_ms)),
            *("--prefill-ms", str(prefill_ms)),
        ]
        self.base_url = ""
        self.pid = 0

    def __enter__(self) -> PlainEventsProcess:
        self._proc = subprocess.Popen(self._cmd, stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()  # bounded: the server prints it at once or exits
        if not line.startswith("listening on "):
            self._proc.kill()
            raise RuntimeError(f"plain_events.py did not start: {line!r}")
        self.base_url = f"http://127.0.0.1:{int(line.split()[-1])}"
        self.pid = self._proc.pid
        return self

    def __exit__(self, *exc: object) -> None:
        self._proc.terminate()
        self._proc.wait(timeout=10)

    def stats(self) -> dict[str, int]:
        import httpx

        with httpx.Client(timeout=10, trust_env=False) as client:
            data: dict[str, int] = client.get(self.base_url + "/stats").json()
        return data


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--per-token-ms", type=float, default=1.0)
    parser.add_argument("--prefill-ms", type=float, default=5.0)
    args = parser.parse_args()
    server = PlainEvents(args.tokens, args.per_token_ms / 1000.0, args.prefill_ms / 1000.0)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        listener = await loop.create_server(lambda: _Protocol(server), "127.0.0.1", 0, backlog=2048)
        print(f"listening on {listener.sockets[0].getsockname()[1]}", flush=True)
        await server.tick()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
