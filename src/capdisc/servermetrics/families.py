"""The Prometheus families capdisc knows, and one scrape of ``/metrics`` read through them.

Every LLM server publishes its state under its own names. :data:`FAMILIES` maps
capdisc's quantities to those names, one entry per server: supporting another server
(or a renamed metric) is one entry here. The names were checked against each project's
own source: llama.cpp ``tools/server/server-task.cpp`` (``to_metrics``), vLLM
``vllm/v1/metrics/loggers.py``, SGLang ``python/sglang/srt/metrics/collector.py``, TGI
``router/src`` (``queue.rs``, ``server.rs``). A metric a server does not publish is
simply absent, and so is every figure made from it.

Quantities (:data:`GAUGES` are values now, :data:`COUNTERS` counts since the server
started):

- ``running``: requests being generated; ``waiting``: requests queued for a slot;
  ``kv_cache``: the share of the KV cache in use, 0 to 1;
- ``generated_tokens``, ``prompt_tokens`` (prompt tokens processed), ``completed``
  (requests finished), ``preemptions``; ``prefix_hits`` and ``prefix_queries`` (prompt
  tokens served from, and looked up in, the prefix cache); ``decodes`` and
  ``busy_slots`` (llama.cpp: decode calls, and busy slots summed over them).

Series of one name with different labels (engines, models, finish reasons) add up; a
share (``kv_cache``) takes the largest. The text is parsed by ``prometheus-client``'s
own parser, on the lines of the names a family needs (a server publishes hundreds of
histogram buckets capdisc never reads).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "COUNTERS",
    "FAMILIES",
    "GAUGES",
    "QUANTITIES",
    "Family",
    "Product",
    "Reading",
    "Sum",
    "detect_family",
    "family_named",
    "read_metrics",
]

GAUGES = ("running", "waiting", "kv_cache")
COUNTERS = (
    "generated_tokens",
    "prompt_tokens",
    "completed",
    "preemptions",
    "prefix_hits",
    "prefix_queries",
    "decodes",
    "busy_slots",
)
QUANTITIES = GAUGES + COUNTERS
# Shares: the largest series counts, never their sum (two engines at 60% are not 120%).
_SHARES = frozenset({"kv_cache"})


@dataclass(frozen=True)
class Sum:
    """The sum of several metrics (each summed over its series)."""

    names: tuple[str, ...]


@dataclass(frozen=True)
class Product:
    """The product of several metrics: llama.cpp publishes busy slots per decode call and
    the decode calls, whose product is a counter of busy slots."""

    names: tuple[str, ...]


# One metric name, or a sum or product of several.
Source = str | Sum | Product


def _names(source: Source) -> tuple[str, ...]:
    return (source,) if isinstance(source, str) else source.names


@dataclass(frozen=True)
class Family:
    """One server's names: for each quantity, its sources in order of preference (the
    first one published wins: a current name before the one it replaced)."""

    name: str
    label: str
    quantities: Mapping[str, tuple[Source, ...]]
    names: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        unknown = set(self.quantities) - set(QUANTITIES)
        if unknown:
            raise ValueError(f"family {self.name}: unknown quantities {sorted(unknown)}")
        found = {n for sources in self.quantities.values() for s in sources for n in _names(s)}
        object.__setattr__(self, "names", frozenset(found))


FAMILIES: tuple[Family, ...] = (
    Family(
        "vllm",
        "vLLM",
        {
            "running": ("vllm:num_requests_running",),
            "waiting": ("vllm:num_requests_waiting",),
            # Renamed in 0.9; the older name is kept by older servers.
            "kv_cache": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
            "generated_tokens": ("vllm:generation_tokens_total",),
            "prompt_tokens": ("vllm:prompt_tokens_total",),
            # One series per finish reason (stop, length, abort): they add up.
            "completed": ("vllm:request_success_total",),
            "preemptions": ("vllm:num_preemptions_total",),
            "prefix_hits": ("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total"),
            "prefix_queries": (
                "vllm:prefix_cache_queries_total",
                "vllm:gpu_prefix_cache_queries_total",
            ),
        },
    ),
    Family(
        "llamacpp",
        "llama.cpp",
        {
            "running": ("llamacpp:requests_processing",),
            "waiting": ("llamacpp:requests_deferred",),
            # Older builds only.
            "kv_cache": ("llamacpp:kv_cache_usage_ratio",),
            # Added to when a request's slot is released: it moves per completed request.
            "generated_tokens": ("llamacpp:tokens_predicted_total",),
            # Processed prompt tokens, those reused from the cache excluded.
            "prompt_tokens": ("llamacpp:prompt_tokens_total",),
            "prefix_hits": ("llamacpp:prompt_tokens_cached_total",),
            "prefix_queries": (
                Sum(("llamacpp:prompt_tokens_total", "llamacpp:prompt_tokens_cached_total")),
            ),
            "decodes": ("llamacpp:n_decode_total",),
            "busy_slots": (
                Product(("llamacpp:n_busy_slots_per_decode", "llamacpp:n_decode_total")),
            ),
        },
    ),
    Family(
        "sglang",
        "SGLang",
        {
            "running": ("sglang:num_running_reqs",),
            "waiting": ("sglang:num_queue_reqs",),
            "kv_cache": ("sglang:token_usage",),
            "generated_tokens": ("sglang:generation_tokens_total",),
            "prompt_tokens": ("sglang:prompt_tokens_total",),
            "completed": ("sglang:num_requests_total",),
            # SGLang retracts (preempts) requests when its KV cache runs out.
            "preemptions": ("sglang:num_retracted_requests_total",),
            "prefix_hits": ("sglang:cached_tokens_total",),
            "prefix_queries": ("sglang:prompt_tokens_total",),
        },
    ),
    Family(
        "tgi",
        "TGI",
        {
            "running": ("tgi_batch_current_size",),
            "waiting": ("tgi_queue_size",),
            # Histograms: their _sum is the running total.
            "generated_tokens": ("tgi_request_generated_tokens_sum",),
            "prompt_tokens": ("tgi_request_input_length_sum",),
            "completed": ("tgi_request_success",),
        },
    ),
)


def family_named(name: str) -> Family:
    """The family called ``name`` (``vllm``, ``llamacpp``, ``sglang``, ``tgi``)."""
    for family in FAMILIES:
        if family.name == name:
            return family
    raise KeyError(name)


@dataclass(frozen=True)
class Reading:
    """One scrape: each quantity the server published, between ``sent`` and ``ts``
    (Unix seconds: when the request went out, and when its answer was read)."""

    sent: float
    ts: float
    values: Mapping[str, float]


def _samples(text: str, keep: frozenset[str] | None) -> dict[str, list[float]]:
    """Every sample's values by name (its series, whatever their labels).

    Raises ``ValueError`` when the text is not Prometheus text. With ``keep``, only the
    lines of those names are parsed (comment lines too are dropped: without ``# TYPE``
    the parser keeps each sample's own name, ``_total`` included).
    """
    from prometheus_client.parser import text_string_to_metric_families

    if keep is not None:
        text = "\n".join(_kept(text.splitlines(), keep)) + "\n"
    found: dict[str, list[float]] = {}
    for metric in text_string_to_metric_families(text):
        for sample in metric.samples:
            found.setdefault(sample.name, []).append(float(sample.value))
    return found


def _kept(lines: Iterable[str], keep: frozenset[str]) -> Iterable[str]:
    for line in lines:
        if not line or line.startswith("#"):
            continue
        end = len(line)
        for stop in ("{", " ", "\t"):
            at = line.find(stop)
            if at != -1:
                end = min(end, at)
        if line[:end] in keep:
            yield line


def detect_family(text: str) -> Family | None:
    """The first known family with a metric in ``text``; None for none.

    Raises ``ValueError`` when the text is not Prometheus text.
    """
    published = set(_samples(text, None))
    for family in FAMILIES:
        if family.names & published:
            return family
    return None


def _value(source: Source, samples: Mapping[str, list[float]], share: bool) -> float | None:
    values = []
    for name in _names(source):
        series = [v for v in samples.get(name, ()) if math.isfinite(v)]
        if not series:
            return None
        values.append(max(series) if share else sum(series))
    if isinstance(source, Product):
        return math.prod(values)
    return sum(values)


def read_metrics(text: str, family: Family, *, sent: float, ts: float) -> Reading:
    """The quantities ``family`` publishes in ``text``; ``ValueError`` if it is not
    Prometheus text."""
    samples = _samples(text, family.names)
    values: dict[str, float] = {}
    for quantity, sources in family.quantities.items():
        for source in sources:
            value = _value(source, samples, quantity in _SHARES)
            if value is not None:
                values[quantity] = value
                break
    return Reading(sent=sent, ts=ts, values=values)
