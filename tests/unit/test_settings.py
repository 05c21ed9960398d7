"""Settings fields with their own syntax: --workers N|auto and --master-bind HOST:PORT."""

from __future__ import annotations

import pytest

from capdisc.errors import UsageError
from capdisc.settings import CompareSettings, RampSettings, Settings, resolve


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
