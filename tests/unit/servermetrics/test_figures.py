"""A window's server figures: gauges over its scrapes, counters as increases (a reset
restarts from zero), and windows joined as one."""

from __future__ import annotations

import pytest

from capdisc.servermetrics.families import Reading
from capdisc.servermetrics.figures import combine, window_figures


def _reading(ts: float, **values: float) -> Reading:
    return Reading(sent=ts - 0.01, ts=ts, values=values)


def test_gauges_and_counters_over_a_window() -> None:
    readings = [
        _reading(9.0, running=9, waiting=9, kv_cache=0.9, generated_tokens=0),  # before
        _reading(10.0, running=2, waiting=0, kv_cache=0.2, generated_tokens=100, completed=1),
        _reading(11.0, running=4, waiting=2, kv_cache=0.6, generated_tokens=300, completed=3),
        _reading(12.0, running=3, waiting=1, kv_cache=0.4, generated_tokens=500, completed=5),
        _reading(13.5, running=9, waiting=9, generated_tokens=9999),  # after
    ]
    figures = window_figures(readings, "vllm", 10.0, 12.0)
    assert figures is not None
    assert figures.samples == 3
    assert (figures.running_mean, figures.running_max) == (3.0, 4.0)
    assert (figures.waiting_mean, figures.waiting_max) == (1.0, 2.0)
    assert figures.kv_cache_max == 0.6
    assert figures.counted_s == 2.0
    assert figures.tokens_per_s == 200.0  # 400 tokens over 2 s
    assert figures.completed == 4
    assert figures.preemptions is None  # not published
    assert figures.prefix_cache_hit_rate is None


def test_a_counter_that_goes_down_was_reset() -> None:
    readings = [
        _reading(0.0, generated_tokens=1000),
        _reading(1.0, generated_tokens=1100),
        _reading(2.0, generated_tokens=50),  # the server restarted: 50 since
        _reading(3.0, generated_tokens=150),
    ]
    figures = window_figures(readings, "vllm", 0.0, 3.0)
    assert figures is not None
    assert figures.counters["generated_tokens"] == 250.0
    assert figures.tokens_per_s == pytest.approx(250 / 3, rel=1e-3)


def test_shares_of_counters() -> None:
    readings = [
        _reading(0.0, prefix_hits=0, prefix_queries=0, decodes=10, busy_slots=10),
        _reading(2.0, prefix_hits=30, prefix_queries=120, decodes=20, busy_slots=45),
    ]
    figures = window_figures(readings, "llamacpp", 0.0, 2.0)
    assert figures is not None
    assert figures.prefix_cache_hit_rate == 0.25
    assert figures.batch_mean == 3.5  # 35 busy slots over 10 decode calls


def test_a_window_without_scrapes_has_no_figures_and_one_scrape_no_rates() -> None:
    readings = [_reading(5.0, running=1, generated_tokens=10)]
    assert window_figures(readings, "vllm", 6.0, 9.0) is None
    one = window_figures(readings, "vllm", 4.0, 9.0)
    assert one is not None and one.running_mean == 1.0 and one.tokens_per_s is None


def test_windows_combine_weighted_by_their_scrapes_and_time() -> None:
    first = window_figures(
        [_reading(t, running=2, waiting=0, generated_tokens=100 * t) for t in range(0, 5)],
        "vllm",
        0,
        4,
    )
    second = window_figures(
        [_reading(t, running=5, waiting=3, generated_tokens=300 * t) for t in range(10, 12)],
        "vllm",
        10,
        11,
    )
    both = combine([first, None, second])
    assert both is not None
    assert both.samples == 7
    assert both.running_mean == pytest.approx((2 * 5 + 5 * 2) / 7, abs=1e-3)
    assert both.running_max == 5.0 and both.waiting_max == 3.0
    assert both.counted_s == 5.0
    assert both.tokens_per_s == (400 + 300) / 5
    assert combine([None, None]) is None
    assert combine([first]) == first
