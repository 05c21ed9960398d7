"""A load process watching itself: per-second samples, windows summed up, client.csv."""

from __future__ import annotations

import time
from pathlib import Path

import gevent
import gevent.monkey

from capdisc.loadgen.selfcheck import SelfCheck, client_load
from capdisc.metrics.frame import client_frame, read_client
from capdisc.records import CLIENT_COLUMNS, ClientSample
from capdisc.rundir import RecordWriter

T0 = 1_000_000.0


def sample(second: int, process: str, cpu: float, *lags: float) -> ClientSample:
    """The sample of the second that ends at T0 + second."""
    return ClientSample(T0 + second, process, cpu, tuple(lags) or (0.5,) * 10)


def test_a_window_counts_its_seconds_and_names_the_busiest_and_the_most_lagging() -> None:
    """CPU: the busiest process's median second; lag: p95 over every timer of the worst one."""
    samples = [
        *(sample(s, "master", 0.05, 0.4, 0.6) for s in range(1, 7)),
        *(
            sample(s, "worker 1", cpu, *[1.0] * 9, 80.0)
            for s, cpu in zip(range(1, 7), [0.2, 0.95, 0.97, 0.99, 0.3, 0.96], strict=True)
        ),
        *(sample(s, "worker 2", 0.5, *[1.0] * 8, 300.0, 400.0) for s in range(1, 7)),
        sample(40, "worker 1", 1.0),  # outside the window
    ]
    load = client_load(samples, T0, T0 + 6)
    assert load is not None
    assert (load.processes, load.seconds) == (3, 6)
    assert load.busiest == "worker 1"
    assert load.cpu_p50 == 0.955  # median of 0.2 0.3 0.95 0.96 0.97 0.99
    assert load.cpu_max == 0.99
    # worker 2: 2 of its 10 timers per second were late: 20% of them, so p95 is 300 ms
    assert load.lagging == "worker 2"
    assert (load.lag_p95_ms, load.lag_max_ms) == (400.0, 400.0)
    assert client_load(samples, T0 + 100, T0 + 200) is None


def test_a_sample_belongs_to_the_window_holding_the_middle_of_its_second() -> None:
    samples = [sample(1, "capdisc", 0.1), sample(2, "capdisc", 0.9), sample(3, "capdisc", 0.2)]
    load = client_load(samples, T0 + 1, T0 + 2)  # the second from T0+1 to T0+2 only
    assert load is not None and load.seconds == 1 and load.cpu_p50 == 0.9


def test_client_csv_is_written_as_samples_come_and_kept_as_written(tmp_path: Path) -> None:
    """The run's result carries the rows client.csv got: a page drawn from them equals
    one rebuilt from the file."""
    path = tmp_path / "client.csv"
    check = SelfCheck(RecordWriter(path, columns=CLIENT_COLUMNS))
    first = sample(1, "worker 1", 0.25, 0.5, 1.5, 70.0)
    check.add(first)
    check.add(sample(2, "master", 0.01))
    assert check.writer is not None
    check.writer.close()
    header, row, _ = path.read_text(encoding="utf-8").splitlines()
    assert header.split(",") == list(CLIENT_COLUMNS)
    assert row.split(",")[1:] == ["worker 1", "0.25", "70.0", "70.0", "0.5 1.5 70"]
    kept, read = client_frame(check.rows), read_client(path)
    assert kept is not None and read is not None
    assert kept.to_dict("records") == read.to_dict("records")
    assert client_frame([]) is None and read_client(tmp_path / "missing.csv") is None


def test_the_sampler_sees_a_blocked_event_loop() -> None:
    """A greenlet that holds the loop makes the 100 ms timer late; idle, it is on time.

    The block is a real sleep that does not yield (as a saturated process does): the
    lag it causes does not depend on how busy the machine is.
    """
    block = gevent.monkey.get_original("time", "sleep")
    check = SelfCheck()
    sampler = check.sampler("capdisc").start()
    try:
        deadline = time.monotonic() + 20
        while not check.samples and time.monotonic() < deadline:
            gevent.sleep(0.05)
        idle = list(check.samples)

        def hold() -> None:
            while True:
                block(0.3)
                gevent.sleep(0.001)  # a timer: sleep(0) would starve the loop's timers

        holder = gevent.spawn(hold)
        while len(check.samples) < len(idle) + 2 and time.monotonic() < deadline:
            gevent.sleep(0.05)
        holder.kill()
    finally:
        sampler.stop()
    busy = check.samples[len(idle) :]
    assert idle and len(busy) >= 2, "the sampler must report once a second"
    assert all(s.process == "capdisc" and len(s.lags_ms) >= 1 for s in check.samples)
    assert min(max(s.lags_ms) for s in idle) < 100  # an idle loop fires its timers on time
    assert max(max(s.lags_ms) for s in busy) >= 100  # a 300 ms hold delays them
