"""Finding the server's ``/metrics`` at preflight (``--server-metrics``): auto finds a
known family or quietly none, an explicit URL must be readable, off reads nothing, and
the API key goes only to the target's own origin."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest
from pydantic import SecretStr

from capdisc.apis.server_metrics import probe_server_metrics
from capdisc.errors import TargetUnreachable
from capdisc.settings import TargetConfig
from capdisc.simulator import EmbeddedSimulator
from capdisc.target import Target

StartSimulator = Callable[..., EmbeddedSimulator]
KEY = "sk-test-do-not-leak"


class _Page(http.server.BaseHTTPRequestHandler):
    """Serves ``pages`` by path and records every request's headers."""

    pages: ClassVar[dict[str, tuple[int, str]]] = {}
    seen: ClassVar[list[dict[str, str]]] = []

    def do_GET(self) -> None:
        type(self).seen.append({k.lower(): v for k, v in self.headers.items()})
        status, text = self.pages.get(self.path, (404, "not found"))
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def page_server() -> Iterator[
    Callable[[dict[str, tuple[int, str]]], tuple[str, list[dict[str, str]]]]
]:
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(pages: dict[str, tuple[int, str]]) -> tuple[str, list[dict[str, str]]]:
        handler = type("Page", (_Page,), {"pages": pages, "seen": []})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}", handler.seen

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _target(base_url: str, metrics: str = "auto", key: str | None = None) -> Target:
    return Target(
        base_url=base_url,
        config=TargetConfig(server_metrics=metrics),
        label="t",
        api_key=SecretStr(key) if key else None,
    )


VLLM_PAGE = 'vllm:num_requests_running{model_name="m"} 1.0\n'


def test_auto_finds_the_simulators_vllm_names(start_simulator: StartSimulator) -> None:
    sim = start_simulator()
    endpoint, note = probe_server_metrics(_target(sim.base_url))
    assert endpoint is not None and endpoint.family.name == "vllm"
    assert endpoint.url == sim.base_url + "/metrics"
    assert "vLLM names" in note


def test_auto_without_a_page_or_a_known_family_reads_none(page_server: Any) -> None:
    url, _ = page_server({"/metrics": (200, "process_cpu_seconds_total 1.0\n")})
    endpoint, note = probe_server_metrics(_target(url))
    assert endpoint is None and "no metric of vLLM, llama.cpp, SGLang or TGI" in note
    missing, _ = page_server({})
    endpoint, note = probe_server_metrics(_target(missing))
    assert endpoint is None and "HTTP 404" in note
    html, _ = page_server({"/metrics": (200, "<html><body>hi</body></html>")})
    endpoint, note = probe_server_metrics(_target(html))
    assert endpoint is None and "not Prometheus metrics" in note


def test_off_reads_nothing(page_server: Any) -> None:
    url, seen = page_server({"/metrics": (200, VLLM_PAGE)})
    endpoint, _ = probe_server_metrics(_target(url, "off"))
    assert endpoint is None and seen == []


def test_an_explicit_url_that_cannot_be_read_stops_the_run(page_server: Any) -> None:
    url, _ = page_server({})
    with pytest.raises(TargetUnreachable, match=r"--server-metrics .*/nope: HTTP 404"):
        probe_server_metrics(_target(url, f"{url}/nope"))


def test_the_key_goes_only_to_the_targets_own_origin(page_server: Any) -> None:
    target_url, target_seen = page_server({"/metrics": (200, VLLM_PAGE)})
    other_url, other_seen = page_server({"/metrics": (200, VLLM_PAGE)})
    # Another port is another origin: no key.
    endpoint, _ = probe_server_metrics(_target(target_url, f"{other_url}/metrics", key=KEY))
    assert endpoint is not None and endpoint.headers() == {}
    assert other_seen and all("authorization" not in h for h in other_seen)
    # The target's own /metrics gets it, as the target's requests do.
    endpoint, _ = probe_server_metrics(_target(target_url, key=KEY))
    assert endpoint is not None
    assert target_seen[-1]["authorization"] == f"Bearer {KEY}"
    # localhost is not 127.0.0.1: a name is an origin of its own.
    named = other_url.replace("127.0.0.1", "localhost")
    endpoint, _ = probe_server_metrics(_target(target_url, f"{named}/metrics", key=KEY))
    assert endpoint is not None and endpoint.headers() == {}


def test_a_bad_value_names_the_field() -> None:
    for bad in ("sometimes", "ftp://h/metrics", "http://user:pw@h/metrics"):
        with pytest.raises(ValueError, match="server_metrics"):
            TargetConfig(server_metrics=bad)
    assert TargetConfig(server_metrics=" AUTO ").server_metrics == "auto"
