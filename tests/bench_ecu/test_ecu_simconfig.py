"""Validation of the sim: section: bad values stop the simulator naming file, key and reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.config.vehicle import load_vehicle_config
from agent.errors import ConfigurationError
from bench.ecu.simconfig import DropResponse, SimConfig, Switch, parse_sim

from .support import write_config


def _parse(tmp_path: Path, **sim: Any) -> SimConfig:
    path = write_config(tmp_path / "vehicle.yaml", engine=sim)
    return parse_sim(load_vehicle_config(path).ecu("engine"))


def test_defaults_and_inherited_timing(tmp_path: Path) -> None:
    sim = _parse(tmp_path)
    assert sim.boot_marker == "BOOT"
    assert sim.p2 == 0.05 and sim.p2_star == 5.0  # from the ECU's timing section
    assert sim.session_timeout == 5.0
    assert sim.faults.drop_response == () and sim.faults.wrong_crc is None


def test_bench_vehicle_config_parses() -> None:
    config = load_vehicle_config(Path(__file__).parents[2] / "configs" / "bench-vehicle.yaml")
    for ecu in config.ecus.values():
        sim = parse_sim(ecu)
        assert sim.max_block_length == 0x802 and sim.initial_image_size == 64 * 1024


def test_fault_forms(tmp_path: Path) -> None:
    sim = _parse(tmp_path, faults={
        "drop_response": [{"service": 0x36, "count": 2}, {"service": 0x31, "times": "always"}],
        "nrc_on_block": {"block": 3, "nrc": 0x72, "times": 2},
        "reset_mid_transfer": {"block": 5},
        "erase_time": {"seconds": 8, "times": 3},
        "wrong_crc": True, "refuse_security": False, "preconditions_fail": {"times": "always"},
    })
    f = sim.faults
    assert f.drop_response == (DropResponse(0x36, 2, 1), DropResponse(0x31, 1, None))
    assert f.nrc_on_block[0].times == 2 and f.reset_mid_transfer[0].block == 5
    assert f.erase_time is not None and f.erase_time.seconds == 8.0 and f.erase_time.times == 3
    assert f.wrong_crc == Switch(1) and f.refuse_security is None and f.preconditions_fail == Switch(None)


@pytest.mark.parametrize(("sim", "message"), [
    ({"faults": {"drop_responses": {"service": 0x36}}}, r"ecus\.engine\.sim\.faults: unknown key 'drop_responses'"),
    ({"faults": {"drop_response": {"service": 0x19}}}, r"faults\.drop_response\.service: .*does not implement"),
    ({"faults": {"nrc_on_block": {"block": 0}}}, r"faults\.nrc_on_block\.block: must be in \[1, \]"),
    ({"faults": {"nrc_on_block": {"block": 2, "nrc": 0x78}}}, r"nrc: 0x78 is a response-pending"),
    ({"faults": {"wrong_crc": {"times": 0}}}, r"wrong_crc\.times: must be a positive integer or 'always'"),
    ({"faults": {"wrong_crc": "yes"}}, r"wrong_crc: expected true, false or"),
    ({"vin": "SHORT"}, r"sim\.vin: must be 17 characters"),
    ({"software_version": "1.0.0-with-a-long-suffix"}, r"software_version: must be 1\.\.16 characters"),
    ({"part_number": "ENG\u00e9"}, r"part_number: must be printable ASCII"),
    ({"initial_image_size": 0x9000}, r"initial_image_size: must be in"),
    ({"response_pending_interval": 5.0}, r"response_pending_interval: must be shorter than p2_star"),
    ({"stmin": 0x80}, r"sim\.stmin: must be 0\.\.0x7F"),
    ({"security": {"max_attempts": 0}}, r"security\.max_attempts: must be in"),
    ({"config_dids": [{"name": "a", "did": 0xF1A0, "size": 2, "initial": "0102"},
                      {"name": "b", "did": 0xF1A0, "size": 1}]}, r"config_dids: DID 0xf1a0 is declared twice"),
    ({"config_dids": [{"name": "a", "did": 0xF1A0, "size": 2, "initial": "01"}]}, r"initial: is 1 bytes"),
    ({"colour": "red"}, r"ecus\.engine\.sim: unknown key 'colour'"),
])
def test_bad_values_name_file_key_and_reason(tmp_path: Path, sim: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as info:
        _parse(tmp_path, **sim)
    assert str(tmp_path / "vehicle.yaml") in str(info.value)


def test_missing_required_keys(tmp_path: Path) -> None:
    path = write_config(tmp_path / "vehicle.yaml")
    config = load_vehicle_config(path)
    ecu = config.ecu("engine")
    assert ecu.sim is not None
    del ecu.sim.data["part_number"]
    with pytest.raises(ConfigurationError, match=r"sim\.part_number: required key is missing"):
        parse_sim(ecu)
