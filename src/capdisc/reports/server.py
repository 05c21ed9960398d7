"""The server's own view in words: one line under a run's headline.

Reads a finished summary's ``server`` figures (per step, per version) and says what the
server itself reported at the capacity and at the level that failed, or for each
version of a comparison: ``Server (vLLM): at capacity (18 users) it ran 4, queued 0.3
on average, KV cache at most 62%, 410 tok/s; at 24 users its queue reached 12``. The
figures inform the verdicts beside them; they never decide one.
"""

from __future__ import annotations

from capdisc.schema import CompareSummary, DiscoverySummary, StepResult
from capdisc.servermetrics.figures import ServerFigures

__all__ = ["compare_server_line", "discovery_server_line", "server_text"]


def _n(value: float) -> str:
    """``4``, ``0.3``, ``12.5``: a count as short as it reads."""
    return f"{value:.1f}".removesuffix(".0")


def server_text(figures: ServerFigures) -> str:
    """``ran 4, queued 0.3 on average, KV cache at most 62%, 410 tok/s``."""
    parts: list[str] = []
    if figures.running_mean is not None:
        parts.append(f"ran {_n(figures.running_mean)}")
    if figures.waiting_mean is not None:
        parts.append(f"queued {_n(figures.waiting_mean)}")
    text = ", ".join(parts) + (" on average" if parts else "")
    extra: list[str] = []
    if figures.kv_cache_max is not None:
        extra.append(f"KV cache at most {figures.kv_cache_max:.0%}")
    if figures.tokens_per_s is not None:
        extra.append(f"{figures.tokens_per_s:,.0f} tok/s")
    if figures.preemptions:
        extra.append(f"{figures.preemptions:,} preemptions")
    if figures.prefix_cache_hit_rate is not None:
        extra.append(f"prefix cache hit {figures.prefix_cache_hit_rate:.0%}")
    return ", ".join(p for p in (text, *extra) if p) or "published no figure capdisc reads"


def _label(summary: DiscoverySummary | CompareSummary, figures: ServerFigures) -> str:
    return summary.servers[0].label if summary.servers else figures.family


def _latest(steps: list[StepResult], users: int, passed: bool | None = None) -> StepResult | None:
    found = [s for s in steps if s.users == users and (passed is None or s.passed == passed)]
    return found[-1] if found else None


def discovery_server_line(summary: DiscoverySummary) -> str | None:
    """What the server reported at the capacity and at the level above; None without figures."""
    cap = summary.capacity
    best = _latest(summary.steps, cap.users, passed=True) if cap is not None else None
    if best is None or best.server is None:
        measured = [s for s in summary.steps if s.server is not None]
        if not measured:
            return None
        last = measured[-1]
        assert last.server is not None
        return (
            f"Server ({_label(summary, last.server)}): at {last.users} users it "
            f"{server_text(last.server)}"
        )
    assert best.server is not None and cap is not None
    line = (
        f"Server ({_label(summary, best.server)}): at capacity ({best.users} users) it "
        f"{server_text(best.server)}"
    )
    above = _latest(summary.steps, cap.fail_users) if cap.fail_users is not None else None
    if above is not None and above.server is not None:
        figures = above.server
        if figures.waiting_max is not None:
            line += f"; at {above.users} users its queue reached {_n(figures.waiting_max)}"
        elif figures.running_max is not None:
            line += f"; at {above.users} users it ran up to {_n(figures.running_max)}"
    return line


def compare_server_line(summary: CompareSummary) -> str | None:
    """What the server reported for each version; None without figures."""
    parts = [
        f"{side.upper()} {server_text(v.server)}"
        for side, v in (("a", summary.a), ("b", summary.b))
        if v.server is not None
    ]
    if not parts:
        return None
    first = summary.a.server or summary.b.server
    assert first is not None
    return f"Server ({_label(summary, first)}): " + "; ".join(parts)
