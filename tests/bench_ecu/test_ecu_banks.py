"""A/B and single-bank behaviour, and what persists across a restart of the simulator."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.config.vehicle import load_vehicle_config
from agent.errors import ConfigurationError
from bench.appimage import build_image

from .support import BASE_CONFIG, BRAKE_APP, ENGINE_APP, Tester, dump_config, merge, write_config

MakeCore = Callable[..., Tester]
ACTIVATE = "31010210"
REVERT = "31010211"


def test_ab_writes_the_inactive_bank_then_activates_on_reset(make_core: MakeCore) -> None:
    t = make_core("brake")
    bank_a = t.core.programming.banks[0]
    running = bank_a.read(BRAKE_APP, 0x1000)
    image = build_image("3.5.0", "BRK-0815", 0x1800)
    t.flash(image, BRAKE_APP, erase_size=0x8000)
    assert bank_a.read(BRAKE_APP, 0x1000) == running  # the running bank was never touched
    assert t.core.programming.banks[1].read(BRAKE_APP, len(image)) == image
    t.one("1101")
    assert t.version() == "3.4.0"  # not activated: the reset keeps bank A
    t.flash(image, BRAKE_APP, erase_size=0x8000)
    assert t.one(ACTIVATE) == bytes.fromhex("7101021000")
    assert t.core.status()["pending_bank"] == "B"
    assert t.version() == "3.4.0"
    t.one("1101")
    assert t.version() == "3.5.0"
    assert t.core.status()["active_bank"] == "B"


def test_ab_revert_goes_back_to_the_previous_bank(make_core: MakeCore) -> None:
    t = make_core("brake")
    t.flash(build_image("3.5.0", "BRK-0815", 0x1000), BRAKE_APP, erase_size=0x8000)
    t.one(ACTIVATE)
    t.one("1101")
    assert t.version() == "3.5.0"
    t.unlock()
    assert t.one(REVERT) == bytes.fromhex("7101021100")
    t.one("1101")
    assert t.version() == "3.4.0"
    assert t.core.status()["active_bank"] == "A"


def test_ab_revert_before_the_reset_cancels_the_activation(make_core: MakeCore) -> None:
    t = make_core("brake")
    t.flash(build_image("3.5.0", "BRK-0815", 0x1000), BRAKE_APP, erase_size=0x8000)
    t.one(ACTIVATE)
    assert t.one(REVERT) == bytes.fromhex("7101021100")
    t.one("1101")
    assert t.version() == "3.4.0"


def test_ab_revert_without_a_previous_image_fails(make_core: MakeCore) -> None:
    t = make_core("brake")
    t.unlock()
    assert t.one(REVERT) == bytes.fromhex("7101021101")  # bank B was never written


def test_ab_activation_needs_a_checked_image(make_core: MakeCore) -> None:
    t = make_core("brake")
    image = build_image("3.5.0", "BRK-0815", 0x1000)
    t.unlock()
    t.erase(BRAKE_APP, 0x8000)
    t.request_download(BRAKE_APP, len(image))
    t.transfer(image)
    t.one("37")
    assert t.nrc(ACTIVATE) == 0x24  # checkMemory first
    assert t.check_memory(zlib.crc32(image) ^ 0xFF) == bytes.fromhex("7101020201")
    assert t.nrc(ACTIVATE) == 0x24  # ... and it must match
    assert t.check_memory(zlib.crc32(image)) == bytes.fromhex("7101020200")
    assert t.one(ACTIVATE) == bytes.fromhex("7101021000")


def test_ab_erase_after_activation_cancels_it(make_core: MakeCore) -> None:
    t = make_core("brake")
    t.flash(build_image("3.5.0", "BRK-0815", 0x1000), BRAKE_APP, erase_size=0x8000)
    t.one(ACTIVATE)
    t.erase(BRAKE_APP, 0x8000)
    assert t.core.status()["pending_bank"] is None
    t.one("1101")
    assert t.version() == "3.4.0"


def test_single_bank_has_no_bank_routines(make_core: MakeCore) -> None:
    t = make_core("engine")
    t.unlock()
    assert t.nrc(ACTIVATE) == 0x31
    assert t.nrc(REVERT) == 0x31


def test_single_bank_with_invalid_application_stays_in_the_bootloader(make_core: MakeCore) -> None:
    t = make_core("engine")
    image = build_image("1.1.0", "ENG-4711", 0x1000)
    t.unlock()
    t.erase(ENGINE_APP, 0x8000)
    t.request_download(ENGINE_APP, len(image))
    t.transfer(image[:0x800])  # power of the tester lost half-way, say
    t.one("1101")
    assert t.version() == "BOOT"
    status = t.core.status()
    assert status["application_valid"] is False and status["session"] == "default"
    # ready to be flashed again
    t.flash(image, ENGINE_APP, erase_size=0x8000)
    t.one("1101")
    assert t.version() == "1.1.0"


def test_flash_survives_a_restart_of_the_simulator(make_core: MakeCore, tmp_path: Path) -> None:
    t = make_core("brake")
    image = build_image("3.6.0", "BRK-0815", 0x1000)
    t.flash(image, BRAKE_APP, erase_size=0x8000)
    t.one(ACTIVATE)
    fingerprint = bytes.fromhex("261121") + b"TST001"
    t.one(b"\x2e\xf1\x5a" + fingerprint)
    t.core.close()  # killed before the reset: the activation is stored
    again = make_core("brake")
    assert again.version() == "3.6.0"  # power-on boots the activated bank
    assert again.read_did(0xF15A) == fingerprint
    assert again.core.status()["active_bank"] == "B"
    assert again.core.programming.banks[1].read(BRAKE_APP, len(image)) == image


def test_interrupted_download_needs_an_erase_after_a_restart(make_core: MakeCore) -> None:
    t = make_core("engine")
    t.unlock()
    t.erase(ENGINE_APP, 0x8000)
    t.request_download(ENGINE_APP, 0x400)
    t.one(b"\x36\x01" + bytes(0x100))
    t.core.close()  # power lost mid-transfer
    again = make_core("engine")
    assert again.version() == "BOOT"
    again.unlock()
    assert again.nrc("3400440001000000000400") == 0x70  # like real flash: erase first
    again.erase(ENGINE_APP, 0x8000)
    assert again.request_download(ENGINE_APP, 0x400)[0] == 0x74


def test_state_directory_for_another_memory_map_is_refused(make_core: MakeCore, tmp_path: Path) -> None:
    t = make_core("engine")
    t.core.close()
    data = merge(BASE_CONFIG, {})
    data["ecus"]["engine"]["memory"]["regions"][0]["size"] = 0x10000
    config = load_vehicle_config(dump_config(tmp_path / "other.yaml", data))
    with pytest.raises(ConfigurationError, match=r"state\.json: was made for another memory map"):
        make_core("engine", config=config)
    meta = json.loads((tmp_path / "state" / "engine" / "state.json").read_text())
    assert meta["layout"]["regions"][0] == [ENGINE_APP, 0x8000]  # nothing overwritten


def test_corrupt_state_file_is_reported_not_replaced(make_core: MakeCore, tmp_path: Path) -> None:
    t = make_core("engine")
    t.core.close()
    state = tmp_path / "state" / "engine" / "state.json"
    state.write_text("{not json")
    with pytest.raises(ConfigurationError, match="cannot read the simulator state"):
        make_core("engine")
    assert state.read_text() == "{not json"


def test_one_state_directory_one_simulator(make_core: MakeCore, tmp_path: Path) -> None:
    make_core("engine")
    config = load_vehicle_config(write_config(tmp_path / "same.yaml"))
    with pytest.raises(ConfigurationError, match="in use by another bench simulator"):
        make_core("engine", config=config)


def test_a_failed_crc_check_leaves_the_application_invalid(make_core: MakeCore) -> None:
    t = make_core("engine", faults={"wrong_crc": True})
    image = build_image("1.7.0", "ENG-4711", 0x1000)
    t.unlock()
    t.erase(ENGINE_APP, 0x8000)
    t.request_download(ENGINE_APP, len(image))
    t.transfer(image)
    t.one("37")
    assert t.check_memory(zlib.crc32(image)) == bytes.fromhex("7101020201")
    t.one("1101")
    assert t.version() == "BOOT"  # an intact header is not enough: the check did not pass
    t.unlock()
    # the reset ended the programming sequence: a new check covers nothing, and cannot validate
    assert t.check_memory(zlib.crc32(image)) == bytes.fromhex("7101020201")
    t.flash(image, ENGINE_APP, erase_size=0x8000)
    t.one("1101")
    assert t.version() == "1.7.0"


def test_an_image_never_checked_does_not_boot(make_core: MakeCore) -> None:
    t = make_core("engine")
    image = build_image("1.8.0", "ENG-4711", 0x1000)
    t.unlock()
    t.erase(ENGINE_APP, 0x8000)
    t.request_download(ENGINE_APP, len(image))
    t.transfer(image)
    t.one("37")
    t.one("1101")
    assert t.version() == "BOOT"
    assert t.core.status()["application_valid"] is False
