"""The token-level limits of a command (``--slo-*``) as the one :class:`~capdisc.schema.Slo`."""

from __future__ import annotations

from capdisc.schema import Slo
from capdisc.settings import CompareSettings, RampSettings, StreamRampSettings

__all__ = ["slo_of", "slo_tiers"]


def slo_tiers(settings: RampSettings | CompareSettings) -> list[Slo]:
    """One SLO per tier, tightest first, in ms; empty when the settings set no limit.

    ``--slo-ttft 200ms,500ms,1s --slo-tpot 40ms`` gives three tiers, each with TPOT 40 ms.
    """
    if not isinstance(settings, StreamRampSettings | CompareSettings):
        return []
    if not settings.slo_limits_set:
        return []

    def ms(seconds: float | None) -> float | None:
        return None if seconds is None else seconds * 1000.0

    tiers: list[Slo] = []
    for index in range(settings.slo_tier_count):
        ttft, tpot, e2e = settings.slo_tier(index)
        tiers.append(
            Slo(
                ttft_ms=ms(ttft),
                tpot_ms=ms(tpot),
                e2e_ms=ms(e2e),
                percentile=settings.slo_percentile,
                min_goodput_pct=settings.min_goodput,
            )
        )
    return tiers


def slo_of(settings: RampSettings | CompareSettings) -> Slo | None:
    """The SLO the settings ask for (the loosest tier: the one the ramp climbs to), in ms;
    None when they set no limit (or have none)."""
    tiers = slo_tiers(settings)
    return tiers[-1] if tiers else None
