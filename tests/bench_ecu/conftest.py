"""Fixtures for the bench ECU simulator tests (helpers in :mod:`.support`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.config.vehicle import VehicleConfig, load_vehicle_config
from bench.ecu.bootloader import Bootloader
from bench.ecu.flash import Layout
from bench.ecu.simconfig import parse_sim
from bench.ecu.store import EcuStore

from .support import FakeClock, Tester, counting_rng, write_config


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_core(tmp_path: Path, clock: FakeClock) -> Iterator[Callable[..., Tester]]:
    """``make_core("engine", faults={...}, ...)`` -> a Tester on a fresh (or reopened) core."""
    cores: list[Bootloader] = []

    def factory(ecu: str = "engine", *, state: Path | None = None, config: VehicleConfig | None = None,
                **sim: Any) -> Tester:
        if config is None:
            config = load_vehicle_config(write_config(tmp_path / f"vehicle-{len(cores)}.yaml", **{ecu: sim}))
        ecu_cfg = config.ecu(ecu)
        store = EcuStore((state or tmp_path / "state") / ecu, Layout(ecu_cfg.memory.regions),
                         2 if ecu_cfg.banks == "ab" else 1, ecu)
        core = Bootloader(ecu_cfg, parse_sim(ecu_cfg), store, now=clock(), rng=counting_rng())
        cores.append(core)
        return Tester(core, clock)

    yield factory
    for core in cores:
        core.close()
