"""API keys: read from the variable a profile names, sent as a header, written nowhere.

A key is planted in the environment, the simulator requires it, and after real
runs every output file, stdout and stderr are searched for it.
"""

from __future__ import annotations

import os
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from tests.conftest import StartSimulator
from tests.e2e.helpers import run_capdisc

pytestmark = pytest.mark.slow

KEY = "sk-capdisc-planted-secret-4242"


def _everything(run: Path, *texts: str) -> str:
    parts = list(texts)
    for path in run.rglob("*"):
        if path.is_file():
            parts.append(path.read_bytes().decode("utf-8", errors="replace"))
    return "\n".join(parts)


def test_key_is_used_but_never_written(
    start_simulator: StartSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The target accepts the key; no output, report, CSV or log holds it."""
    monkeypatch.setenv("CAPDISC_TEST_KEY", KEY)
    sim = start_simulator(
        slots=8, prefill_ms=5, per_token_ms=1, output_tokens=5, api_key_env="CAPDISC_TEST_KEY"
    )
    profile = tmp_path / "keyed.toml"
    profile.write_text(
        f'[target]\nhost = "{sim.base_url}"\nmodel = "sim-llm"\napi_key_env = "CAPDISC_TEST_KEY"\n'
        '[stream]\nusers = 2\ninterval = "0.5s"\nduration = "2s"\nblocks = 1\n'
    )
    env = {**os.environ, "CAPDISC_TEST_KEY": KEY}
    batch = run_capdisc(
        "discover",
        "batch",
        "--profile",
        str(profile),
        "--start-users",
        "2",
        "--max-users",
        "2",
        "--step-duration",
        "2s",
        "--interval",
        "0.5s",
        "--out",
        str(tmp_path / "b"),
        timeout=120,
        env=env,
    )
    assert batch.returncode == 0, batch.stderr
    stream = run_capdisc(
        "compare",
        "stream",
        str(profile),
        str(profile),
        "--workers",
        "1",
        "--out",
        str(tmp_path / "s"),
        "--json",
        timeout=120,
        env=env,
    )
    assert stream.returncode == 0, stream.stderr
    assert sim.stats()["served"] > 10  # the key was accepted, load went through
    haystack = _everything(tmp_path, batch.stdout, batch.stderr, stream.stdout, stream.stderr)
    assert KEY not in haystack
    assert "planted" not in haystack


def test_missing_or_wrong_key_is_refused_before_load(
    start_simulator: StartSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused key: exit 3 naming the variable, and the key itself never printed."""
    monkeypatch.setenv("CAPDISC_TEST_KEY", KEY)
    sim = start_simulator(slots=2, api_key_env="CAPDISC_TEST_KEY")
    profile = tmp_path / "keyed.toml"
    profile.write_text(
        f'[target]\nhost = "{sim.base_url}"\nmodel = "sim-llm"\napi_key_env = "OTHER_KEY"\n'
    )
    result = run_capdisc(
        "discover",
        "batch",
        "--profile",
        str(profile),
        "--out",
        str(tmp_path / "run"),
        timeout=60,
        env={"OTHER_KEY": "sk-wrong-key-777"},
    )
    assert result.returncode == 3
    assert "$OTHER_KEY" in result.stderr and "sk-wrong-key-777" not in result.stderr
    assert not (tmp_path / "run").exists()


class _Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[str | None]] = []

    def do_POST(self) -> None:
        _Recorder.seen.append(self.headers.get("Authorization"))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_redirect_does_not_carry_the_key(tmp_path: Path) -> None:
    """A redirect to another host is not followed, so the key never reaches it."""
    other = HTTPServer(("127.0.0.2", 0), _Recorder)

    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(307)
            self.send_header("Location", f"http://127.0.0.2:{other.server_port}{self.path}")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    first = HTTPServer(("127.0.0.1", 0), Redirect)
    for server in (other, first):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        profile = tmp_path / "p.toml"
        profile.write_text(
            f'[target]\nhost = "http://127.0.0.1:{first.server_port}"\napi_key_env = "RKEY"\n'
        )
        result = run_capdisc(
            "discover",
            "batch",
            "--profile",
            str(profile),
            "--out",
            str(tmp_path / "run"),
            timeout=60,
            env={"RKEY": KEY},
        )
    finally:
        first.shutdown()
        other.shutdown()
    assert result.returncode == 3 and "redirect" in result.stderr
    assert _Recorder.seen == []
