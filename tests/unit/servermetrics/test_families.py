"""The known families read real ``/metrics`` pages: the right names, labels added up,
shares at their largest, and a metric a server lacks simply absent."""

from __future__ import annotations

from pathlib import Path

import pytest

from capdisc.servermetrics.families import (
    FAMILIES,
    QUANTITIES,
    Family,
    detect_family,
    family_named,
    read_metrics,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"

# vLLM's exposition as its PrometheusStatLogger writes it (prometheus_client: HELP and
# TYPE, counters with _total, one series per engine), two engines.
VLLM = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
vllm:num_requests_running{engine="1",model_name="m"} 2.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 1.0
vllm:num_requests_waiting{engine="1",model_name="m"} 0.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.62
vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.4
# HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of number of queried tokens.
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{engine="0",model_name="m"} 1000.0
# HELP vllm:prefix_cache_hits_total Prefix cache hits, in terms of number of cached tokens.
# TYPE vllm:prefix_cache_hits_total counter
vllm:prefix_cache_hits_total{engine="0",model_name="m"} 250.0
# HELP vllm:num_preemptions_total Cumulative number of preemption from the engine.
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{engine="0",model_name="m"} 2.0
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="m"} 5000.0
# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="m"} 7000.0
vllm:generation_tokens_total{engine="1",model_name="m"} 3000.0
# HELP vllm:request_success_total Count of successfully processed requests.
# TYPE vllm:request_success_total counter
vllm:request_success_total{engine="0",finished_reason="stop",model_name="m"} 40.0
vllm:request_success_total{engine="0",finished_reason="length",model_name="m"} 60.0
vllm:request_success_total{engine="0",finished_reason="abort",model_name="m"} 1.0
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.001",model_name="m"} 0.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="m"} 101.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="m"} 101.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="m"} 12.5
"""

# vLLM before 0.9: the KV cache under its older name.
VLLM_OLD = """\
vllm:num_requests_running{model_name="m"} 1.0
vllm:gpu_cache_usage_perc{model_name="m"} 0.25
vllm:gpu_prefix_cache_queries_total{model_name="m"} 10.0
vllm:gpu_prefix_cache_hits_total{model_name="m"} 5.0
"""

SGLANG = """\
# HELP sglang:num_running_reqs The number of running requests.
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{model_name="q",tp_rank="0"} 8.0
# HELP sglang:num_queue_reqs The number of requests in the waiting queue.
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{model_name="q",tp_rank="0"} 4.0
# HELP sglang:token_usage The token usage.
# TYPE sglang:token_usage gauge
sglang:token_usage{model_name="q",tp_rank="0"} 0.52
# HELP sglang:prompt_tokens_total Number of prefill tokens processed.
# TYPE sglang:prompt_tokens_total counter
sglang:prompt_tokens_total{model_name="q"} 900.0
# HELP sglang:generation_tokens_total Number of generation tokens processed.
# TYPE sglang:generation_tokens_total counter
sglang:generation_tokens_total{model_name="q"} 1200.0
# HELP sglang:cached_tokens_total Number of cached prompt tokens.
# TYPE sglang:cached_tokens_total counter
sglang:cached_tokens_total{model_name="q"} 300.0
# HELP sglang:num_requests_total Number of requests processed.
# TYPE sglang:num_requests_total counter
sglang:num_requests_total{model_name="q"} 12.0
# HELP sglang:num_retracted_requests_total Total number of retracted requests.
# TYPE sglang:num_retracted_requests_total counter
sglang:num_retracted_requests_total{model_name="q"} 1.0
"""

# TGI (metrics-rs exporter): counters without _total, histograms with _sum and _count.
TGI = """\
# TYPE tgi_queue_size gauge
tgi_queue_size 3
# TYPE tgi_batch_current_size gauge
tgi_batch_current_size 16
# TYPE tgi_request_success counter
tgi_request_success 250
# TYPE tgi_request_generated_tokens histogram
tgi_request_generated_tokens_bucket{le="1"} 0
tgi_request_generated_tokens_bucket{le="+Inf"} 250
tgi_request_generated_tokens_sum 32000
tgi_request_generated_tokens_count 250
# TYPE tgi_request_input_length histogram
tgi_request_input_length_sum 8000
tgi_request_input_length_count 250
"""


def _read(text: str, family: str) -> dict[str, float]:
    return dict(read_metrics(text, family_named(family), sent=1.0, ts=2.0).values)


def test_llama_server_page_as_the_real_build_publishes_it() -> None:
    """llama.cpp's own /metrics (a real transcript): its names, no labels, no KV share."""
    text = (FIXTURES / "llama-server" / "metrics.txt").read_text()
    family = detect_family(text)
    assert family is not None and family.name == "llamacpp"
    values = _read(text, "llamacpp")
    assert values == {
        "running": 0.0,
        "waiting": 0.0,
        "generated_tokens": 16.0,
        "prompt_tokens": 28.0,
        "prefix_hits": 0.0,
        "prefix_queries": 28.0,  # processed plus cached
        "decodes": 16.0,
        "busy_slots": 16.0,  # busy slots per decode (1) x decodes
    }
    assert "kv_cache" not in values and "completed" not in values  # simply absent


def test_vllm_series_add_up_and_the_kv_share_takes_the_largest() -> None:
    values = _read(VLLM, "vllm")
    assert values["running"] == 5.0  # two engines
    assert values["waiting"] == 1.0
    assert values["kv_cache"] == 0.62  # never 1.02
    assert values["completed"] == 101.0  # every finish reason
    assert values["generated_tokens"] == 10_000.0
    assert values["prompt_tokens"] == 5000.0
    assert values["preemptions"] == 2.0
    assert (values["prefix_hits"], values["prefix_queries"]) == (250.0, 1000.0)
    assert detect_family(VLLM) == family_named("vllm")


def test_older_vllm_names_are_read_when_the_new_ones_are_absent() -> None:
    values = _read(VLLM_OLD, "vllm")
    assert values == {"running": 1.0, "kv_cache": 0.25, "prefix_hits": 5.0, "prefix_queries": 10.0}


def test_sglang_and_tgi() -> None:
    sglang = _read(SGLANG, "sglang")
    assert sglang == {
        "running": 8.0,
        "waiting": 4.0,
        "kv_cache": 0.52,
        "generated_tokens": 1200.0,
        "prompt_tokens": 900.0,
        "completed": 12.0,
        "preemptions": 1.0,
        "prefix_hits": 300.0,
        "prefix_queries": 900.0,
    }
    tgi = _read(TGI, "tgi")
    assert tgi == {
        "running": 16.0,
        "waiting": 3.0,
        "generated_tokens": 32000.0,
        "prompt_tokens": 8000.0,
        "completed": 250.0,
    }
    assert detect_family(SGLANG) == family_named("sglang")
    assert detect_family(TGI) == family_named("tgi")


def test_a_page_without_a_known_family_and_a_page_that_is_not_prometheus() -> None:
    assert (
        detect_family("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 3\n")
        is None
    )
    with pytest.raises(ValueError):
        detect_family("<html><body>Not found</body></html>\n")
    with pytest.raises(ValueError):
        read_metrics(
            "vllm:num_requests_running{model_name= 3\n", family_named("vllm"), sent=0, ts=0
        )


def test_the_table_names_only_known_quantities_and_each_server_once() -> None:
    assert len({f.name for f in FAMILIES}) == len(FAMILIES)
    for family in FAMILIES:
        assert set(family.quantities) <= set(QUANTITIES)
        assert {"running", "waiting", "generated_tokens"} <= set(family.quantities)
    with pytest.raises(ValueError, match="unknown quantities"):
        Family("x", "X", {"speed": ("x_speed",)})
