"""The reference time: injected, configurable, and never going back below the last good check."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from agent.errors import ConfigurationError, VehicleStateError
from bench.pki import BenchPki
from dmclient.uptane.errors import FreezeError
from dmclient.uptane.timesource import FileTime, parse_instant, reference_time

from .world import InProcessBackend, Vehicle, build_world, fixed_time

NOW = datetime.now(timezone.utc).replace(microsecond=0)


@pytest.fixture
def old_world(tmp_path: Path, pki: BenchPki) -> Path:
    """Releases signed ten days ago: the Image snapshot (7 days) has expired by the system clock."""
    world = tmp_path / "old-world"
    build_world(world, pki, clock=lambda: NOW - timedelta(days=10))
    return world


def test_expiry_is_judged_at_the_injected_time_not_the_system_clock(tmp_path: Path, old_world: Path,
                                                                    pki: BenchPki) -> None:
    backend = InProcessBackend(old_world / "backend.yaml")
    vehicle = Vehicle(tmp_path / "vehicle", old_world, pki, backend.url)  # system clock
    try:
        with pytest.raises(FreezeError) as info:
            vehicle.check()
        assert "snapshot.json is expired" in str(info.value) and info.value.repository == "image"
        then = NOW - timedelta(days=10) + timedelta(hours=1)
        vehicle.client.time_source = fixed_time(then)
        result = vehicle.check()
        assert result.assignment is not None
        assert result.reference_time == then.strftime("%Y-%m-%dT%H:%M:%SZ")
    finally:
        vehicle.close()
        backend.stop()


def test_a_clock_set_back_does_not_go_below_the_last_good_check(vehicle: Vehicle) -> None:
    later = NOW + timedelta(hours=20)
    vehicle.client.time_source = fixed_time(later)
    assert vehicle.check().assignment is not None
    vehicle.client.time_source = fixed_time(NOW - timedelta(days=365))  # RTC reset, or an attacker's GNSS
    result = vehicle.check()
    assert result.reference_time == later.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_refused_check_does_not_raise_the_time_floor(vehicle: Vehicle) -> None:
    vehicle.client.time_source = fixed_time(NOW + timedelta(days=3))
    with pytest.raises(FreezeError):
        vehicle.check()
    assert vehicle.state.time_floor() is None
    vehicle.client.time_source = fixed_time(NOW)
    assert vehicle.check().assignment is not None
    assert vehicle.state.time_floor() == NOW


def test_file_time_source(tmp_path: Path) -> None:
    path = tmp_path / "secure-time"
    source = FileTime(path)
    with pytest.raises(VehicleStateError, match="cannot be read"):
        source()
    path.write_text("yesterday\n")
    with pytest.raises(VehicleStateError, match="not an ISO-8601 instant"):
        source()
    path.write_text("2030-01-02T03:04:05\n")
    with pytest.raises(VehicleStateError, match="no time zone"):
        source()
    path.write_text("2030-01-02T03:04:05Z\n")
    assert source() == datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert parse_instant("2030-01-02T05:04:05+02:00", "x") == datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def test_reference_time_rules() -> None:
    floor = datetime(2030, 1, 1, tzinfo=timezone.utc)
    assert reference_time(fixed_time(floor - timedelta(days=1)), floor) == floor
    assert reference_time(fixed_time(floor + timedelta(days=1)), floor) == floor + timedelta(days=1)
    assert reference_time(fixed_time(floor), None) == floor
    with pytest.raises(ConfigurationError, match="naive"):
        reference_time(lambda: datetime(2030, 1, 1), None)


def test_configured_file_time_source_drives_the_check(tmp_path: Path, vehicle: Vehicle) -> None:
    """``time: {source: file}`` in the uptane config: the check uses the instant in the file."""
    import yaml

    from agent.config.node import load_yaml
    from dmclient.uptane.client import UptaneClient
    from dmclient.uptane.config import load_uptane_config

    doc = yaml.safe_load((vehicle.home / "dmclient.yaml").read_text())
    doc["uptane"]["time"] = {"source": "file", "path": "secure-time"}
    (vehicle.home / "dmclient.yaml").write_text(yaml.safe_dump(doc))
    when = NOW + timedelta(hours=2)
    (vehicle.home / "secure-time").write_text(when.strftime("%Y-%m-%dT%H:%M:%SZ"))
    cfg = load_uptane_config(load_yaml(vehicle.home / "dmclient.yaml").child("uptane"))
    assert cfg.time_description == f"file {vehicle.home / 'secure-time'}"
    client = UptaneClient(cfg, fetcher=vehicle.fetcher, uploader=vehicle.client.uploader, cache=vehicle.cache,
                          state=vehicle.state)
    assert client.check("BV OS D 1.0.0").reference_time == when.strftime("%Y-%m-%dT%H:%M:%SZ")
    (vehicle.home / "secure-time").unlink()
    with pytest.raises(VehicleStateError, match="secure time source"):
        client.check("BV OS D 1.0.0")
