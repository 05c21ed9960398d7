"""capdisc's own side of a run, as the terminal shows it."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from capdisc.reports.client import client_line, render_ceiling
from capdisc.schema import ClientCeiling, ClientInfo, WorkloadCeiling


def test_the_client_line_says_the_ceiling_the_shares_and_the_bound_steps() -> None:
    info = ClientInfo(
        unit="req/s",
        ceiling=190.0,
        processes=2,
        workers_needed=3,
        planned_peak=260.0,
        planned_share=0.684,
        peak=238.0,
        peak_share=0.626,
        cpu_max=0.05,
        lag_p95_max_ms=9.6,
        bound=["4"],
    )
    assert client_line(info) == (
        "Client: 2 load processes, ceiling 190 req/s each; planned peak 260 req/s (68% of "
        "the ceiling), achieved peak 238 req/s (63% of the ceiling), busiest 5% of a core, "
        "loop lag p95 up to 10 ms; needs --workers 3; client-bound: 4"
    )
    bare = ClientInfo(unit="chunks/s", ceiling=None, planned_peak=640.0)
    assert client_line(bare) == (
        "Client: 1 load process, not calibrated (capdisc calibrate measures this machine); "
        "planned peak 640 chunks/s"
    )


def test_the_calibration_table_names_the_cache_file() -> None:
    ceiling = ClientCeiling(
        capdisc="0.1.0",
        machine={"host": "vm", "cores": 2, "cpu": "EPYC"},
        key="abc",
        measured_at="2026-11-28T03:33:39Z",
        duration_s=14.0,
        workloads={
            "batch": WorkloadCeiling(
                unit="req/s", rate=8923, tasks_per_s=8923, achieved=4720, cpu=0.53, saturated=False
            )
        },
    )
    buffer = io.StringIO()
    render_ceiling(ceiling, Path("/cache/c.json"), Console(file=buffer, width=200))
    text = buffer.getvalue()
    assert "8,923 req/s" in text and "scaled to one whole core" in text
    assert "Cached in /cache/c.json" in text
