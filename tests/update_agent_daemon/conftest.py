"""Fixtures for the update agent daemon tests (helpers live in ``uadkit``)."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from uadkit import Bench, Rig, UpdateAgent, vehicle_config


@pytest.fixture
def start_rig(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    """Simulated ECUs (with the given fault knobs) on a private hub, and the update agent on them."""
    rigs: list[Rig] = []

    def start(faults: dict[str, dict[str, Any]] | None = None, extra: str = "") -> Rig:
        hub = tmp_path / "hub"
        hub.mkdir()
        env = {k: v for k, v in os.environ.items() if k not in ("OTA_VEHICLE_CONFIG", "OTA_RUNTIME_DIR")}
        env["OTA_BENCH_HUB_DIR"] = str(hub)
        config = vehicle_config(tmp_path, faults)
        bench = Bench(tmp_path, config, env)
        agent = UpdateAgent(tmp_path, config, env, extra)
        rig = Rig(tmp_path, bench, agent)
        rigs.append(rig)
        bench.start()
        agent.start()
        return rig

    yield start
    for rig in rigs:
        with contextlib.suppress(Exception):
            rig.agent.stop()
        with contextlib.suppress(Exception):
            rig.bench.stop()
        shutil.rmtree(rig.agent.runtime, ignore_errors=True)
