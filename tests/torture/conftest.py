"""Fixtures of the torture tests: one bench for the whole torture session, and the seed of the random cuts."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from bench.scenario import V2

from .harness import DOWNLOADS, TortureBench, torture_bench

#: the seed of the random power cuts; OTA_TORTURE_SEED=<n> replays another run
DEFAULT_SEED = 20261121


@pytest.fixture(scope="session")
def torture() -> Iterator[TortureBench]:
    """The demo's bench at V2 with every daemon running (the engine's debug hang hook enabled, for the
    watchdog test); shared by every torture module: each test starts by moving the vehicle where it needs it."""
    with torture_bench(image_size=2048, stack_overrides={"agent": {"watchdog": {"debug_hang": True}},
                                                         "dmclient": {"downloads": DOWNLOADS}}) as bench:
        yield bench


@pytest.fixture
def bench(torture: TortureBench) -> Iterator[TortureBench]:
    """The shared bench at V2, the backend's faults cleared before and after the test."""
    torture.clear_faults()
    torture.goto(V2)
    yield torture
    torture.clear_faults()


@pytest.fixture(scope="session")
def seed() -> int:
    value = int(os.environ.get("OTA_TORTURE_SEED", DEFAULT_SEED))
    print(f"\ntorture seed: {value} (OTA_TORTURE_SEED={value} replays it)")
    return value
