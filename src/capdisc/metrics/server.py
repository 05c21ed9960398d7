"""Cross-checks that protect the numbers: the server's own counters against capdisc's rows.

Over the whole run (the first scrape, before any load, to the last, after the last
request ended):

- **requests**: the requests the server says it finished against capdisc's requests it
  answered (HTTP 200); **output tokens**: the tokens it says it generated against the
  output tokens of those answers. A difference over 1% means someone else loads the
  server (more on its side) or requests were lost on the way (more on capdisc's).
- **shared capacity**: at each scrape, the requests the server holds (running and
  waiting) against the most of capdisc's own that were in flight while the scrape was
  answered. A server holding more, in several scrapes, serves other traffic too: the
  capacity measured is what was left to capdisc.

Each check counts model calls: a request of ``batch`` or ``stream``, a round of a
client-orchestrated tool task; a server-orchestrated task makes several calls in one
request, so its counts are not compared. A run cut by a stop (requests cut in flight)
is not compared either: the server went on with them. Nothing here decides a verdict.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Literal

import numpy as np
import pandas as pd

from capdisc.metrics.frame import cut_mask
from capdisc.records import is_round
from capdisc.servermetrics.families import Reading
from capdisc.servermetrics.figures import ServerCheck, ServerInfo, window_figures

__all__ = ["MAX_DIFF_PCT", "check_server"]

# Counts further apart than this (percent of capdisc's) are worth a warning.
MAX_DIFF_PCT = 1.0
# Scrapes showing more requests on the server than capdisc had in flight before that is
# a warning: at least this many, and this share of the scrapes (a gauge a step stale).
_EXCESS_SCRAPES = 3
_EXCESS_SHARE = 0.05


def _calls(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows that are one model call each (a tool task's own row sums its rounds)."""
    names = rows["name"].astype(str)
    rounds = names.map(is_round)
    return rows[names.isin(("batch", "stream")) | rounds]


def _in_flight(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows whose request was in flight from start to end: model calls, or whole
    server-orchestrated tasks (their calls run one at a time within them)."""
    names = rows["name"].astype(str)
    if names.map(is_round).any():
        return _calls(rows)
    return rows


def _check(
    quantity: Literal["requests", "output_tokens"],
    server: float | None,
    capdisc: float | None,
    note: str = "",
) -> ServerCheck:
    if note or server is None or capdisc is None:
        return ServerCheck(quantity=quantity, server=server, capdisc=capdisc, note=note)
    diff = (server - capdisc) / capdisc * 100.0 if capdisc else (0.0 if not server else None)
    ok = diff is not None and abs(diff) <= MAX_DIFF_PCT
    return ServerCheck(
        quantity=quantity,
        server=round(server, 3),
        capdisc=capdisc,
        diff_pct=None if diff is None else round(diff, 3),
        ok=ok,
    )


def _excess(readings: Sequence[Reading], rows: pd.DataFrame) -> tuple[int, float | None]:
    """Scrapes where the server held more than capdisc had in flight, and the most more."""
    starts = np.sort(rows["ts_start"].to_numpy(dtype=float))
    ends = np.sort(rows["ts_end"].to_numpy(dtype=float))
    count, most = 0, None
    for reading in readings:
        held = [reading.values[q] for q in ("running", "waiting") if q in reading.values]
        if not held:
            continue
        # Ours in flight at some moment between sending the scrape and reading its
        # answer: started by the time it was read, not ended before it was sent.
        ours = int(np.searchsorted(starts, reading.ts, "right")) - int(
            np.searchsorted(ends, reading.sent, "left")
        )
        more = sum(held) - ours
        if more >= 1:
            count += 1
            most = more if most is None else max(most, more)
    return count, most


def check_server(
    frame: pd.DataFrame,
    readings: Sequence[Reading],
    *,
    url: str,
    family: str,
    label: str,
    versions: Collection[str],
    failed: int = 0,
    last_error: str = "",
) -> tuple[ServerInfo, list[str]]:
    """The endpoint's summary with its checks, and the warnings they raise."""
    rows = frame[frame["version"].isin(list(versions))] if len(frame) else frame
    warnings: list[str] = []
    where = f"the server at {url}"
    scrapes = len(readings) + failed
    if failed and failed > 0.1 * scrapes:
        warnings.append(
            f"{failed} of {scrapes} scrapes of {url} failed (last: {last_error}): its figures "
            "cover only the others"
        )
    run = window_figures(readings, family, readings[0].ts, readings[-1].ts) if readings else None
    published = sorted({q for r in readings for q in r.values})
    info = ServerInfo(
        url=url,
        family=family,
        label=label,
        versions=sorted(versions),
        scrapes=scrapes,
        failed=failed,
        published=published,
        run=run,
    )
    if run is None or not len(rows):
        return info, warnings
    calls = _calls(rows)
    note = ""
    if not len(calls):
        note = "not compared: a server-orchestrated task makes several model calls"
    elif bool(cut_mask(rows).any()):
        note = "not compared: requests were cut in flight by the stop (the server went on)"
    answered = calls[calls["status"] == 200]
    checks = []
    if "completed" in run.counters:
        checks.append(_check("requests", run.counters["completed"], float(len(answered)), note))
    if "generated_tokens" in run.counters:
        tokens = answered["output_tokens"]
        estimated = answered["tokens_estimated"].fillna(0).astype(int).eq(1).any()
        token_note = note or (
            "not compared: some answers carried no usage (tokens counted from events)"
            if estimated or tokens.isna().any()
            else ""
        )
        checks.append(
            _check(
                "output_tokens", run.counters["generated_tokens"], float(tokens.sum()), token_note
            )
        )
    for check in checks:
        if check.ok is False:
            more = (check.server or 0) > (check.capdisc or 0)
            what = "finished requests" if check.quantity == "requests" else "generated tokens"
            why = "another client loads this server" if more else "requests were lost on the way"
            change = "n/a" if check.diff_pct is None else f"{check.diff_pct:+.1f}%"
            warnings.append(
                f"{where} counted {check.server:,.0f} {what} over the run, capdisc's answers "
                f"{check.capdisc:,.0f} ({change}, more than {MAX_DIFF_PCT:g}% apart): {why}"
            )
    count, most = _excess(readings, _in_flight(rows))
    info = info.model_copy(update={"checks": checks, "excess_scrapes": count, "excess_max": most})
    if count >= max(_EXCESS_SCRAPES, _EXCESS_SHARE * len(readings)):
        warnings.append(
            f"{where} held more requests than capdisc had in flight in {count} of "
            f"{len(readings)} scrapes (up to {most:g} more): other traffic shares this server, "
            "so the capacity measured is what was left to capdisc"
        )
    return info, warnings
