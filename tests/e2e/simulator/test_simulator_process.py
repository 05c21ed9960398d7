"""The simulator as a process: start failures, clean stops, the entry point, orphans."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

from capdisc.simulator import EmbeddedSimulator, SimulatorConfig, SimulatorStartError
from capdisc.simulator.process import READY_PREFIX
from tests.e2e.simulator.conftest import wait_for


def test_start_failure_is_reported() -> None:
    """A port already taken makes start() raise SimulatorStartError with the child's reason."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        sim = EmbeddedSimulator(SimulatorConfig(), port=port)
        with pytest.raises(SimulatorStartError, match="cannot listen"):
            sim.start()
        assert not sim.alive()


def test_stop_is_clean_and_idempotent() -> None:
    """Leaving the with block stops the child with SIGTERM and exit code 0; stop() twice is harmless."""
    with EmbeddedSimulator(SimulatorConfig()) as sim:
        assert sim.alive()
        assert sim.base_url.startswith("http://127.0.0.1:")
    assert not sim.alive()
    assert sim.returncode == 0
    sim.stop()


def test_module_entry_point_prints_ready_line_and_stops_on_sigint() -> None:
    """python -m capdisc.simulator prints the ready line with the bound port and exits 0 on SIGINT."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "capdisc.simulator", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line.startswith(READY_PREFIX + "http://127.0.0.1:")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_config_import_leaves_server_unloaded() -> None:
    """Importing capdisc.simulator.config (every CLI command does) loads neither the server nor the process module; the package's names still resolve."""
    code = (
        "import sys\n"
        "import capdisc.simulator.config\n"
        "heavy = ('capdisc.simulator.process', 'capdisc.simulator.server')\n"
        "assert not [m for m in heavy if m in sys.modules], sorted(sys.modules)\n"
        "import capdisc.simulator as package\n"
        "assert package.EmbeddedSimulator.__module__ == 'capdisc.simulator.process'\n"
        "assert set(package.__all__) <= set(dir(package))\n"
        "from capdisc.simulator.server import (\n"
        "    MAX_BODY_BYTES, SimulatorServer, StatsSnapshot, format_base_url, read_api_key)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


def test_invalid_config_json_exits_2() -> None:
    """An invalid --config-json exits 2 with a one-line reason naming the field."""
    done = subprocess.run(
        [sys.executable, "-m", "capdisc.simulator", "--config-json", '{"slots": 0}'],
        capture_output=True,
        text=True,
        timeout=15,
    )
    assert done.returncode == 2
    assert "slots" in done.stderr


def process_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie waiting to be reaped counts as exited)."""
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (ProcessLookupError, FileNotFoundError):
        return True


def test_child_exits_when_its_parent_is_killed() -> None:
    """An embedded simulator whose parent dies (SIGKILL, no cleanup) exits by itself within seconds."""
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\n"
            "from capdisc.simulator import EmbeddedSimulator, SimulatorConfig\n"
            "sim = EmbeddedSimulator(SimulatorConfig()).start()\n"
            "print(sim.pid, flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
    )
    child = 0
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        parent.kill()
        parent.wait(5)
        assert wait_for(lambda: process_gone(child), timeout=5.0)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if child and not process_gone(child):
            os.kill(child, signal.SIGKILL)
