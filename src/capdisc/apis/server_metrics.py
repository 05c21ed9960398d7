"""Where the server publishes its own metrics (``--server-metrics``), found at preflight.

``auto`` tries ``GET {target}/metrics``: a server that answers Prometheus text with a
family capdisc knows (:mod:`capdisc.servermetrics.families`) is read for the whole run;
anything else (no such page, another format, no known name) is not, and the run says so
in one line. A URL given explicitly must answer like that, or the run does not start
(exit 3, naming the flag). The API key goes only to the target's own origin (scheme, host
and port), never elsewhere, and redirects are not followed, so a metrics URL cannot carry
it away; errors name the URL, never a header.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from capdisc.errors import TargetUnreachable
from capdisc.servermetrics.families import Family, detect_family
from capdisc.target import Target

__all__ = ["MetricsEndpoint", "MetricsStatus", "fetch_metrics", "probe_server_metrics"]

# A scrape must never hold up the run: its answer comes within this, or it is skipped.
SCRAPE_TIMEOUT_S = 5.0
_FLAG = "--server-metrics"


@dataclass(frozen=True)
class MetricsEndpoint:
    """A ``/metrics`` page capdisc reads during the run, and the family it publishes."""

    url: str
    family: Family
    target: Target

    def headers(self) -> dict[str, str]:
        """The target's credentials when the page is on the target's own origin; else none."""
        if _origin(self.url) != _origin(self.target.base_url):
            return {}
        return self.target.auth_headers()


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = 443 if parts.scheme == "https" else 80
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port or default


class MetricsStatus(ValueError):
    """The page answered with another status than 200."""


def fetch_metrics(client: httpx.Client, endpoint: MetricsEndpoint) -> str:
    """The page's text; ``httpx.HTTPError`` or :class:`MetricsStatus` on failure."""
    response = client.get(endpoint.url, headers=endpoint.headers())
    if response.status_code != 200:
        raise MetricsStatus(f"HTTP {response.status_code}")
    return response.text


def probe_server_metrics(target: Target) -> tuple[MetricsEndpoint | None, str]:
    """The endpoint to read during the run (None: none), and one line saying what was found.

    With ``--server-metrics URL``, a page that cannot be read as a known family raises
    ``TargetUnreachable`` naming the flag.
    """
    setting = target.config.server_metrics
    if setting == "off":
        return None, "server metrics: off (--server-metrics off)"
    explicit = setting != "auto"
    url = setting if explicit else f"{target.base_url}/metrics"
    probe = MetricsEndpoint(url=url, family=_UNKNOWN, target=target)
    try:
        with httpx.Client(timeout=SCRAPE_TIMEOUT_S, follow_redirects=False) as client:
            text = fetch_metrics(client, probe)
        family = detect_family(text)
        problem = None if family is not None else "no metric of vLLM, llama.cpp, SGLang or TGI"
    except httpx.HTTPError as exc:
        family, problem = None, f"cannot read it ({exc.__class__.__name__})"
    except MetricsStatus as exc:
        family, problem = None, str(exc)
    except ValueError as exc:
        family, problem = None, f"not Prometheus metrics ({str(exc)[:80]})"
    if family is None:
        if explicit:
            raise TargetUnreachable(
                f"{_FLAG} {url}: {problem}", hint="give the server's /metrics URL, or auto/off"
            )
        return None, f"server metrics: none at {url} ({problem}); server figures not read"
    found = MetricsEndpoint(url=url, family=family, target=target)
    return found, f"server metrics: {family.label} names at {url}, read once a second"


# A placeholder family for the probe itself (its text is not read through it).
_UNKNOWN = Family("unknown", "unknown", {})
