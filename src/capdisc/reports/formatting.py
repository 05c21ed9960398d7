"""How the reports write numbers: milliseconds, signed changes, shares, rates, p-values.

Shared by the terminal, the comparison's words and tables, and the markdown section, so
a figure reads the same everywhere.
"""

from __future__ import annotations

import math

from capdisc.durations import format_duration
from capdisc.schema import Goodput, Slo, TokenStats

__all__ = [
    "MISSING",
    "format_int",
    "format_ms",
    "format_p_value",
    "format_pct",
    "format_percent",
    "format_rps",
    "format_share",
    "format_tps",
    "goodput_text",
    "slo_text",
]

MISSING = "-"
_MINUS = "\u2212"  # a real minus sign: a hyphen next to a number reads as a dash


def format_ms(ms: float | None) -> str:
    """Milliseconds as a person reads them: ``0.34 ms``, ``7.2 ms``, ``452 ms``, ``1.24 s``,
    ``12.5 s``, ``2m05s``: under a millisecond two significant digits (a fast server's
    time per token is a fraction of one, never "0 ms"), under ten one decimal."""
    if ms is None or not math.isfinite(ms):
        return MISSING
    if ms == 0:
        return "0 ms"
    if 0 < ms < 0.995:
        return f"{ms:.2g} ms"
    if ms < 9.95:
        return f"{ms:.1f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    seconds = ms / 1000
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return format_duration(seconds)


def format_pct(pct: float | None, *, unit: str = "%", digits: int = 1) -> str:
    """A signed difference: ``+3.0%``, ``±0.0%``, and negatives with a real minus (U+2212)."""
    if pct is None or not math.isfinite(pct):
        return MISSING
    text = f"{abs(pct):.{digits}f}{unit}"
    if round(pct, digits) == 0:
        return "\u00b1" + text
    return (_MINUS if pct < 0 else "+") + text


def format_percent(pct: float | None) -> str:
    return MISSING if pct is None else f"{pct:.1f}%"


def format_p_value(p: float | None) -> str:
    """``p = 0.031``, ``p = 1.2e-40``; ``p < 1e-300`` when it underflowed to 0."""
    if p is None or not math.isfinite(p):
        return "p = " + MISSING
    if p == 0:
        return "p < 1e-300"
    if p >= 0.01:
        return f"p = {p:.2f}"
    if p >= 0.001:
        return f"p = {p:.4f}"
    return f"p = {p:.1e}".replace("e-0", "e-")


def format_rps(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def format_share(value: float) -> str:
    return f"{100 * value:.1f}%"


def format_int(value: int) -> str:
    return f"{value:,}"


def slo_text(slo: Slo) -> str:
    """``TTFT <= 500 ms, TPOT <= 50 ms at p95; goodput >= 90%``."""
    labels = (("TTFT", slo.ttft_ms), ("TPOT", slo.tpot_ms), ("end-to-end", slo.e2e_ms))
    limits = ", ".join(
        f"{name} <= {f'{ms:g} ms' if ms < 1000 else format_ms(ms)}"
        for name, ms in labels
        if ms is not None
    )
    text = f"{limits} at p{slo.percentile:g}"
    if slo.min_goodput_pct is not None:
        text += f"; goodput >= {slo.min_goodput_pct:g}%"
    return text


def goodput_text(good: Goodput) -> str:
    """``96.5% (193/200, 9.7 req/s)``: the share of requests that met every limit."""
    rate = f", {format_rps(good.rps)} req/s" if good.rps is not None else ""
    return f"{format_percent(good.pct)} ({format_int(good.good)}/{format_int(good.requests)}{rate})"


def format_tps(tokens: TokenStats) -> str:
    """Output tokens per second, marked ``~`` when counted from events (no usage sent)."""
    value = tokens.output_tokens_per_s
    if value is None:
        return MISSING
    return f"{'~' if tokens.estimated else ''}{value:,.1f}"
