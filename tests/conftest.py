"""Shared fixtures: real simulator processes on loopback, and an HTTP client for them.

``start_simulator(**fields)`` starts a :class:`EmbeddedSimulator` with a
``SimulatorConfig`` built from ``fields`` (``faults`` may be a dict) and stops it at
the end of the test, whatever happens.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from capdisc.simulator import EmbeddedSimulator, SimulatorConfig

StartSimulator = Callable[..., EmbeddedSimulator]


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: two workers per core (the load tests mostly wait on sockets)."""
    return 2 * len(os.sched_getaffinity(0))


@pytest.fixture(autouse=True)
def _test_process_stays_unpatched() -> Iterator[None]:
    """Fail the test that lets gevent patch the test process (Locust does on import):
    pytest-xdist's workers then wait on gevent's threading and die with LoopExit."""
    yield
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("threading"):
        pytest.fail("gevent patched the test process: import Locust only in subprocesses")


@pytest.fixture
def start_simulator() -> Iterator[StartSimulator]:
    """Factory: ``start_simulator(slots=2, faults={"hang": True})`` -> running simulator."""
    started: list[EmbeddedSimulator] = []

    def start(**fields: Any) -> EmbeddedSimulator:
        sim = EmbeddedSimulator(SimulatorConfig(**fields))
        started.append(sim)
        return sim.start()

    yield start
    for sim in started:
        sim.stop()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """A plain HTTP client: no proxies from the environment, 10 s timeout."""
    with httpx.Client(timeout=10.0, trust_env=False) as client:
        yield client
