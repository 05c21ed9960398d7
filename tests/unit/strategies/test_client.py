"""capdisc's own limit: the client-bound judgement, the workers a peak needs, the cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from capdisc.schema import ClientCeiling, ClientLoad, WorkloadCeiling
from capdisc.strategies import calibrate as calibration
from capdisc.strategies import client
from capdisc.strategies.client import (
    Demand,
    client_bound_reason,
    client_info,
    plan_client,
    workers_needed,
)


def load(cpu: float = 0.3, lag: float = 2.0, seconds: int = 10) -> ClientLoad:
    return ClientLoad(
        processes=1,
        seconds=seconds,
        busiest="worker 2",
        cpu_p50=cpu,
        cpu_mean=cpu,
        cpu_max=cpu,
        lagging="worker 1",
        lag_p95_ms=lag,
        lag_max_ms=lag,
    )


def test_a_busy_or_lagging_process_is_client_bound_with_its_figures() -> None:
    assert client_bound_reason(None) is None
    assert client_bound_reason(load(cpu=0.9, lag=50.0)) is None  # at the limits, not above
    cpu = client_bound_reason(load(cpu=0.97))
    assert cpu is not None and cpu.startswith("client-bound: ")
    assert "worker 2 used 97% of a CPU core (median of 10 s; limit 90%)" in cpu
    lag = client_bound_reason(load(lag=120.0))
    assert lag is not None and "worker 1's event loop lagged 120 ms at p95 (limit 50 ms)" in lag
    both = client_bound_reason(load(cpu=1.0, lag=300.0))
    assert both is not None and " and " in both and "not the server" in both
    assert client_bound_reason(load(cpu=1.0, seconds=1)) is None  # too short to judge


@pytest.mark.parametrize(
    ("share", "workers"), [(0.0, 0), (0.5, 0), (0.51, 2), (1.0, 2), (1.37, 3), (4.0, 8)]
)
def test_a_process_is_planned_at_half_its_ceiling(share: float, workers: int) -> None:
    assert workers_needed(share) == workers


def test_a_stream_peak_counts_streams_and_chunks() -> None:
    ceiling = WorkloadCeiling(
        unit="chunks/s", rate=64_000, tasks_per_s=1000, achieved=0, cpu=0.5, saturated=False
    )
    assert Demand("stream", 100, 64).share(ceiling) == pytest.approx(0.1)
    assert Demand("stream", 100, 1024).share(ceiling) == pytest.approx(1.6)  # long streams
    assert Demand("stream", 500, 8).share(ceiling) == pytest.approx(0.5)  # many short ones


def cached(directory: Path, rate: float) -> None:
    """This machine's cache file with a batch ceiling of ``rate`` req/s."""
    identity = calibration.machine()
    ceiling = ClientCeiling(
        capdisc="x",
        machine=identity,
        key=calibration._key(identity),
        measured_at="2026-01-01T00:00:00Z",
        duration_s=6.0,
        workloads={
            "batch": WorkloadCeiling(
                unit="req/s", rate=rate, tasks_per_s=rate, achieved=rate, cpu=1.0, saturated=True
            )
        },
    )
    calibration.save_ceiling(ceiling, directory)


def test_the_cache_is_this_machines_and_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert calibration.load_ceiling(tmp_path) is None
    cached(tmp_path, 200.0)
    ceiling = calibration.load_ceiling(tmp_path)
    assert ceiling is not None and ceiling.workloads["batch"].rate == 200.0
    assert calibration.cache_path(tmp_path).name.startswith("client-ceiling-")
    monkeypatch.setattr(calibration, "machine", lambda: {"host": "another"})
    assert calibration.load_ceiling(tmp_path) is None  # another machine: not reused


def test_the_cache_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from capdisc.settings import Settings

    monkeypatch.setenv("CAPDISC_CACHE_DIR", str(tmp_path / "mine"))
    assert calibration.cache_dir(Settings()) == tmp_path / "mine"
    monkeypatch.delenv("CAPDISC_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert calibration.cache_dir(Settings()) == tmp_path / "xdg" / "capdisc"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert calibration.cache_dir(Settings()) == tmp_path / ".cache" / "capdisc"


def never_calibrate(*args: object) -> None:
    raise AssertionError("no calibration was needed")


def test_workers_auto_follows_the_ceiling_within_the_cores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(calibration, "measure", never_calibrate)
    monkeypatch.setattr(client, "cores", lambda: 4)
    cached(tmp_path, 200.0)
    light = plan_client(Demand("batch", 50), "auto", 0, tmp_path, None)
    assert (light.workers, light.needed, light.processes, light.notes) == (0, 0, 1, [])
    heavy = plan_client(Demand("batch", 260), "auto", 0, tmp_path, None)
    assert (heavy.workers, heavy.needed, heavy.processes) == (3, 3, 3)
    huge = plan_client(Demand("batch", 2000), "auto", 1, tmp_path, None)
    assert (huge.workers, huge.needed) == (4, 20)  # 19 local wanted, 4 cores
    assert "this machine has 4 cores" in huge.notes[0]
    short = plan_client(Demand("batch", 260), 1, 0, tmp_path, None)
    assert short.workers == 1 and "needs --workers 3" in short.notes[0]
    assert short.advice() == "run with --workers 3, or --workers auto"


def test_no_calibration_for_a_light_peak_and_one_first_for_a_heavy_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(calibration, "measure", never_calibrate)
    light = plan_client(Demand("batch", 100), "auto", 0, tmp_path, None)
    assert (light.workers, light.needed, light.ceiling) == (0, None, None)
    assert "capdisc calibrate" in light.advice()

    asked: list[object] = []

    def fake(kinds: list[str], directory: Path, progress: object) -> object:
        asked.append(kinds)
        cached(tmp_path / "elsewhere", 400.0)  # what a measurement returns
        return calibration.load_ceiling(tmp_path / "elsewhere")

    monkeypatch.setattr(calibration, "measure", fake)
    heavy = plan_client(Demand("batch", 600), 0, 0, tmp_path, None)
    assert asked == [["batch"]]
    assert heavy.ceiling is not None and heavy.needed == 3
    plan_client(Demand("batch", 600), 0, 0, tmp_path, None)
    assert asked == [["batch"]]  # cached: reused, not measured again


def test_a_cache_that_cannot_be_written_is_a_note_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cached(tmp_path / "elsewhere", 400.0)
    measured = calibration.load_ceiling(tmp_path / "elsewhere")
    monkeypatch.setattr(calibration, "measure", lambda *args: measured)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    plan = plan_client(Demand("batch", 600), 0, 0, blocker / "cache", None)
    assert plan.ceiling is not None and plan.needed == 3
    assert plan.notes[0].startswith("client ceiling not cached: cannot write")


def test_the_summary_section_shares_and_bound_steps(tmp_path: Path) -> None:
    cached(tmp_path, 200.0)
    plan = client.ClientPlan(
        Demand("batch", 150),
        calibration.cache_path(tmp_path),
        workers=2,
        calibration=calibration.load_ceiling(tmp_path),
        needed=2,
    )
    info = client_info(plan, [("1", load(cpu=0.4), 100.0), ("2", None, 140.0)], ["3"])
    assert (info.unit, info.ceiling, info.processes, info.workers_needed) == ("req/s", 200.0, 2, 2)
    assert (info.planned_peak, info.planned_share) == (150.0, 0.375)
    assert (info.peak, info.peak_share) == (140.0, 0.35)
    assert (info.cpu_max, info.lag_p95_max_ms, info.bound) == (0.4, 2.0, ["3"])
    assert info.limits == {"cpu": 0.9, "lag_p95_ms": 50.0, "plan_share": 0.5}
