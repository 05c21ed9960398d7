"""A window's figures from the server's own metrics, and what a run's scrapes say.

:func:`window_figures` sums up the readings of one window (a discovery step, a
comparison block): the gauges (running, waiting, KV cache) over the scrapes read in it,
the counters' increases between its first and last scrape (a counter that went down
was reset: it restarts from zero, as Prometheus's ``rate`` reads it). :func:`combine`
joins windows (an extended step, a version's blocks). :class:`ServerInfo` is a run's
endpoint in ``summary.json``, with the cross-checks of its counters against capdisc's
rows. Server figures inform; they never decide a verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from capdisc.servermetrics.families import COUNTERS, GAUGES, Reading

__all__ = ["ServerCheck", "ServerFigures", "ServerInfo", "combine", "window_figures"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerFigures(_Model):
    """The server's own view of one window (``server`` of a step, a block, a version).

    Gauges over the scrapes read in the window (``samples``); rates from the counters'
    increases over ``counted_s`` (between the window's first and last scrape). None:
    the server does not publish it (or the window had too few scrapes).
    """

    family: str
    samples: int
    running_mean: float | None = None
    running_max: float | None = None
    waiting_mean: float | None = None
    waiting_max: float | None = None
    kv_cache_mean: float | None = None  # share of the KV cache in use, 0 to 1
    kv_cache_max: float | None = None
    tokens_per_s: float | None = None  # generated tokens per second, by its own counter
    prompt_tokens_per_s: float | None = None
    completed: int | None = None  # requests it finished
    preemptions: int | None = None
    prefix_cache_hit_rate: float | None = None  # prompt tokens served from its cache, 0 to 1
    batch_mean: float | None = None  # llama.cpp: busy slots per decode call
    counted_s: float = 0.0
    # Each counter's increase over counted_s (how windows combine).
    counters: dict[str, float] = Field(default_factory=dict)


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _increase(readings: Sequence[Reading], quantity: str) -> float | None:
    """How much a counter grew over the readings; a drop is a reset (it restarts at 0)."""
    values = [r.values[quantity] for r in readings if quantity in r.values]
    if len(values) < 2:
        return None
    return sum(b - a if b >= a else b for a, b in pairwise(values))


def _figures(
    family: str,
    samples: int,
    gauges: dict[str, tuple[float, float]],  # quantity -> (mean, max)
    counters: dict[str, float],
    counted_s: float,
) -> ServerFigures:
    def mean(q: str) -> float | None:
        return gauges[q][0] if q in gauges else None

    def top(q: str) -> float | None:
        return gauges[q][1] if q in gauges else None

    def rate(q: str) -> float | None:
        return counters[q] / counted_s if q in counters and counted_s > 0 else None

    def share(hits: str, of: str) -> float | None:
        total = counters.get(of)
        return counters[hits] / total if hits in counters and total else None

    def count(q: str) -> int | None:
        return round(counters[q]) if q in counters else None

    return ServerFigures(
        family=family,
        samples=samples,
        running_mean=_r(mean("running")),
        running_max=_r(top("running")),
        waiting_mean=_r(mean("waiting")),
        waiting_max=_r(top("waiting")),
        kv_cache_mean=_r(mean("kv_cache"), 4),
        kv_cache_max=_r(top("kv_cache"), 4),
        tokens_per_s=_r(rate("generated_tokens"), 2),
        prompt_tokens_per_s=_r(rate("prompt_tokens"), 2),
        completed=count("completed"),
        preemptions=count("preemptions"),
        prefix_cache_hit_rate=_r(share("prefix_hits", "prefix_queries"), 4),
        batch_mean=_r(share("busy_slots", "decodes")),
        counted_s=round(counted_s, 3),
        counters={q: round(v, 3) for q, v in counters.items()},
    )


def window_figures(
    readings: Sequence[Reading], family: str, start: float, end: float
) -> ServerFigures | None:
    """The figures of the readings taken in [start, end]; None without any."""
    inside = [r for r in readings if start <= r.ts <= end]
    if not inside:
        return None
    gauges: dict[str, tuple[float, float]] = {}
    for quantity in GAUGES:
        values = [r.values[quantity] for r in inside if quantity in r.values]
        if values:
            gauges[quantity] = (sum(values) / len(values), max(values))
    counters: dict[str, float] = {}
    for quantity in COUNTERS:
        grown = _increase(inside, quantity)
        if grown is not None:
            counters[quantity] = grown
    counted_s = inside[-1].ts - inside[0].ts if len(inside) > 1 else 0.0
    return _figures(family, len(inside), gauges, counters, counted_s)


def combine(windows: Sequence[ServerFigures | None]) -> ServerFigures | None:
    """Several windows as one: means weighted by their scrapes, the largest maxima, and
    the counters' increases over their summed time. None when no window has figures."""
    present = [w for w in windows if w is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]
    samples = sum(w.samples for w in present)
    gauges: dict[str, tuple[float, float]] = {}
    for quantity in GAUGES:
        pairs = [
            (getattr(w, f"{quantity}_mean"), getattr(w, f"{quantity}_max"), w.samples)
            for w in present
        ]
        pairs = [p for p in pairs if p[0] is not None and p[1] is not None]
        if pairs:
            weight = sum(n for _, _, n in pairs) or 1
            gauges[quantity] = (
                sum(m * n for m, _, n in pairs) / weight,
                max(top for _, top, _ in pairs),
            )
    counters: dict[str, float] = {}
    for quantity in COUNTERS:
        parts = [w.counters[quantity] for w in present if quantity in w.counters]
        if parts:
            counters[quantity] = sum(parts)
    counted_s = sum(w.counted_s for w in present)
    return _figures(present[0].family, samples, gauges, counters, counted_s)


class ServerCheck(_Model):
    """One of the server's counters over the run against capdisc's own rows.

    ``diff_pct``: (server - capdisc) / capdisc in percent; ``ok``: within 1% (None: not
    checked, ``note`` says why).
    """

    quantity: Literal["requests", "output_tokens"]
    server: float | None = None
    capdisc: float | None = None
    diff_pct: float | None = None
    ok: bool | None = None
    note: str = ""


class ServerInfo(_Model):
    """One scraped endpoint of a run (``servers`` in ``summary.json``): where, what it
    published, how the scrapes went and what its counters say against capdisc's rows."""

    url: str
    family: str
    label: str  # "vLLM", "llama.cpp", ...
    versions: list[str] = Field(default_factory=list)  # the versions it served (comparison)
    scrapes: int = 0
    failed: int = 0
    published: list[str] = Field(default_factory=list)  # quantities it published
    checks: list[ServerCheck] = Field(default_factory=list)
    # Scrapes where the server held more requests than capdisc had in flight, and by how many
    # at most: others' traffic on the same server.
    excess_scrapes: int = 0
    excess_max: float | None = None
    run: ServerFigures | None = None  # the whole run, first scrape to last
