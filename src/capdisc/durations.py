"""Durations as users type them: ``500ms``, ``30s``, ``8m``, ``1h`` or bare seconds."""

from __future__ import annotations

import math
import re

__all__ = ["format_duration", "parse_duration"]

_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h)?\s*$")
_FACTORS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: str | float | int, *, name: str = "duration") -> float:
    """Return ``value`` in seconds; raise ``ValueError`` naming ``name`` when it is not a duration."""
    if isinstance(value, bool):
        raise ValueError(f"{name}: expected a duration like 30s, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _PATTERN.match(value)
        if match is None:
            raise ValueError(
                f"{name}: {value!r} is not a duration (use 500ms, 30s, 8m, 1h or seconds)"
            )
        seconds = float(match.group(1)) * _FACTORS[match.group(2)]
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{name}: must be a non-negative duration, got {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """Render seconds the way a user would type them back (``1m30s``, ``2.5s``, ``250ms``)."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes}m" if minutes else f"{hours}h"
