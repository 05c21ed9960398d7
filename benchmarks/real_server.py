"""capdisc against a real llama.cpp ``llama-server``, beside the server's own view.

Not part of the test suite: it needs the server built by ``../shared/realserver`` (a
``llama-server`` and two random-weight models; see its README). One measurement at a
time (the server is very sensitive to other CPU use on a small machine):

1. the **closed-loop saturation** of the small model: ``--slots`` x 1, 2, 3 requests kept
   in flight, the best requests/s; paced users saturate it at about U* = that x
   ``--interval``;
2. ``capdisc discover batch`` and ``discover stream`` (no SLO: judged like batch) on the
   small model: the capacity found beside U*, and beside the server's own best in that
   run (the most generated tokens per second its counter showed in any step, /
   ``--max-tokens`` x ``--interval``; streams cost it more, and the machine's other
   load moves it): the capacity interval should hold it;
3. each run's ``requests.csv`` successes beside the server's own completion count: every
   answer runs to ``--max-tokens`` (a random model, EOS suppressed), so the increase of
   ``llamacpp:tokens_predicted_total`` over the run, less each preflight's 4 tokens,
   divided by ``--max-tokens`` counts the completed requests;
4. an A/A ``compare stream`` (the small model on both sides: no faster/slower verdict);
5. small (A) vs tiny (B, about 4x faster per token): ``b_faster``;
6. the server figures capdisc read from ``/metrics`` (``--server-metrics auto``): at the
   capacity, and per version.

    .venv/bin/python benchmarks/real_server.py --realserver ~/realserver   # ~15 min

Prints one markdown table (recorded in benchmarks/README.md). Every server it starts is
stopped at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

PREFLIGHT_TOKENS = 4  # capdisc's preflight asks for 4 tokens (apis/preflight.py)
_START_TIMEOUT_S = 120.0


@contextmanager
def llama_server(args: argparse.Namespace, model: str, port: int) -> Iterator[str]:
    """``start_llama_server.sh MODEL PORT SLOTS THREADS`` on loopback, stopped at the end."""
    script = Path(args.realserver).expanduser() / "start_llama_server.sh"
    model_path = Path(args.realserver).expanduser() / "models" / f"{model}-llama.gguf"
    log = Path(tempfile.mkdtemp(prefix="llama-")) / f"server-{port}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(script), str(model_path), str(port), str(args.slots), str(args.threads)],
            stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"llama-server on {port} exited; see {log}")
            try:
                if httpx.get(url + "/health", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama-server on {port} not ready in {_START_TIMEOUT_S:g}s")
            time.sleep(0.5)
        yield url
    finally:
        # Only the process group this script started.
        with_group = os.getpgid(process.pid) if process.poll() is None else None
        if with_group is not None:
            os.killpg(with_group, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def predicted_tokens(url: str) -> float:
    """``llamacpp:tokens_predicted_total`` now (read by hand here: a second, independent
    reading beside the product's parser)."""
    text = httpx.get(url + "/metrics", timeout=10.0).text
    match = re.search(r"^llamacpp:tokens_predicted_total (\S+)$", text, re.M)
    if match is None:
        raise RuntimeError(f"{url}/metrics: no llamacpp:tokens_predicted_total")
    return float(match.group(1))


def closed_loop(url: str, args: argparse.Namespace) -> tuple[float, int]:
    """The best requests/s over ``slots`` x 1..3 requests kept in flight, and that level."""
    body = {
        "model": "tiny",
        "messages": [{"role": "user", "content": args.prompt}],
        "max_tokens": args.max_tokens,
        "ignore_eos": True,
        "temperature": 0.0,
    }
    best = (0.0, 0)
    for conc in (args.slots, 2 * args.slots, 3 * args.slots):
        count = max(args.closed_requests, 4 * conc)

        def one(_: int, client: httpx.Client) -> None:
            response = client.post(url + "/v1/chat/completions", json=body)
            response.raise_for_status()

        with httpx.Client(timeout=120.0, limits=httpx.Limits(max_connections=conc + 2)) as client:
            one(0, client)  # warm
            started = time.perf_counter()
            with ThreadPoolExecutor(conc) as pool:
                list(pool.map(lambda i: one(i, client), range(count)))
            rate = count / (time.perf_counter() - started)
        print(f"  closed loop: {conc} in flight -> {rate:.2f} req/s", file=sys.stderr)
        best = max(best, (rate, conc))
    return best


def capdisc(*argv: str, timeout: float = 1800) -> tuple[int, dict[str, Any], Path, str]:
    """The real command in a subprocess; its exit code, summary and run directory."""
    out = Path(tempfile.mkdtemp(prefix="real-server-")) / "run"
    result = subprocess.run(
        [sys.executable, "-m", "capdisc", *argv, "--out", str(out), "--quiet"],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    path = out / "summary.json"
    if not path.exists():
        raise RuntimeError(f"capdisc {' '.join(argv[:2])} wrote no summary:\n{result.stderr}")
    return result.returncode, json.loads(path.read_text()), out, result.stdout + result.stderr


def successes(out: Path) -> int:
    """Successful requests in ``requests.csv`` (all of them: ramp-ups and drains too)."""
    import csv

    with (out / "requests.csv").open() as handle:
        return sum(row["ok"] == "1" for row in csv.DictReader(handle))


def completions(before: float, after: float, preflights: int, max_tokens: int) -> float:
    return (after - before - PREFLIGHT_TOKENS * preflights) / max_tokens


def count_row(label: str, found: dict[str, Any]) -> tuple[str, str, str, str]:
    """requests.csv successes beside the server's own completion count."""
    same = abs(found["ok"] - found["server"]) < 0.5
    return (
        f"  {label}: requests.csv successes vs server completions",
        f"{found['ok']:,}",
        f"{found['server']:,.2f}",
        "equal" if same else "DIFFER",
    )


def server_words(figures: dict[str, Any] | None) -> str:
    if not figures:
        return "-"
    parts = []
    if figures.get("running_mean") is not None:
        parts.append(f"ran {figures['running_mean']:.1f} (max {figures['running_max']:g})")
    if figures.get("waiting_mean") is not None:
        parts.append(f"queued {figures['waiting_mean']:.1f} (max {figures['waiting_max']:g})")
    if figures.get("tokens_per_s") is not None:
        parts.append(f"{figures['tokens_per_s']:,.0f} tok/s")
    if figures.get("batch_mean") is not None:
        parts.append(f"{figures['batch_mean']:.2f} busy slots/decode")
    return ", ".join(parts)


def _target(url: str, args: argparse.Namespace) -> list[str]:
    return [
        "--host", url, "--model", "tiny", "--max-tokens", str(args.max_tokens),
        "--output-control", "ignore_eos", "--timeout", "60s",
    ]  # fmt: skip


def discover(kind: str, url: str, u_star: float, args: argparse.Namespace) -> dict[str, Any]:
    start = max(2, round(u_star * 0.4))
    step = max(1, round(u_star * 0.2))
    before = predicted_tokens(url)
    code, summary, out, text = capdisc(
        "discover", kind, *_target(url, args),
        "--start-users", str(start), "--step-users", str(step),
        "--max-users", str(math.ceil(u_star * 2)), "--interval", f"{args.interval}s",
        "--step-duration", f"{args.step}s", "--failure-threshold", "0",
    )  # fmt: skip
    after = predicted_tokens(url)
    cap = summary["capacity"] or {}
    best = next(
        (s for s in reversed(summary["steps"]) if s["users"] == cap.get("users") and s["passed"]),
        None,
    )
    # The server's own best in this very run: the most tokens per second its counter
    # showed in any step, in requests (every answer has max_tokens tokens), times the
    # pacing interval. A saturated server delivers its capacity whatever it is offered,
    # so the level that failed should have asked for more than this.
    busiest = max(
        (s["server"]["tokens_per_s"] or 0 for s in summary["steps"] if s["server"]), default=0
    )
    return {
        "code": code,
        "summary": summary,
        "capacity": cap,
        "server_u_star": busiest / args.max_tokens * args.interval if busiest else None,
        "ok": successes(out),
        "server": completions(before, after, 1, args.max_tokens),
        "at_capacity": best["server"] if best else None,
        "capdisc_tps": (best or {}).get("tokens", {}).get("output_tokens_per_s"),
        "warnings": [w for w in summary["warnings"] if "server" in w],
        "text": text,
    }


def compare(a: str, b: str, users: int, args: argparse.Namespace) -> dict[str, Any]:
    urls = {a, b}
    before = {u: predicted_tokens(u) for u in urls}
    code, summary, out, text = capdisc(
        "compare", "stream", a, b, *_target(a, args)[2:],
        "--users", str(users), "--interval", f"{args.interval}s",
        "--duration", f"{args.compare_duration}s", "--blocks", str(args.blocks),
        "--failure-threshold", "0",
    )  # fmt: skip
    after = {u: predicted_tokens(u) for u in urls}
    preflights = {u: (a == u) + (b == u) for u in urls}
    return {
        "code": code,
        "summary": summary,
        "ok": successes(out),
        "server": sum(
            completions(before[u], after[u], preflights[u], args.max_tokens) for u in urls
        ),
        "warnings": [w for w in summary["warnings"] if "server" in w],
        "text": text,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--realserver", default="~/realserver")
    parser.add_argument("--port-a", type=int, default=18012)
    parser.add_argument("--port-b", type=int, default=18013)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--step", type=float, default=10.0, help="discovery step seconds")
    parser.add_argument("--closed-requests", type=int, default=120)
    parser.add_argument("--compare-duration", type=float, default=40.0)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument(
        "--prompt", default="Explain in one paragraph why constant pacing matters in load tests."
    )
    args = parser.parse_args()
    rows: list[tuple[str, str, str, str]] = []
    notes: list[str] = []  # capdisc's warnings about the server, from every run
    started = time.monotonic()
    with llama_server(args, "small", args.port_a) as small:
        rate, conc = closed_loop(small, args)
        u_star = rate * args.interval
        rows.append(
            (
                "closed-loop saturation, small",
                f"{rate:.2f} req/s at {conc} in flight",
                "-",
                f"U* = {u_star:.1f} users at {args.interval:g} s pacing",
            )
        )
        for kind in ("batch", "stream"):
            found = discover(kind, small, u_star, args)
            cap = found["capacity"]
            users = cap.get("users")
            error = f"{(users - u_star) / u_star:+.0%}" if users else "-"
            own = found["server_u_star"]
            if own is not None:
                inside = users is not None and users <= own < (cap.get("fail_users") or 1e9)
                error += (
                    f"; the server's own best in the run: {own:.1f} users "
                    f"({'inside' if inside else 'OUTSIDE'} the interval)"
                )
            rows.append(
                (
                    f"discover {kind}, small",
                    f"{users} users ({cap.get('rps', 0):.1f} req/s), "
                    f"fails at {cap.get('fail_users')}; {found['capdisc_tps'] or 0:,.0f} tok/s",
                    server_words(found["at_capacity"]),
                    f"closed-loop U* {u_star:.1f}: {error}",
                )
            )
            rows.append(count_row(kind, found))
            notes += found["warnings"]
            print(found["text"], file=sys.stderr)
        users = max(2, round(u_star * 0.5))
        aa = compare(small, small, users, args)
        rows.append(
            (
                f"A/A compare, small, {users} users",
                f"{aa['summary']['verdict']} (decided by {aa['summary']['decided_by']})",
                "A " + server_words(aa["summary"]["a"]["server"]),
                "no faster/slower" if aa["summary"]["verdict"] not in ("b_faster", "b_slower")
                else "FALSE VERDICT",
            )
        )  # fmt: skip
        rows.append(count_row("A/A", aa))
        notes += aa["warnings"]
        print(aa["text"], file=sys.stderr)
        with llama_server(args, "tiny", args.port_b) as tiny:
            ab = compare(small, tiny, users, args)
        metrics = ab["summary"]["diff"]["metrics"]
        rows.append(
            (
                f"small (A) vs tiny (B), {users} users",
                f"{ab['summary']['verdict']}: TPOT p50 {metrics['tpot_p50']['change']:+.1f}%, "
                f"e2e p50 {metrics['e2e_p50']['change']:+.1f}%",
                f"A {server_words(ab['summary']['a']['server'])}; "
                f"B {server_words(ab['summary']['b']['server'])}",
                "b_faster expected: " + ("ok" if ab["summary"]["verdict"] == "b_faster" else "NO"),
            )
        )
        rows.append(count_row("A vs B", ab))
        notes += ab["warnings"]
        print(ab["text"], file=sys.stderr)
    print(f"\n{len(rows)} rows in {(time.monotonic() - started) / 60:.1f} min\n")
    print("| measurement | capdisc | the server's own view (/metrics) | reference |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    for note in notes:
        print(f"\ncapdisc warned: {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
