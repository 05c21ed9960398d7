"""Running the simulator: in the foreground, or as a child process of a load test.

:func:`serve` runs it in the calling process until SIGINT/SIGTERM (``capdisc
simulator serve``). :class:`EmbeddedSimulator` starts it as a separate Python
process for the length of a run. It must never share a process with the load
generator: Locust monkey-patches the standard library with gevent, and the
simulator's asyncio loop would then fight Locust's users for one core.

The child announces its real address with one line on stdout (``READY_PREFIX`` +
URL), which is how a free port (``port=0``) becomes known to the parent.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from capdisc.errors import TargetUnreachable, UsageError
from capdisc.simulator.config import SimulatorConfig
from capdisc.simulator.server import SimulatorServer

__all__ = ["READY_PREFIX", "EmbeddedSimulator", "SimulatorStartError", "serve"]

READY_PREFIX = "capdisc simulator listening on "
"""Start of the line the simulator prints on stdout once it accepts connections."""

_READY_RE = re.compile(re.escape(READY_PREFIX) + r"(http://\S+)")
_STOP_GRACE_S = 5.0
_PARENT_POLL_S = 1.0


class SimulatorStartError(TargetUnreachable):
    """The embedded simulator did not come up (exit 3: no load was sent)."""


def serve(
    config: SimulatorConfig,
    host: str = "127.0.0.1",
    port: int = 0,
    on_ready: Callable[[str], None] | None = None,
    *,
    parent_pid: int | None = None,
) -> None:
    """Run the simulator in this process until SIGINT or SIGTERM, then return.

    ``on_ready(base_url)`` is called once the socket accepts connections. With
    ``parent_pid``, the simulator also stops when that process is no longer its
    parent, so an embedded simulator never outlives a killed load test.
    Raises ``UsageError`` when the address cannot be bound or the API key variable
    named by ``config.api_key_env`` is unset.
    """
    try:
        server = SimulatorServer(config)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    _raise_open_files_limit()
    # A Ctrl+C that lands before the loop's own signal handlers are installed.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(server, host, port, on_ready, parent_pid))


async def _serve(
    server: SimulatorServer,
    host: str,
    port: int,
    on_ready: Callable[[str], None] | None,
    parent_pid: int | None,
) -> None:
    try:
        url = await server.start(host, port)
    except OSError as exc:
        # asyncio wraps the errno text in a long sentence; the short one is clearer.
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise UsageError(f"cannot listen on {host}:{port}: {reason}") from None
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (ValueError, RuntimeError, NotImplementedError):
            pass  # not the main thread: the caller owns signals
    watchdog = None
    if parent_pid is not None:
        watchdog = loop.create_task(_watch_parent(parent_pid, stop))
    try:
        if on_ready is not None:
            on_ready(url)
        await stop.wait()
    finally:
        if watchdog is not None:
            watchdog.cancel()
        for sig in installed:
            loop.remove_signal_handler(sig)
        await server.close()


async def _watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await asyncio.sleep(_PARENT_POLL_S)
        if os.getppid() != parent_pid:
            stop.set()


def _raise_open_files_limit() -> None:
    # Every simulated user holds a connection; 1024 descriptors is a common default.
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
        if soft != resource.RLIM_INFINITY and soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ImportError, ValueError, OSError):
        pass


def _package_root() -> str:
    return str(Path(__file__).resolve().parents[2])


def _stop_process(proc: subprocess.Popen[bytes], *files: IO[Any]) -> None:
    """SIGTERM, a grace period, then SIGKILL; close our ends of its pipes."""
    try:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(_STOP_GRACE_S)
    finally:
        for f in files:
            with contextlib.suppress(OSError):
                f.close()


class EmbeddedSimulator:
    """The simulator as a child process, for the length of a ``with`` block.

    >>> with EmbeddedSimulator(SimulatorConfig(slots=2)) as sim:  # doctest: +SKIP
    ...     print(sim.base_url, sim.stats()["served"])

    ``start`` waits up to ``startup_timeout`` seconds for the child's ready line and
    raises :class:`SimulatorStartError` (with the child's last error line) if it does
    not come. The child runs in its own session, so a Ctrl+C meant for the load test
    does not kill the target while streams still finish; it still exits when its
    parent dies.
    """

    def __init__(
        self,
        config: SimulatorConfig,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        startup_timeout: float = 15.0,
    ) -> None:
        self.config = config
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._base_url: str | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    # --- lifecycle --------------------------------------------------------------

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def command(self) -> list[str]:
        """The child's command line (the config travels as JSON; it holds no secrets)."""
        return [
            sys.executable,
            "-m",
            "capdisc.simulator",
            "--config-json",
            self.config.model_dump_json(),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--parent-pid",
            str(os.getpid()),
        ]

    def start(self) -> Self:
        """Start the child and wait for its ready line; idempotent while it runs."""
        if self._proc is not None and self._proc.poll() is None:
            return self
        self.stop()  # a previous child that died: release its pipes first
        if self.config.api_key_env is not None and not os.environ.get(self.config.api_key_env):
            raise UsageError(
                f"simulator.api_key_env names {self.config.api_key_env!r}, "
                "but that environment variable is not set"
            )
        env = dict(os.environ)
        # Works from a source checkout too, where capdisc is importable only via sys.path.
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_package_root(), env.get("PYTHONPATH", "")) if p
        )
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 -- lives as long as the child
        try:
            proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            self._stderr.close()
            raise SimulatorStartError(f"cannot start the simulator process: {exc}") from None
        assert proc.stdout is not None
        self._proc = proc
        self._finalizer = weakref.finalize(self, _stop_process, proc, proc.stdout, self._stderr)
        try:
            self._base_url = self._wait_ready(proc)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> str:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + self.startup_timeout
        received = b""
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SimulatorStartError(
                        f"the simulator did not report ready within {self.startup_timeout:g} s"
                        + self._stderr_hint()
                    )
                if not selector.select(left):
                    continue
                data = os.read(fd, 4096)
                if not data:
                    proc.wait(_STOP_GRACE_S)
                    raise SimulatorStartError(
                        f"the simulator exited at start (code {proc.returncode})"
                        + self._stderr_hint()
                    )
                received += data
                match = _READY_RE.search(received.decode("utf-8", "replace"))
                if match:
                    return match.group(1)

    def _stderr_hint(self) -> str:
        last = self.log().strip().splitlines()
        return f": {last[-1].removeprefix('capdisc simulator: ')}" if last else ""

    def stop(self) -> None:
        """Terminate the child (SIGTERM, then SIGKILL after 5 s); safe to call twice."""
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None

    # --- state ------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running simulator."""
        if self._base_url is None:
            raise RuntimeError("the simulator has not been started")
        return self._base_url

    @property
    def pid(self) -> int | None:
        """Process id of the child, once started."""
        return None if self._proc is None else self._proc.pid

    @property
    def returncode(self) -> int | None:
        """Exit code of the child, None while it runs (or before it started)."""
        return None if self._proc is None else self._proc.poll()

    def alive(self) -> bool:
        """True while the child process runs."""
        return self._proc is not None and self._proc.poll() is None

    def log(self) -> str:
        """What the child wrote on stderr so far (empty in normal operation)."""
        if self._stderr is None or self._stderr.closed:
            return ""
        position = self._stderr.tell()
        try:
            self._stderr.seek(0)
            return self._stderr.read().decode("utf-8", "replace")
        finally:
            self._stderr.seek(position)

    # --- control endpoints ------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """The simulator's ground-truth counters (``GET /stats``)."""
        data = self._control("GET", "/stats")
        return {str(k): int(v) for k, v in data.items()}

    def reset_stats(self) -> None:
        """Zero the counters (``POST /stats/reset``)."""
        self._control("POST", "/stats/reset")

    def _control(self, method: str, path: str) -> dict[str, Any]:
        # Imported here: httpx costs ~0.1 s to import, which the child never needs, and
        # a client must be created after gevent patching in the load generator.
        import httpx

        last: Exception | None = None
        # With the max_connections fault at its limit, a control request can be refused
        # like any other connection: a few retries ride over a busy moment.
        for _ in range(5):
            try:
                with httpx.Client(timeout=5.0, trust_env=False) as client:
                    response = client.request(method, self.base_url + path)
                    response.raise_for_status()
                    data = response.json()
                    assert isinstance(data, dict)
                    return data
            except (httpx.TransportError, httpx.HTTPStatusError) as exc:
                last = exc
                time.sleep(0.05)
        raise RuntimeError(f"simulator {path} failed: {last}")
