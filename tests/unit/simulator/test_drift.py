"""The simulator's drift knob: service time growing linearly with the time since start.

The clock is the module's ``time.monotonic``, replaced here, so the test needs no
waiting and no timing: it checks the factor the capacity model applies.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from capdisc.simulator import capacity
from capdisc.simulator.capacity import SlotPool
from capdisc.simulator.config import SimulatorConfig
from capdisc.simulator.stats import StatsSnapshot


def service_at(monkeypatch: pytest.MonkeyPatch, config: SimulatorConfig, minutes: float) -> float:
    """Total service seconds of a 40-token answer ``minutes`` after the simulator started."""
    clock = [1000.0]
    monkeypatch.setattr(capacity.time, "monotonic", lambda: clock[0])
    model = SlotPool(config, StatsSnapshot())
    clock[0] += minutes * 60.0
    prefill, per_token = model.service_times()
    return prefill + 40 * per_token


def test_drift_grows_the_service_time_linearly(monkeypatch: pytest.MonkeyPatch) -> None:
    """+5% a minute: 1.05 x after one minute, 1.10 x after two; 0 keeps it flat."""
    flat = SimulatorConfig(prefill_ms=50, per_token_ms=10)
    drifting = flat.model_copy(update={"drift_per_min": 0.05})
    base = service_at(monkeypatch, flat, 0.0)
    assert base == pytest.approx(0.45)
    assert service_at(monkeypatch, flat, 10.0) == pytest.approx(base)
    assert service_at(monkeypatch, drifting, 0.0) == pytest.approx(base)
    assert service_at(monkeypatch, drifting, 1.0) == pytest.approx(base * 1.05)
    assert service_at(monkeypatch, drifting, 2.0) == pytest.approx(base * 1.10)


def test_drift_is_a_serve_flag_and_refuses_negative_values() -> None:
    """A described field becomes a `simulator serve` flag; a negative drift is an error."""
    from capdisc.cli import app

    result = CliRunner().invoke(app, ["simulator", "serve", "--help"], terminal_width=200)
    assert "--drift-per-min" in result.output
    with pytest.raises(ValueError, match="drift_per_min"):
        SimulatorConfig(drift_per_min=-0.1)
