"""The token-level limits of a command (``--slo-*``) as the one :class:`~capdisc.schema.Slo`."""

from __future__ import annotations

from capdisc.schema import Slo
from capdisc.settings import CompareSettings, RampSettings, StreamRampSettings

__all__ = ["slo_of"]


def slo_of(settings: RampSettings | CompareSettings) -> Slo | None:
    """The SLO the settings ask for, in ms; None when they set no limit (or have none)."""
    if not isinstance(settings, StreamRampSettings | CompareSettings):
        return None
    if not settings.slo_limits_set:
        return None

    def ms(seconds: float | None) -> float | None:
        return None if seconds is None else seconds * 1000.0

    return Slo(
        ttft_ms=ms(settings.slo_ttft),
        tpot_ms=ms(settings.slo_tpot),
        e2e_ms=ms(settings.slo_e2e),
        percentile=settings.slo_percentile,
        min_goodput_pct=settings.min_goodput,
    )
