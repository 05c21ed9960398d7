"""Settings fields with their own syntax: --workers N|auto and --master-bind HOST:PORT."""

from __future__ import annotations

import pytest

from capdisc.errors import UsageError
from capdisc.settings import CompareSettings, RampSettings, Settings, StreamRampSettings, resolve
from capdisc.strategies.slo import slo_of, slo_tiers


@pytest.mark.parametrize(("given", "value"), [("auto", "auto"), ("AUTO", "auto"), ("3", 3), (2, 2)])
def test_workers_is_a_number_or_auto(given: object, value: object) -> None:
    assert resolve(RampSettings, None, Settings(), {"workers": given}).workers == value
    profile = CompareSettings.model_validate({"workers": given})
    assert profile.workers == value  # the profile's key: workers = "auto"


@pytest.mark.parametrize("given", ["x", "-1", "1.5", -1, True])
def test_a_bad_number_of_workers_names_the_flag(given: object) -> None:
    with pytest.raises(UsageError, match=r"^--workers: expected a number of workers"):
        resolve(RampSettings, None, Settings(), {"workers": given})


def test_the_master_binds_loopback_unless_asked() -> None:
    assert RampSettings().master_bind == "127.0.0.1:5557"
    assert RampSettings(master_bind="0.0.0.0:5557").master_bind == "0.0.0.0:5557"
    assert RampSettings(master_bind="[::]:6000").master_bind == "[::]:6000"
    for bad in ("0.0.0.0", ":5557", "host:port", "h:70000"):
        with pytest.raises(UsageError, match=r"^--master-bind: expected HOST:PORT"):
            resolve(RampSettings, None, Settings(), {"master_bind": bad})


def test_slo_tiers_pair_up_by_position_from_a_flag_or_a_profile_list() -> None:
    """Item 2: --slo-ttft 200ms,500ms,1s gives three tiers, tightest first; a single limit
    of another figure holds in every tier."""
    settings = resolve(
        StreamRampSettings,
        None,
        Settings(),
        {"slo_ttft": "200ms,500ms,1s", "slo_tpot": "40ms"},
    )
    tiers = slo_tiers(settings)
    assert [(t.ttft_ms, t.tpot_ms) for t in tiers] == [(200, 40), (500, 40), (1000, 40)]
    assert slo_of(settings) == tiers[-1]
    profiled = StreamRampSettings(slo_e2e=["2s", "4s"], slo_ttft=["300ms", "600ms"])  # type: ignore[arg-type]
    assert [(t.ttft_ms, t.e2e_ms) for t in slo_tiers(profiled)] == [(300, 2000), (600, 4000)]
    with pytest.raises(UsageError, match=r"^--slo-tpot: slo_tpot gives 2 limits and slo_ttft 3"):
        resolve(StreamRampSettings, None, Settings(), {"slo_ttft": "1s,2s,3s", "slo_tpot": "1s,2s"})
    with pytest.raises(UsageError, match=r"^--slo-ttft: tiers go from the tightest"):
        resolve(StreamRampSettings, None, Settings(), {"slo_ttft": "1s,500ms"})
    with pytest.raises(UsageError, match=r"^--slo-ttft: slo_ttft takes one limit in compare"):
        resolve(CompareSettings, None, Settings(), {"slo_ttft": "1s,2s"})


def test_slo_limits_are_durations_and_goodput_needs_one() -> None:
    settings = resolve(
        StreamRampSettings,
        None,
        Settings(),
        {"slo_ttft": "500ms", "slo_tpot": "40ms", "min_goodput": 95},
    )
    assert (settings.slo_ttft, settings.slo_tpot, settings.slo_percentile) == (
        (0.5,),
        (0.04,),
        95.0,
    )
    slo = slo_of(settings)
    assert slo is not None and slo.ttft_ms == 500 and slo.min_goodput_pct == 95
    assert slo_of(StreamRampSettings()) is None
    assert slo_of(RampSettings()) is None
    with pytest.raises(UsageError, match=r"^--min-goodput: min_goodput needs at least one"):
        resolve(StreamRampSettings, None, Settings(), {"min_goodput": 90})
    with pytest.raises(UsageError, match=r"^--slo-percentile: "):
        resolve(CompareSettings, None, Settings(), {"slo_percentile": 100})
    with pytest.raises(UsageError, match=r"^--slo-ttft: "):
        resolve(StreamRampSettings, None, Settings(), {"slo_ttft": "soon"})
