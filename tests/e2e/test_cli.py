"""The command line as a user meets it: help, version, exit codes, one-line errors.

Every test runs the real ``capdisc`` console script in a subprocess.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.helpers import CAPDISC
from tests.e2e.helpers import run_capdisc as run


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("capdisc: error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_help_does_not_import_locust_or_gevent() -> None:
    """capdisc --help stays fast and never monkey-patches the standard library."""
    code = (
        "import sys\n"
        "from capdisc.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "for cmd in (['discover', 'batch', '--help'], ['compare', 'stream', '--help']):\n"
        "    try:\n        main(cmd)\n    except SystemExit:\n        pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('locust', 'gevent')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_every_contract_command_has_help() -> None:
    """Each command of the contract exists and documents itself."""
    for command in (
        ["discover", "batch"],
        ["discover", "tools"],
        ["compare", "stream"],
        ["simulator", "serve"],
        ["profiles", "list"],
        ["profiles", "show"],
        ["profiles", "validate"],
        ["report"],
        ["worker"],
        ["calibrate"],
    ):
        result = run(*command, "--help")
        assert result.returncode == 0, (command, result.stderr)
        assert "Usage" in result.stdout


def test_version() -> None:
    """--version prints the package version."""
    from capdisc import __version__

    result = run("--version")
    assert result.returncode == 0 and __version__ in result.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["discover", "batch", "--max-users", "abc"], "--max-users"),
        (["discover", "batch", "--interval", "2x"], "--interval"),
        (["discover", "batch", "--step-duration", "-3s"], "--step-duration"),
        (["discover", "batch", "--max-users", "0"], "--max-users"),
        (["discover", "batch", "--start-users", "50", "--max-users", "10"], "--start-users"),
        (["discover", "batch", "--max-failure-rate", "150"], "--max-failure-rate"),
        (["discover", "batch", "--failure-threshold", "-1"], "--failure-threshold"),
        (["discover", "batch", "--max-tokens", "0"], "--max-tokens"),
        (["discover", "batch", "--api", "grpc"], "--api"),
        (["discover", "batch", "--host", "ftp://x"], "--host"),
        (["discover", "batch", "--profile", "nope"], "unknown profile 'nope'"),
        (["discover", "batch", "--bogus"], "--bogus"),
        (["discover", "tools", "--tools", "-1"], "--tools"),
        (["compare", "stream", "v1", "v2", "--users", "0"], "--users"),
        (["compare", "stream", "v1", "nope"], "unknown profile 'nope'"),
        (["simulator", "serve", "--slots", "0"], "--slots"),
        (["report", "/nonexistent/run"], "RUN_DIR"),
        (["worker", "--master", "127.0.0.1:notaport"], "--master"),
        (["discover", "batch", "--workers", "-1"], "--workers"),
        (["discover", "batch", "--workers", "x"], "--workers"),
        (["compare", "stream", "v1", "v2", "--workers", "some"], "--workers"),
        (["discover", "batch", "--master-bind", "0.0.0.0"], "--master-bind"),
        (["calibrate", "--workload", "chat"], "--workload"),
        # A streamed answer succeeds with more than 2 chunks: 2 tokens can never succeed.
        (["discover", "stream", "--output-tokens", "2"], "--output-tokens 2"),
        (["compare", "stream", "v1", "v2", "--max-tokens", "1"], "--max-tokens 1"),
    ],
)
def test_bad_input_is_one_line_naming_the_flag(args: list[str], needle: str) -> None:
    """Every user mistake: exit 2, one line on stderr that names the flag or field."""
    result = run(*args)
    assert result.returncode == 2, result.stderr
    assert needle in one_error_line(result)


def test_calibrate_says_where_its_cache_is(tmp_path: Path) -> None:
    """--show with nothing cached names the cache file and what to run (exit 2)."""
    result = run("calibrate", "--show", env={"CAPDISC_CACHE_DIR": str(tmp_path)})
    assert result.returncode == 2
    line = one_error_line(result)
    assert "--show" in line and str(tmp_path / "client-ceiling-") in line
    assert "capdisc calibrate" in line
    assert "--workers auto" in run("calibrate", "--help").stdout


def test_bad_environment_setting_is_named() -> None:
    """A wrong LOAD_TEST_FAILURE_THRESHOLD is named, exit 2."""
    result = run("discover", "batch", env={"LOAD_TEST_FAILURE_THRESHOLD": "many"})
    assert result.returncode == 2
    assert "LOAD_TEST_FAILURE_THRESHOLD" in one_error_line(result)


def test_unreachable_target_exits_3_and_leaves_no_run_directory(tmp_path: Path) -> None:
    """Preflight fails before any load: exit 3, the URL named, nothing left behind."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    out = tmp_path / "run"
    result = run("discover", "batch", "--host", f"http://127.0.0.1:{port}", "--out", str(out))
    assert result.returncode == 3, result.stderr
    assert f"127.0.0.1:{port}" in one_error_line(result)
    assert not out.exists()


def test_unwritable_out_is_refused_before_any_load(tmp_path: Path) -> None:
    """An --out that cannot be written is refused with exit 2 before the target is touched."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run("discover", "batch", "--out", str(blocker / "run"))
    assert result.returncode == 2
    assert "--out" in one_error_line(result)
    nonempty = tmp_path / "used"
    nonempty.mkdir()
    (nonempty / "summary.json").write_text("{}")
    result = run("discover", "batch", "--out", str(nonempty))
    assert result.returncode == 2 and "not empty" in one_error_line(result)


def test_profiles_commands(tmp_path: Path) -> None:
    """list shows shipped profiles; show prints fields; validate names the bad field."""
    listed = run("profiles", "list")
    assert listed.returncode == 0 and "demo" in listed.stdout and "vllm" in listed.stdout
    shown = run("profiles", "show", "demo")
    assert shown.returncode == 0 and "[simulator]" in shown.stdout and "slots = 4" in shown.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[target]\nembedded = true\nslotz = 3\n")
    result = run("profiles", "validate", str(bad))
    assert result.returncode == 2
    assert f"{bad}: target.slotz: unknown key" in one_error_line(result)
    good = run("profiles", "validate", "demo")
    assert good.returncode == 0 and "valid" in good.stdout


def test_simulator_serve_answers_and_stops_on_ctrl_c() -> None:
    """capdisc simulator serve announces its URL, answers, and exits 0 on SIGINT."""
    import re
    import signal

    import httpx

    proc = subprocess.Popen(
        [*CAPDISC, "simulator", "serve", "--port", "0", "--slots", "2", "--per-token-ms", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        assert match, line
        url = match.group(1)
        with httpx.Client(timeout=10, trust_env=False) as client:
            assert client.get(f"{url}/health").json()["status"] == "ok"
            answer = client.post(
                f"{url}/v1/chat/completions",
                json={"model": "sim-llm", "messages": [{"role": "user", "content": "hi"}]},
            )
            assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
