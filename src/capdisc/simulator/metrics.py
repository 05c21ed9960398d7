"""``GET /metrics``: the simulator's state in Prometheus text, under vLLM's names.

So capdisc's server figures (``--server-metrics``) work offline, in every test and the
demo: ``vllm:num_requests_running`` (busy slots), ``vllm:num_requests_waiting``
(requests queued for a slot), ``vllm:kv_cache_usage_perc`` (the share of slots busy:
the simulator's KV cache is its slots), the token counters, the requests served
(``vllm:request_success_total``), preemptions (never, so always 0) and, with
``prompt_cache`` on, the prefix-cache counters. Counters restart from 0 on
``POST /stats/reset``, as a restarted server's would.
"""

from __future__ import annotations

from capdisc.simulator.config import SimulatorConfig
from capdisc.simulator.stats import StatsSnapshot

__all__ = ["CONTENT_TYPE", "metrics_text"]

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def metrics_text(stats: StatsSnapshot, config: SimulatorConfig) -> str:
    """The page, one HELP/TYPE pair and one sample per metric."""
    labels = f'model_name="{_escape(config.model)}",engine="0"'
    metrics: list[tuple[str, str, str, float, str]] = [
        ("vllm:num_requests_running", "gauge", "Requests in model execution.", stats.active, ""),
        ("vllm:num_requests_waiting", "gauge", "Requests waiting.", stats.queued, ""),
        (
            "vllm:kv_cache_usage_perc",
            "gauge",
            "KV-cache usage (busy slots). 1 means 100 percent usage.",
            stats.active / config.slots,
            "",
        ),
        ("vllm:prompt_tokens", "counter", "Prefill tokens processed.", stats.prompt_tokens, ""),
        (
            "vllm:generation_tokens",
            "counter",
            "Generation tokens processed.",
            stats.generated_tokens,
            "",
        ),
        (
            "vllm:request_success",
            "counter",
            "Successfully processed requests.",
            stats.served,
            ',finished_reason="stop"',
        ),
        ("vllm:num_preemptions", "counter", "Preemptions (never).", 0, ""),
    ]
    if config.prompt_cache:
        metrics += [
            (
                "vllm:prefix_cache_queries",
                "counter",
                "Prefix cache queries, in tokens.",
                stats.prompt_cache_queries,
                "",
            ),
            (
                "vllm:prefix_cache_hits",
                "counter",
                "Prefix cache hits, in tokens.",
                stats.prompt_cache_hit_tokens,
                "",
            ),
        ]
    lines = []
    for name, kind, help_text, value, extra in metrics:
        sample = f"{name}_total" if kind == "counter" else name
        lines += [
            f"# HELP {name} {help_text}",
            f"# TYPE {name} {kind}",
            f"{sample}{{{labels}{extra}}} {float(value)!r}",
        ]
    return "\n".join(lines) + "\n"
