"""Every strategy against your own gateway: examples/gateway (FastAPI + sse-starlette) on uvicorn.

The gateway runs in front of a simulator with a known capacity model and counts what it
served; capdisc drives it through the shipped ``gateway`` profile (``api = "http"``: its
own paths, a JSON body template, plain text SSE events, an ``{env:GATEWAY_KEY}`` header),
and the results are checked against both ground truths: the capacity within 10% of the
simulator's U* = S * P / D, and ``requests.csv`` holding exactly the requests the
gateway served (the preflight's one request has no row). The key never shows in any
output.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from capdisc.profiles import shipped_profiles_dir
from tests.conftest import StartSimulator
from tests.e2e.helpers import rows_of, run_capdisc

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
GATEWAY_APP = ROOT / "examples" / "gateway" / "app.py"
KEY = "gw-key-3f9a1c77e2"
ENV = {"GATEWAY_KEY": KEY}
# Simulators behind the gateway: 20 ms prefill + 20 tokens x 9 ms = 0.2 s a request.
SIM = {"prefill_ms": 20, "per_token_ms": 9, "output_tokens": 20, "jitter": 0.05}
SERVICE_S = 0.2

StartGateway = Callable[..., str]
T = TypeVar("T")


@pytest.fixture
def start_gateway() -> Iterator[StartGateway]:
    """Factory: ``start_gateway(upstream_url)`` -> the URL of a running example gateway."""
    procs: list[subprocess.Popen[str]] = []

    def start(upstream: str) -> str:
        proc = subprocess.Popen(
            [sys.executable, str(GATEWAY_APP), "--port", "0", "--upstream", upstream],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **ENV},
        )
        procs.append(proc)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline() if ready else ""
        assert line.startswith("gateway listening on "), (line, proc.poll())
        return line.split()[-1]

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def served(gateway: str) -> dict[str, int]:
    """What the gateway served (its own counters)."""
    with httpx.Client(timeout=10, trust_env=False) as client:
        counts: dict[str, int] = client.get(gateway + "/stats").json()
    return counts


def profile_for(tmp_path: Path, name: str, gateway: str) -> Path:
    """The shipped ``gateway`` profile pointed at ``gateway``, without its TTFT limit (so a
    stream discovery finds U* itself, not the load where TTFT reaches 500 ms)."""
    text = (shipped_profiles_dir() / "gateway.toml").read_text()
    assert 'host = "http://127.0.0.1:8080"' in text and 'slo_ttft = "500ms"' in text
    text = text.replace("http://127.0.0.1:8080", gateway).replace('slo_ttft = "500ms"', "")
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def capdisc(*args: str, out: Path) -> tuple[subprocess.CompletedProcess[str], dict]:
    result = run_capdisc(*args, "--out", str(out), "--quiet", "--json", timeout=300, env=ENV)
    path = out / "summary.json"
    return result, json.loads(path.read_text()) if path.exists() else {}


def capdisc_settled(
    *args: str, tmp_path: Path, count: Callable[[], T]
) -> tuple[subprocess.CompletedProcess[str], dict, Path, T]:
    """Run capdisc; once more when the machine was too busy to measure the gateway:
    capdisc found itself client-bound (the FastAPI gateway and capdisc share two busy
    cores), or a comparison's side did not get its load. capdisc rightly gives no result
    then; the test is about the gateway. Returns the run and ``count()`` before it."""
    for attempt in range(2):
        before = count()
        out = tmp_path / f"run{attempt}"
        result, summary = capdisc(*args, out=out)
        busy = summary.get("stop_reason") == "client_bound" or summary.get("load_reasons")
        if not busy and not (summary.get("client") or {}).get("bound"):
            break
    return result, summary, out, before


def assert_key_nowhere(result: subprocess.CompletedProcess[str], out: Path) -> None:
    """The key the header read from the environment is in no output of the run."""
    assert KEY not in result.stdout and KEY not in result.stderr
    for path in out.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


# From 6 users (U* is 10): the ramp's first steps are tested without the gateway.
RAMP = [
    *("--start-users", "6", "--step-users", "3", "--max-users", "30"),
    *("--interval", "1s", "--step-duration", "4s"),
]


@pytest.mark.parametrize("strategy", ["batch", "stream"])
def test_discover_behind_the_gateway(
    start_simulator: StartSimulator, start_gateway: StartGateway, tmp_path: Path, strategy: str
) -> None:
    """discover batch and stream find U* = 2 * 1 / 0.2 = 10 users through the gateway;
    rows = what it served; tokens are its usage, chunks its plain text events."""
    sim = start_simulator(slots=2, seed=4, **SIM)
    gateway = start_gateway(sim.base_url)
    kind = "chat" if strategy == "batch" else "stream"
    result, summary, out, before = capdisc_settled(
        *("discover", strategy, "--profile", str(profile_for(tmp_path, "gw", gateway)), *RAMP),
        tmp_path=tmp_path,
        count=lambda: served(gateway)[kind],
    )
    assert result.returncode == 0, result.stderr
    u_star = 2 * 1.0 / SERVICE_S
    capacity = summary["capacity"]
    steps = [(s["users"], s["verdict"], s["reasons"]) for s in summary["steps"]]
    assert capacity is not None and abs(capacity["users"] - u_star) <= 0.1 * u_star, steps
    assert summary["target"]["api"] == "http"
    rows = rows_of(out)
    assert len(rows) == served(gateway)[kind] - before - 1  # the preflight has no row
    ok = [r for r in rows if r["ok"] == "1"]
    assert len(ok) > 0.9 * len(rows)
    assert all(r["output_tokens"] == "20" and r["tokens_estimated"] == "0" for r in ok)
    if strategy == "stream":
        # One chunk per token: the usage event and [DONE] are not chunks.
        assert all(r["chunks"] == "20" and float(r["ttft_ms"]) > 0 for r in ok)
    assert_key_nowhere(result, out)


def test_compare_stream_behind_two_gateways(
    start_simulator: StartSimulator, start_gateway: StartGateway, tmp_path: Path
) -> None:
    """B's gateway in front of a simulator 30% faster per token is b_faster; each side's
    rows are what its gateway served."""
    slow = start_gateway(start_simulator(slots=16, seed=1, **SIM).base_url)
    fast = start_gateway(start_simulator(slots=16, seed=2, **{**SIM, "per_token_ms": 6}).base_url)
    # Light enough for a FastAPI gateway on a busy 2-core machine (6 users every 0.5 s),
    # in blocks of 3 s: one lag spike of a busy machine is no block's p95.
    load = ["--users", "6", "--interval", "0.5s", "--duration", "12s", "--blocks", "4"]
    a, b = profile_for(tmp_path, "slow", slow), profile_for(tmp_path, "fast", fast)
    result, summary, out, before = capdisc_settled(
        *("compare", "stream", str(a), str(b), *load),
        tmp_path=tmp_path,
        count=lambda: {"a": served(slow)["stream"], "b": served(fast)["stream"]},
    )
    assert result.returncode == 0, result.stderr
    why = (summary.get("verdict_reason"), summary.get("load_reasons"), summary.get("diff"))
    assert summary["verdict"] == "b_faster", why
    assert summary["a"]["chunks_p50"] == 20 and summary["b"]["chunks_p50"] == 20
    rows = rows_of(out)
    for version, gateway in (("a", slow), ("b", fast)):
        mine = [r for r in rows if r["version"] == version]
        assert len(mine) == served(gateway)["stream"] - before[version] - 1, version
        assert all(r["ok"] == "1" for r in mine), {r["error"] for r in mine}
    assert_key_nowhere(result, out)


def test_discover_tools_behind_the_gateway(
    start_simulator: StartSimulator, start_gateway: StartGateway, tmp_path: Path
) -> None:
    """Server-orchestrated tools through the gateway's /agent: exactly 2 calls per task,
    U* = 4 * 0.75 / (3 * 0.1) = 10 users; tasks = what the gateway served."""
    sim = start_simulator(
        slots=4, prefill_ms=10, per_token_ms=10, output_tokens=9, jitter=0.05, seed=2
    )
    gateway = start_gateway(sim.base_url)
    result, summary, out, before = capdisc_settled(
        *("discover", "tools", "--profile", str(profile_for(tmp_path, "gw", gateway))),
        *("--tools", "2", "--start-users", "6", "--step-users", "3", "--max-users", "30"),
        *("--interval", "0.75s", "--step-duration", "4s"),
        tmp_path=tmp_path,
        count=lambda: (served(gateway)["agent"], sim.stats()["tool_calls"]),
    )
    assert result.returncode == 0, result.stderr
    info = summary["tools"]
    assert info["orchestration"] == "server" and info["per_task"] == 2
    assert info["wrong_count"] == 0
    rows = rows_of(out)
    # The preflight went to /chat: every /agent task is a row.
    assert len(rows) == info["tasks"] == served(gateway)["agent"] - before[0]
    assert sim.stats()["tool_calls"] - before[1] == 2 * info["tasks"]
    capacity = summary["capacity"]
    steps = [(s["users"], s["verdict"], s["reasons"]) for s in summary["steps"]]
    assert capacity is not None and abs(capacity["users"] - 10) <= 1, steps
    assert_key_nowhere(result, out)


@pytest.mark.parametrize(
    ("args", "env", "line"),
    [
        (["--body", '{"q": "{question}"}'], ENV, "--body: unknown placeholder {question}"),
        (["--body", '{"q": {prompt}}'], ENV, "--body: not JSON once filled"),
        ([], {}, "target.headers.X-Api-Key: environment variable GATEWAY_KEY is not set"),
        (["--api", "openai"], ENV, '--path: path is only for api = "http"'),
    ],
)
def test_template_mistakes_are_one_line_exit_2(
    tmp_path: Path, args: list[str], env: dict[str, str], line: str
) -> None:
    """Before anything is sent (the profile's host has nothing listening)."""
    result = subprocess.run(
        [sys.executable, "-m", "capdisc", "discover", "batch", "--profile", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**{k: v for k, v in os.environ.items() if k != "GATEWAY_KEY"}, **env},
    )
    assert result.returncode == 2, result.stderr
    errors = [x for x in result.stderr.splitlines() if x.startswith("capdisc: error:")]
    assert len(errors) == 1 and line in errors[0], result.stderr
    assert "Traceback" not in result.stderr and KEY not in result.stderr


def test_workers_read_the_header_from_their_own_environment(
    start_simulator: StartSimulator, start_gateway: StartGateway, tmp_path: Path
) -> None:
    """A local worker is told the template, never the key: it reads GATEWAY_KEY itself, and
    the gateway accepts every request (it refuses any without the key)."""
    sim = start_simulator(slots=4, seed=5, **SIM)
    gateway = start_gateway(sim.base_url)
    out = tmp_path / "run"
    result, _ = capdisc(
        "discover",
        "batch",
        "--profile",
        str(profile_for(tmp_path, "gw", gateway)),
        *("--workers", "1", "--start-users", "2", "--max-users", "2"),
        *("--interval", "0.5s", "--step-duration", "2s", "--no-refine"),
        out=out,
    )
    assert result.returncode == 0, result.stderr
    rows = rows_of(out)
    assert rows and all(r["ok"] == "1" for r in rows), {r["error"] for r in rows}
    assert all(int(r["user"]) >= 1_000_000 for r in rows)  # sent by the worker
    counts = served(gateway)
    assert len(rows) == counts["chat"] - 1 and counts["refused"] == 0
    assert_key_nowhere(result, out)
