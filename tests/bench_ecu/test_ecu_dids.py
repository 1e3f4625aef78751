"""ReadDataByIdentifier / WriteDataByIdentifier: identification, fingerprint, configuration DIDs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from agent.config.vehicle import load_vehicle_config
from agent.errors import ConfigurationError
from bench.ecu.dids import build_did_table
from bench.ecu.simconfig import parse_sim

from .support import BASE_CONFIG, Tester, dump_config, merge, write_config

MakeCore = Callable[..., Tester]
FINGERPRINT = bytes.fromhex("261121") + b"TST001"  # 2026-11-21, tester serial


def test_identification_dids(make_core: MakeCore) -> None:
    t = make_core("engine")
    assert t.read_did(0xF187) == b"ENG-4711"
    assert t.read_did(0xF189) == b"1.0.0"
    assert t.read_did(0xF191) == b"H1.0"
    assert t.read_did(0xF18C) == b"ENG0000001"
    assert t.read_did(0xF190) == b"BENCHVIN000000001"
    assert t.read_did(0xF180) == b"BOOT"
    assert t.read_did(0xF15A) == bytes(9)


def test_several_dids_in_one_request(make_core: MakeCore) -> None:
    t = make_core("engine")
    assert t.one("22f187f189") == b"\x62\xf1\x87ENG-4711\xf1\x891.0.0"
    # an unsupported DID among supported ones is left out (ISO 14229-1)
    assert t.one("22f1fff189") == b"\x62\xf1\x891.0.0"
    assert t.nrc("22f1ff") == 0x31
    assert t.nrc("22f1") == 0x13
    assert t.nrc("22") == 0x13


def test_fingerprint_write_rules(make_core: MakeCore) -> None:
    t = make_core("engine")
    request = b"\x2e\xf1\x5a" + FINGERPRINT
    assert t.nrc(request) == 0x7F  # default session
    t.one("1003")
    assert t.nrc(request) == 0x31  # only in the programming session
    t.one("1002")
    assert t.nrc(request) == 0x33  # security first
    t.one("1001")
    t.unlock()
    assert t.nrc(b"\x2e\xf1\x5a" + FINGERPRINT[:8]) == 0x13
    assert t.nrc(b"\x2e\xf1\x5a\x26\x13\x21" + b"TST001") == 0x31  # month 13
    assert t.nrc(b"\x2e\xf1\x5a\x2a\x11\x21" + b"TST001") == 0x31  # not BCD
    assert t.one(request) == b"\x6e\xf1\x5a"
    assert t.read_did(0xF15A) == FINGERPRINT
    assert t.nrc(b"\x2e\xf1\x87" + b"X" * 8) == 0x31  # identification DIDs are read-only


def test_config_dids_read_write_and_persist(make_core: MakeCore, tmp_path: Path) -> None:
    dids = [{"name": "variant", "did": 0xF1A0, "size": 4, "initial": "00000001"},
            {"name": "region", "did": 0xF1A1, "size": 2, "initial": 0x0102}]
    t = make_core("engine", config_dids=dids)
    assert t.read_did(0xF1A0) == bytes.fromhex("00000001")
    assert t.read_did(0xF1A1) == bytes.fromhex("0102")
    t.one("1003")
    assert t.nrc("2ef1a000000002") == 0x33
    sec = t.core.ecu.security
    seed = t.one(bytes([0x27, 1]))[2:]
    t.one(bytes([0x27, 2]) + sec.load()(seed, 1, sec.params))
    assert t.nrc("2ef1a0000002") == 0x13
    assert t.one("2ef1a000000002") == b"\x6e\xf1\xa0"
    assert t.read_did(0xF1A0) == bytes.fromhex("00000002")
    t.core.close()
    again = make_core("engine", config_dids=dids)
    assert again.read_did(0xF1A0) == bytes.fromhex("00000002")
    assert again.read_did(0xF1A1) == bytes.fromhex("0102")


def test_version_dids_may_move_the_software_version(tmp_path: Path) -> None:
    data = merge(BASE_CONFIG, {"ecus": {"engine": {"version_dids": {"software_version": 0xF195,
                                                                     "part_number": 0xF187}}}})
    ecu = load_vehicle_config(dump_config(tmp_path / "v.yaml", data)).ecu("engine")
    table = build_did_table(ecu, parse_sim(ecu))
    assert table[0xF195].kind == "software_version"
    assert table[0xF189].kind == "software_version"


def test_version_did_without_a_value_is_a_config_error(tmp_path: Path) -> None:
    data = merge(BASE_CONFIG, {"ecus": {"engine": {"version_dids": {"boot_loader": 0xF1F0}}}})
    ecu = load_vehicle_config(dump_config(tmp_path / "v.yaml", data)).ecu("engine")
    with pytest.raises(ConfigurationError, match=r"ecus\.engine\.version_dids\.boot_loader.*no value"):
        build_did_table(ecu, parse_sim(ecu))


def test_config_did_may_not_take_a_standard_did(tmp_path: Path) -> None:
    cfg = load_vehicle_config(write_config(tmp_path / "v.yaml", engine={
        "config_dids": [{"name": "x", "did": 0xF189, "size": 1}]}))
    with pytest.raises(ConfigurationError, match=r"config_dids\[0\]\.did: .*served by the simulator"):
        parse_sim(cfg.ecu("engine"))
