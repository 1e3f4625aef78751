"""Fixtures for the flasher tests (helpers live in ``flashkit``)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flashkit import BENCH_CONFIG, Bench, Cli, fast_bench, write_config

from agent.config.vehicle import VehicleConfig, load_vehicle_config


@pytest.fixture
def bench_vehicle() -> VehicleConfig:
    return load_vehicle_config(BENCH_CONFIG)


@pytest.fixture
def bench_env(tmp_path: Path) -> dict[str, str]:
    """Environment with a private hub directory, so parallel runs never share a bus."""
    hub = tmp_path / "hub"
    hub.mkdir()
    env = dict(os.environ)
    env["OTA_BENCH_HUB_DIR"] = str(hub)
    env.pop("OTA_VEHICLE_CONFIG", None)
    return env


@pytest.fixture
def start_bench(tmp_path: Path, bench_env: dict[str, str]) -> Iterator[Callable[..., tuple[Bench, Cli]]]:
    """Start the simulator for a config (edited by the test) and get a tester for it."""
    benches: list[Bench] = []

    def start(edit: Callable[[dict[str, Any]], None] | None = None, *extra: str,
              fast: bool = True) -> tuple[Bench, Cli]:
        def combined(data: dict[str, Any]) -> None:
            if fast:
                fast_bench(data)
            if edit is not None:
                edit(data)
        config = write_config(tmp_path, combined, name=f"vehicle{len(benches)}.yaml")
        bench = Bench(config, tmp_path / "state", bench_env, tmp_path / f"bench{len(benches)}.log")
        benches.append(bench)
        bench.start(*extra)
        return bench, Cli(config, bench_env)

    yield start
    for bench in benches:
        with contextlib.suppress(Exception):
            bench.stop()
