"""The cross-checks of the server's own counters against capdisc's rows: equal counts
pass quietly; more on the server's side, fewer, or more requests held than capdisc had
in flight are warnings; a run cut by a stop is not compared."""

from __future__ import annotations

from capdisc.metrics.frame import records_frame
from capdisc.metrics.server import check_server
from capdisc.records import STOPPED_IN_FLIGHT, RequestRecord
from capdisc.servermetrics.families import Reading

TOKENS = 40


def _rows(
    count: int, *, every: float = 0.1, lasts: float = 0.3, version: str = "demo"
) -> list[RequestRecord]:
    """``count`` answered requests, one every ``every`` s from t=1, each ``lasts`` s."""
    rows = []
    for i in range(count):
        start = 1.0 + i * every
        rows.append(
            RequestRecord(
                start, start, start + lasts, i % 4, 1, version, "batch", 200, 1,
                lasts * 1000, output_tokens=TOKENS, tokens_estimated=0,
            )
        )  # fmt: skip
    return rows


def _in_flight(rows: list[RequestRecord], t: float) -> int:
    return sum(r.ts_start <= t < r.ts_end for r in rows)


def _readings(
    rows: list[RequestRecord], *, extra_done: int = 0, extra_running: float = 0.0
) -> list[Reading]:
    """A scrape every 0.5 s (between the rows' starts and ends, never on one) from before
    the first row to after the last: the server ran
    what was in flight (plus ``extra_running``), and finished what had ended (plus
    ``extra_done`` requests of someone else, spread over the run)."""
    end = max(r.ts_end for r in rows) + 1.0
    readings, t, n = [], 0.25, 0
    while t <= end + 1e-9:
        done = sum(r.ts_end <= t for r in rows) + round(extra_done * min(t / end, 1.0))
        readings.append(
            Reading(
                sent=t - 0.005,
                ts=t,
                values={
                    "running": _in_flight(rows, t) + extra_running,
                    "waiting": 0.0,
                    "completed": float(done),
                    "generated_tokens": float(done * TOKENS),
                },
            )
        )
        n += 1
        t = 0.25 + n * 0.5
    return readings


def _check(rows: list[RequestRecord], readings: list[Reading]) -> tuple[object, list[str]]:
    return check_server(
        records_frame(rows),
        readings,
        url="http://127.0.0.1:8000/metrics",
        family="vllm",
        label="vLLM",
        versions={"demo"},
    )


def test_equal_counts_and_no_other_traffic_pass_quietly() -> None:
    rows = _rows(100)
    info, warnings = _check(rows, _readings(rows))
    assert warnings == []
    checks = {c.quantity: c for c in info.checks}  # type: ignore[attr-defined]
    assert checks["requests"].server == checks["requests"].capdisc == 100
    assert checks["requests"].ok is True and checks["requests"].diff_pct == 0
    assert checks["output_tokens"].server == 100 * TOKENS and checks["output_tokens"].ok
    assert info.excess_scrapes == 0  # type: ignore[attr-defined]


def test_another_client_shows_as_more_on_the_server_and_as_shared_capacity() -> None:
    rows = _rows(100)
    info, warnings = _check(rows, _readings(rows, extra_done=5, extra_running=2))
    text = " | ".join(warnings)
    assert "counted 105 finished requests over the run, capdisc's answers 100 (+5.0%" in text
    assert "another client loads this server" in text
    assert "other traffic shares this server" in text and "up to 2 more" in text
    assert info.excess_scrapes >= 3  # type: ignore[attr-defined]


def test_requests_lost_on_the_way_show_as_fewer_on_the_server() -> None:
    rows = _rows(100)
    readings = _readings(rows[:97])  # the server never finished three of them
    _, warnings = _check(rows, readings)
    assert any("-3.0%" in w and "requests were lost on the way" in w for w in warnings)


def test_within_one_percent_is_not_a_warning() -> None:
    rows = _rows(200)
    _, warnings = _check(rows, _readings(rows, extra_done=2))  # +1.0% exactly
    assert warnings == []


def test_a_stale_gauge_in_one_scrape_is_no_shared_capacity() -> None:
    rows = _rows(100)
    readings = _readings(rows)
    stale = readings[5]
    readings[5] = Reading(
        stale.sent, stale.ts, {**stale.values, "running": stale.values["running"] + 1}
    )
    info, warnings = _check(rows, readings)
    assert warnings == [] and info.excess_scrapes == 1  # type: ignore[attr-defined]


def test_a_run_cut_by_a_stop_is_not_compared() -> None:
    rows = _rows(50)
    last = rows[-1]
    rows[-1] = last._replace(status=0, ok=0, error=STOPPED_IN_FLIGHT)
    info, warnings = _check(rows, _readings(rows, extra_done=5))
    assert not any("finished requests" in w for w in warnings)
    assert all(c.ok is None and "cut in flight" in c.note for c in info.checks)  # type: ignore[attr-defined]


def test_scrapes_that_fail_are_said() -> None:
    rows = _rows(20)
    info, warnings = check_server(
        records_frame(rows), _readings(rows), url="http://h/metrics", family="vllm",
        label="vLLM", versions={"demo"}, failed=20, last_error="ReadTimeout",
    )  # fmt: skip
    assert info.failed == 20
    assert any("20 of" in w and "ReadTimeout" in w for w in warnings)
