"""CPU per streamed chunk: capdisc's simulator against a minimal raw asyncio server.

The simulator shares the machine with the load generator, so it has to stay cheap:
the target is at most 1.5x the CPU per SSE chunk of the least a Python asyncio server
can do (a hard-coded answer, written one chunk at a time). Both servers run as
subprocesses, are driven by the same asyncio client in this process, in alternating
rounds A B A B so that machine noise spreads over both, and are measured by their own
CPU time (utime + stime from /proc/PID/stat), so the client's cost is not counted.

    .venv/bin/python benchmarks/simulator.py [--chunks 200] [--streams 800]
                                             [--concurrency 16] [--rounds 8] [--no-pin]

Linux only (/proc). Prints each server's CPU per chunk, the ratio, and
"target <= 1.5: PASS" or "FAIL" (exit code 1 on FAIL).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_RATIO = 1.5
SIM = "capdisc simulator"
BASE = "raw asyncio baseline"
_TERMINATOR = b"\r\n0\r\n\r\n"
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


# --- the baseline server (runs in a subprocess: --baseline-server) -------------------


def _baseline_chunks(chunks: int) -> tuple[bytes, list[bytes], bytes]:
    """Headers, one framed chunk per token, and the tail: the same bytes as the simulator."""
    words = [b"interval", b" within", b" percentile", b" and", b" back", b" steady"]
    meta = (
        b'data: {"id":"chatcmpl-0000000000000000001","object":"chat.completion.chunk",'
        b'"created":1700000000,"model":"sim-llm","choices":[{"index":0,'
    )
    frames = []
    for i in range(chunks):
        event = (
            meta
            + b'"delta":{"content":"%b"},"logprobs":null,"finish_reason":null}]}\n\n'
            % (words[i % len(words)])
        )
        frames.append(b"%x\r\n%b\r\n" % (len(event), event))
    tail = meta + b'"delta":{},"logprobs":null,"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
    headers = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    return headers, frames, b"%x\r\n%b\r\n0\r\n\r\n" % (len(tail), tail)


class BaselineProtocol(asyncio.Protocol):
    """Reads a request with a Content-Length body, writes the canned stream."""

    def __init__(self, headers: bytes, frames: list[bytes], tail: bytes) -> None:
        self.headers, self.frames, self.tail = headers, frames, tail
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).lower()
            at = head.find(b"content-length:")
            length = 0
            if at >= 0:
                eol = head.find(b"\r\n", at)
                length = int(head[at + 15 : eol if eol >= 0 else None])
            if len(self.buf) < end + 4 + length:
                return
            del self.buf[: end + 4 + length]
            self.answer(head)

    def answer(self, head: bytes) -> None:
        """Answer one request (its head, lower-cased): the canned stream."""
        assert self.transport is not None
        write = self.transport.write
        write(self.headers)
        for frame in self.frames:
            write(frame)
        write(self.tail)


def run_baseline_server(chunks: int) -> None:
    """Serve the canned stream on a free loopback port until killed."""
    headers, frames, tail = _baseline_chunks(chunks)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: BaselineProtocol(headers, frames, tail), "127.0.0.1", 0, backlog=2048
        )
        print(f"listening on {server.sockets[0].getsockname()[1]}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# --- the client ---------------------------------------------------------------------


class _ClientProtocol(asyncio.Protocol):
    """One keep-alive connection that sends a request and waits for the whole stream."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.done: asyncio.Future[bytes] | None = None
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.buf.endswith(_TERMINATOR) and self.done is not None and not self.done.done():
            self.done.set_result(bytes(self.buf))
            self.buf.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError("server closed the connection"))

    async def request(self, payload: bytes) -> bytes:
        self.done = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        self.transport.write(payload)
        return await asyncio.wait_for(self.done, 30)


async def _drive(port: int, payload: bytes, streams: int, concurrency: int) -> tuple[int, int]:
    """Run ``streams`` requests over ``concurrency`` connections; return (chunks, bytes)."""
    loop = asyncio.get_running_loop()
    remaining = [streams]
    totals = [0, 0]

    async def worker() -> None:
        _, proto = await loop.create_connection(_ClientProtocol, "127.0.0.1", port)
        try:
            while remaining[0] > 0:
                remaining[0] -= 1
                body = await proto.request(payload)
                totals[0] += body.count(b"data: {") - 1  # the final finish_reason event
                totals[1] += len(body)
        finally:
            assert proto.transport is not None
            proto.transport.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return totals[0], totals[1]


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    # After the command name: state is field 3, utime 14 and stime 15 (1-based).
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def _payload(chunks: int) -> bytes:
    body = json.dumps(
        {
            "model": "sim-llm",
            "messages": [{"role": "user", "content": "Explain constant pacing in load tests."}],
            "stream": True,
            "max_tokens": chunks,
            "temperature": 0,
        }
    ).encode()
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)
    )


def _start_baseline(chunks: int) -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--baseline-server", "--chunks", str(chunks)],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if not line.startswith("listening on "):
        proc.kill()
        raise SystemExit(f"baseline server did not start: {line!r}")
    return proc, int(line.split()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=200, help="SSE chunks per stream")
    parser.add_argument("--streams", type=int, default=800, help="streams per round")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent connections")
    parser.add_argument("--rounds", type=int, default=8, help="rounds per server (A B A B ...)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin client and servers")
    parser.add_argument("--baseline-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_server:
        run_baseline_server(args.chunks)
        return 0
    if not Path("/proc/self/stat").exists():
        raise SystemExit("this benchmark reads /proc/PID/stat: Linux only")

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from capdisc.simulator import EmbeddedSimulator, SimulatorConfig

    config = SimulatorConfig(
        prefill_ms=0,
        per_token_ms=0,
        output_tokens=args.chunks,
        slots=max(64, args.concurrency),
        jitter=0,
    )
    payload = _payload(args.chunks)
    baseline, baseline_port = _start_baseline(args.chunks)
    started = time.monotonic()
    pair_ratios: list[float] = []
    try:
        with EmbeddedSimulator(config) as sim:
            assert sim.pid is not None
            sim_port = int(sim.base_url.rsplit(":", 1)[1])
            servers = {
                SIM: (sim.pid, sim_port),
                BASE: (baseline.pid, baseline_port),
            }
            _pin(servers, enabled=not args.no_pin)
            cpu = dict.fromkeys(servers, 0.0)
            chunks = dict.fromkeys(servers, 0)
            sizes = dict.fromkeys(servers, 0)
            # Warm-up: imports, first connections and caches are not what we measure.
            for _, port in servers.values():
                asyncio.run(_drive(port, payload, max(1, args.streams // 10), args.concurrency))
            for round_no in range(args.rounds):
                per_chunk: dict[str, float] = {}
                for name, (pid, port) in servers.items():
                    before = _cpu_seconds(pid)
                    n_chunks, n_bytes = asyncio.run(
                        _drive(port, payload, args.streams, args.concurrency)
                    )
                    spent = _cpu_seconds(pid) - before
                    cpu[name] += spent
                    chunks[name] += n_chunks
                    sizes[name] += n_bytes
                    per_chunk[name] = spent / max(1, n_chunks) * 1e6
                pair_ratios.append(per_chunk[SIM] / max(per_chunk[BASE], 1e-9))
                print(
                    f"round {round_no + 1}: simulator {per_chunk[SIM]:.2f} us/chunk, "
                    f"baseline {per_chunk[BASE]:.2f} us/chunk, ratio {pair_ratios[-1]:.2f}",
                    file=sys.stderr,
                )
    finally:
        baseline.kill()
        baseline.wait()

    for name in cpu:
        print(
            f"{name:22s} {cpu[name] / chunks[name] * 1e6:7.2f} us CPU/chunk  "
            f"({chunks[name]} chunks, {sizes[name] / max(1, chunks[name]):.0f} B/chunk on the "
            f"wire, {cpu[name]:.2f} s CPU)"
        )
    if chunks[SIM] != chunks[BASE]:
        print(f"warning: chunk counts differ ({chunks[SIM]} vs {chunks[BASE]})")
    # The median of per-round ratios: each A/B pair ran back to back, so a burst of
    # load from elsewhere on the machine skews one pair, not the verdict.
    ratio = statistics.median(pair_ratios)
    overall = (cpu[SIM] / chunks[SIM]) / (cpu[BASE] / chunks[BASE])
    verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
    print(
        f"ratio simulator/baseline: {ratio:.2f} (median of {len(pair_ratios)} rounds; "
        f"totals {overall:.2f}; {time.monotonic() - started:.1f} s)"
    )
    print(f"target <= {TARGET_RATIO}: {verdict}")
    return 0 if verdict == "PASS" else 1


def _pin(servers: dict[str, tuple[int, int]], *, enabled: bool) -> None:
    """Client on the last CPU, servers on the others: the same placement for both."""
    if not enabled or not hasattr(os, "sched_setaffinity"):
        return
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return
    os.sched_setaffinity(0, {cpus[-1]})
    for pid, _ in servers.values():
        os.sched_setaffinity(pid, set(cpus[:-1]))


if __name__ == "__main__":
    sys.exit(main())
