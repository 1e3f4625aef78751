"""The bench ECU's side of remote configuration, on the pure core: persisted configuration DIDs,
refused writes (fault knob), and the broadcast message applied from a real DBC-encoded frame."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import can
import pytest
import yaml

from agent.config.vehicle import load_vehicle_config
from agent.errors import ConfigurationError
from bench.ecu.bootloader import Bootloader
from bench.ecu.config_broadcast import config_listener
from bench.ecu.flash import Layout
from bench.ecu.simconfig import parse_sim
from bench.ecu.store import EcuStore
from update_agent.version_frame import load_dbc

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
DBC = load_dbc(CONFIGS / "bench-vehicle.dbc")
NOW = 1000.0


def vehicle_file(tmp_path: Path, ecu: str, **sim: Any) -> Path:
    data = yaml.safe_load((CONFIGS / "bench-vehicle.yaml").read_text())
    data["version_frames"]["dbc"] = str(CONFIGS / data["version_frames"]["dbc"])
    data["ecus"][ecu]["sim"].update(sim)
    path = tmp_path / "vehicle.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def make_core(tmp_path: Path) -> Iterator[Callable[..., Bootloader]]:
    cores: list[Bootloader] = []

    def make(ecu: str, **sim: Any) -> Bootloader:
        config = load_vehicle_config(vehicle_file(tmp_path, ecu, **sim))
        cfg = config.ecu(ecu)
        store = EcuStore(tmp_path / "state" / ecu, Layout(cfg.memory.regions), 2 if cfg.banks == "ab" else 1, ecu)
        core = Bootloader(cfg, parse_sim(cfg), store, now=NOW)
        cores.append(core)
        return core

    yield make
    for core in cores:
        core.close()


def one(core: Bootloader, hex_request: str | bytes) -> bytes:
    request = bytes.fromhex(hex_request) if isinstance(hex_request, str) else hex_request
    answers = core.handle(request, NOW)
    assert len(answers) == 1
    return answers[0].data


def unlock(core: Bootloader) -> None:
    assert one(core, "1003")[0] == 0x50
    sec = core.ecu.security
    seed = one(core, bytes([0x27, sec.level]))[2:]
    assert one(core, bytes([0x27, sec.level + 1]) + sec.load()(seed, sec.level, sec.params))[0] == 0x67


def test_configuration_did_write_survives_a_restart(make_core: Callable[..., Bootloader]) -> None:
    core = make_core("engine")
    assert one(core, "22f1a0") == bytes.fromhex("62f1a001")
    unlock(core)
    assert one(core, "2ef1a002") == bytes.fromhex("6ef1a0")
    core.close()
    again = make_core("engine")
    assert one(again, "22f1a0") == bytes.fromhex("62f1a002")


@pytest.mark.parametrize("nrc", [0x22, 0x31, 0x33])
def test_fault_knob_refuses_a_configuration_write(make_core: Callable[..., Bootloader], nrc: int) -> None:
    core = make_core("engine", faults={"refuse_config_write": {"nrc": nrc, "did": 0xF1A1, "times": 1}})
    unlock(core)
    assert one(core, "2ef1a10078") == bytes([0x7F, 0x2E, nrc])
    assert one(core, "22f1a1") == bytes.fromhex("62f1a100fa")  # nothing stored
    assert one(core, "2ef1a000") == bytes.fromhex("6ef1a0")  # another DID is not refused
    assert one(core, "2ef1a10078") == bytes.fromhex("6ef1a1")  # fired once, then the ECU accepts


def test_refusal_nrc_is_one_of_the_three(make_core: Callable[..., Bootloader]) -> None:
    with pytest.raises(ConfigurationError, match="0x22"):
        make_core("engine", faults={"refuse_config_write": {"nrc": 0x72}})


def _frame(selector: int, **signals: int) -> can.Message:
    message = DBC.get_message_by_name("OTA_CONFIG_BROADCAST")
    return can.Message(arbitration_id=message.frame_id, is_extended_id=False,
                       data=message.encode({"ConfigSelector": selector, **signals}))


def test_broadcast_frame_sets_the_mapped_did(make_core: Callable[..., Bootloader]) -> None:
    core = make_core("brake")
    assert core.sim.config_broadcast is not None
    key, hear = config_listener(core, core.sim.config_broadcast, CONFIGS / "bench-vehicle.dbc")
    assert key == (0x6A0, False)
    hear(_frame(1, ComfortLights=1), NOW)
    assert one(core, "22f1b0") == bytes.fromhex("62f1b001")
    assert one(core, "22f1b1") == bytes.fromhex("62f1b101")  # the other branch is untouched
    hear(_frame(2, HillHoldLevel=3), NOW)
    assert one(core, "22f1b1") == bytes.fromhex("62f1b103")
    assert core.status(NOW)["config_dids"] == {"comfort_lights": "01", "hill_hold_level": "03"}


def test_broadcast_ignored_by_fault_knob_and_in_programming_session(make_core: Callable[..., Bootloader]) -> None:
    core = make_core("body", faults={"ignore_config_broadcast": {"times": 1}})
    assert core.sim.config_broadcast is not None
    _, hear = config_listener(core, core.sim.config_broadcast, CONFIGS / "bench-vehicle.dbc")
    hear(_frame(1, ComfortLights=1), NOW)
    assert one(core, "22f1b0") == bytes.fromhex("62f1b000")
    assert one(core, "1003")[0] == 0x50 and one(core, "1002")[0] == 0x50
    hear(_frame(1, ComfortLights=1), NOW)  # the bootloader, not the application, is running
    assert one(core, "22f1b0") == bytes.fromhex("62f1b000")


def test_broadcast_signal_must_map_to_a_config_did(make_core: Callable[..., Bootloader]) -> None:
    with pytest.raises(ConfigurationError, match="'nowhere', which is not in config_dids"):
        make_core("body", config_broadcast={"message": "OTA_CONFIG_BROADCAST", "signals": {"ComfortLights": "nowhere"}})
