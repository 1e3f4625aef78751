"""Fixtures for the baseline / version collection tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from update_agent.baseline import (
    HardwareBaseline,
    SoftwareBaseline,
    load_hardware_baseline,
    load_software_baseline,
)

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
BENCH_HW = CONFIGS / "bench-hw-baseline.xml"
BENCH_SW = CONFIGS / "bench-sw-baseline.xml"
BENCH_VEHICLE = CONFIGS / "bench-vehicle.yaml"
BENCH_DBC = CONFIGS / "bench-vehicle.dbc"


@pytest.fixture
def hw_baseline() -> HardwareBaseline:
    return load_hardware_baseline(BENCH_HW)


@pytest.fixture
def sw_baseline() -> SoftwareBaseline:
    return load_software_baseline(BENCH_SW)


@pytest.fixture
def hub_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private bench hub directory, so parallel runs never share sockets."""
    d = tmp_path / "hub"
    monkeypatch.setenv("OTA_BENCH_HUB_DIR", str(d))
    yield d
