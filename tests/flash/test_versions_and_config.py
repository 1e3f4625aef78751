"""Version reading marks a silent ECU instead of failing, and every command finds its config the same way."""

from __future__ import annotations

from pathlib import Path

import pytest
from flashkit import BENCH_CONFIG, MemorySession, nrc_error

from agent.config.locate import ENV_CONFIG, vehicle_config_path
from agent.config.vehicle import VehicleConfig
from agent.errors import ConfigurationError, OtaTimeoutError
from update_agent.versions import decode_did, read_ecu_versions, select_ecus


def test_versions_are_read_did_by_did(bench_vehicle: VehicleConfig) -> None:
    session = MemorySession(answers={("read_did", 0xF189): b"1.2.3\x00\x00", ("read_did", 0xF191): b"\x01\x02\xff",
                                     ("read_did", 0xF18C): nrc_error(0x22, 0x31)})
    found = read_ecu_versions(session, bench_vehicle.ecu("engine"))
    assert found.answering
    assert found.values["software_version"] == "1.2.3"
    assert found.values["hardware_version"] == "0102ff"  # not text: shown as hex
    assert found.errors == {"serial_number": "DID F18C: NRC 0x31 requestOutOfRange"}
    assert [args[0] for args in session.of("read_did")] == [0xF187, 0xF189, 0xF191, 0xF18C]
    reading = found.to_reading(1700000000.0)
    assert (reading.source, reading.answered, reading.software_version) == ("uds", True, "1.2.3")
    assert reading.detail == "serial_number: DID F18C: NRC 0x31 requestOutOfRange"


def test_only_the_named_version_dids_are_read(bench_vehicle: VehicleConfig) -> None:
    """What a flash job asks before flashing an A/B ECU: its software version, one request."""
    session = MemorySession(answers={("read_did", 0xF189): b"3.5.0"})
    found = read_ecu_versions(session, bench_vehicle.ecu("brake"), names=("software_version",))
    assert found.answering and found.values == {"software_version": "3.5.0"}
    assert [args[0] for args in session.of("read_did")] == [0xF189]


def test_an_ecu_that_does_not_answer_is_marked_after_one_timeout(bench_vehicle: VehicleConfig) -> None:
    session = MemorySession(answers={("read_did", None): OtaTimeoutError("no response within 1 s")})
    found = read_ecu_versions(session, bench_vehicle.ecu("brake"))
    assert not found.answering and found.error == "no response within 1 s"
    assert len(session.of("read_did")) == 1  # not once per DID
    assert found.to_dict()["answering"] is False
    assert not found.to_reading(1.0).answered


def test_decode_did() -> None:
    assert decode_did(b"ENG-4711") == "ENG-4711"
    assert decode_did(b"H1.0  \x00") == "H1.0"
    assert decode_did(b"\x00\x10") == "0010"
    assert decode_did(b"") == ""


def test_unknown_ecu_names_the_configured_ones(bench_vehicle: VehicleConfig) -> None:
    with pytest.raises(ConfigurationError, match=r"unknown ECU 'gearbox' \(configured: body, brake, engine\)"):
        select_ecus(bench_vehicle, ["engine", "gearbox"])
    assert [e.name for e in select_ecus(bench_vehicle, None)] == ["engine", "brake", "body"]


def test_config_comes_from_the_option_then_the_environment_then_the_package(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_CONFIG, str(tmp_path / "env.yaml"))
    assert vehicle_config_path(str(tmp_path / "opt.yaml")) == tmp_path / "opt.yaml"
    assert vehicle_config_path(None) == tmp_path / "env.yaml"
    monkeypatch.delenv(ENV_CONFIG)
    packaged = vehicle_config_path(None)
    assert packaged.name == "bench-vehicle.yaml" and packaged.is_file()
    assert packaged.read_bytes() == BENCH_CONFIG.read_bytes()
