"""The pure parts of remote configuration: codec, items file, broadcast frame, the change core."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.config.vehicle import VehicleConfig, load_vehicle_config
from agent.errors import ConfigurationError
from update_agent.remote_config.broadcast import frame_spec
from update_agent.remote_config.change import VersionGateError, apply_change, plan_change, restore_values
from update_agent.remote_config.codec import ConfigValueError, Encoding
from update_agent.remote_config.items import Catalog, at_least, load_items
from update_agent.version_frame import load_dbc

from .memory import MemoryVehicle

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
VEHICLE = CONFIGS / "bench-vehicle.yaml"
ITEMS = CONFIGS / "bench-config-items.yaml"


@pytest.fixture(scope="module")
def vehicle() -> VehicleConfig:
    return load_vehicle_config(VEHICLE)


@pytest.fixture(scope="module")
def catalog(vehicle: VehicleConfig) -> Catalog:
    return load_items(ITEMS, vehicle)


def memory(**overrides: Any) -> MemoryVehicle:
    values = {("engine", 0xF1A0): b"\x01", ("engine", 0xF1A1): b"\x00\xfa", ("body", 0xF1A1): b"\x00\xfa",
              ("engine", 0xF1A2): b"\x00", ("brake", 0xF1B0): b"\x00", ("body", 0xF1B0): b"\x00",
              ("brake", 0xF1B1): b"\x01"}
    mem = MemoryVehicle(versions={"engine": "1.0.0", "brake": "3.4.0", "body": "2.0.0"}, values=values)
    for key, value in overrides.items():
        setattr(mem, key, value)
    return mem


# -- codec ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("enc", "text", "data", "back"), [
    (Encoding("bool"), "on", b"\x01", "on"),
    (Encoding("bool"), "FALSE", b"\x00", "off"),
    (Encoding("enum", values={"eco": 0, "sport": 2}), "sport", b"\x02", "sport"),
    (Encoding("uint", size=2, minimum=30, maximum=250), "0x78", b"\x00\x78", "120"),
    (Encoding("hex", size=3), "0a0B0c", b"\x0a\x0b\x0c", "0a0b0c"),
])
def test_codec_round_trip(enc: Encoding, text: str, data: bytes, back: str) -> None:
    assert enc.encode(text) == data
    assert enc.decode(data) == back


@pytest.mark.parametrize(("enc", "text", "why"), [
    (Encoding("bool"), "maybe", "not on/off"),
    (Encoding("enum", values={"eco": 0}), "sport", "not one of eco"),
    (Encoding("uint", size=2, minimum=30, maximum=250), "251", "outside 30..250"),
    (Encoding("uint", size=1), "256", "outside 0..255"),
    (Encoding("hex", size=2), "0a", "1 bytes, the item takes 2"),
])
def test_codec_refuses_what_it_cannot_carry(enc: Encoding, text: str, why: str) -> None:
    with pytest.raises(ConfigValueError, match=why):
        enc.encode(text)


def test_unknown_enum_number_is_shown_as_hex() -> None:
    assert Encoding("enum", values={"eco": 0}).decode(b"\x07") == "0x07"


def test_versions_compare_numerically() -> None:
    assert at_least("1.10.0", "1.9.0")
    assert not at_least("1.0.0", "1.1.0")
    assert at_least("3.4.0", "3.4.0")


# -- items file ----------------------------------------------------------------------------
def test_bench_items_load(catalog: Catalog) -> None:
    assert catalog.item("comfort_lights").is_broadcast
    assert catalog.item("speed_limit").ecus == {"engine": "1.0.0", "body": "2.0.0"}
    assert catalog.item("drive_mode").did == 0xF1A0


def _items(tmp_path: Path, vehicle: VehicleConfig, items: dict[str, Any], **top: Any) -> Catalog:
    path = tmp_path / "items.yaml"
    path.write_text(yaml.safe_dump({**top, "items": items}))
    return load_items(path, vehicle)


@pytest.mark.parametrize(("item", "key", "why"), [
    ({"method": "diagnostic", "did": 0xF1A0, "encoding": {"type": "bool"}, "ecus": {"gearbox": {}}},
     "items.x.ecus.gearbox", "unknown ECU 'gearbox'"),
    ({"method": "broadcast", "message": "OTA_CONFIG_BROADCAST", "signal": "ComfortLights",
      "encoding": {"type": "bool"}, "ecus": {"body": {}}}, "items.x.read_back.did", "needs read_back.did"),
    ({"method": "broadcast", "message": "OTA_CONFIG_BROADCAST", "signal": "Nope", "read_back": {"did": 1},
      "encoding": {"type": "bool"}, "ecus": {"body": {}}}, "items.x.signal", "no signal 'Nope'"),
    ({"method": "diagnostic", "did": 1, "encoding": {"type": "bool"}, "ecus": {"body": {}}, "colour": "red"},
     "items.x", "colour"),
    ({"method": "diagnostic", "did": 1, "encoding": {"type": "enum", "values": {"a": 1, "b": 1}},
      "ecus": {"body": {}}}, "items.x.encoding.values", "share a number"),
])
def test_bad_items_name_key_and_reason(tmp_path: Path, vehicle: VehicleConfig, item: dict[str, Any], key: str,
                                       why: str) -> None:
    with pytest.raises(ConfigurationError, match=why) as info:
        _items(tmp_path, vehicle, {"x": item})
    assert info.value.key == key
    assert info.value.source == str(tmp_path / "items.yaml")


# -- broadcast frame -------------------------------------------------------------------------
def test_broadcast_frame_selects_the_items_branch(catalog: Catalog) -> None:
    db = load_dbc(CONFIGS / "bench-vehicle.dbc")
    for name, selector, signal in (("comfort_lights", 1, "ComfortLights"), ("hill_hold_level", 2, "HillHoldLevel")):
        frame = frame_spec(catalog, catalog.item(name)).frame(1)
        assert frame.arbitration_id == 0x6A0
        decoded = db.decode_message(frame.arbitration_id, bytes(frame.data), decode_choices=False)
        assert decoded == {"ConfigSelector": selector, signal: 1}


# -- the change core ---------------------------------------------------------------------------
def test_diagnostic_change_writes_each_ecu_and_reads_back(catalog: Catalog) -> None:
    mem = memory()
    events: list[str] = []
    result = apply_change(mem, plan_change(catalog, [("speed_limit", "120")]),
                          on_event=lambda event, details: events.append(event))
    assert result.state == "applied"
    assert [(o.ecu, o.previous, o.read_back, o.state) for o in result.outcomes] == [
        ("engine", "250", "120", "confirmed"), ("body", "250", "120", "confirmed")]
    assert mem.writes() == [("write", "speed_limit", "engine", "0078"), ("write", "speed_limit", "body", "0078")]
    assert events == ["previous", "written"]


def test_broadcast_change_is_one_frame_for_all_ecus(catalog: Catalog) -> None:
    mem = memory()
    result = apply_change(mem, plan_change(catalog, [("comfort_lights", "on")]))
    assert result.ok
    assert mem.writes() == [("broadcast", "comfort_lights", "01")]
    assert {o.ecu: o.read_back for o in result.outcomes} == {"brake": "on", "body": "on"}


def test_one_ecu_refusing_puts_every_ecu_back(catalog: Catalog) -> None:
    mem = memory(refuse={("body", 0xF1A1): 0x22})
    result = apply_change(mem, plan_change(catalog, [("drive_mode", "sport"), ("speed_limit", "120")]))
    assert result.state == "rolled_back"
    assert "body refused" in (result.reason or "")
    states = {(o.item, o.ecu): o.state for o in result.outcomes}
    assert states == {("drive_mode", "engine"): "restored", ("speed_limit", "engine"): "restored",
                      ("speed_limit", "body"): "refused"}
    assert mem.values[("engine", 0xF1A0)] == b"\x01"
    assert mem.values[("engine", 0xF1A1)] == mem.values[("body", 0xF1A1)] == b"\x00\xfa"


def test_broadcast_not_applied_by_one_ecu_is_broadcast_back(catalog: Catalog) -> None:
    mem = memory(deaf={"brake"})
    result = apply_change(mem, plan_change(catalog, [("comfort_lights", "on")]))
    assert result.state == "rolled_back"
    assert mem.writes() == [("broadcast", "comfort_lights", "01"), ("broadcast", "comfort_lights", "00")]
    assert {o.ecu: o.state for o in result.outcomes} == {"brake": "not_confirmed", "body": "restored"}


def test_broadcast_rollback_with_different_previous_values_writes_each_ecu(catalog: Catalog) -> None:
    level = dataclasses.replace(catalog.item("comfort_lights"), encoding=Encoding("uint"))
    mem = memory(deaf={"brake"})
    mem.values[("body", 0xF1B0)] = b"\x02"  # brake 0, body 2: no single frame puts both back
    result = apply_change(mem, plan_change(Catalog("test", {level.name: level}), [(level.name, "1")]))
    assert result.state == "rolled_back"
    assert mem.writes() == [("broadcast", "comfort_lights", "01"), ("write", "comfort_lights", "body", "02")]
    assert mem.values[("brake", 0xF1B0)] == b"\x00" and mem.values[("body", 0xF1B0)] == b"\x02"


def test_rollback_that_cannot_restore_says_so(catalog: Catalog) -> None:
    mem = memory(refuse={("body", 0xF1A1): 0x22, ("engine", 0xF1A1): 0x33}, accept_first={("engine", 0xF1A1): 1})
    result = apply_change(mem, plan_change(catalog, [("speed_limit", "120")]))
    assert result.state == "rollback_failed"
    engine = next(o for o in result.outcomes if o.ecu == "engine")
    assert engine.state == "restore_failed"
    assert "restore failed" in (engine.error or "") and mem.values[("engine", 0xF1A1)] == b"\x00\x78"


def test_version_gate_refuses_before_anything_is_read_or_written(catalog: Catalog) -> None:
    mem = memory()
    with pytest.raises(VersionGateError, match=r"launch_control needs engine on software 1\.1\.0") as info:
        apply_change(mem, plan_change(catalog, [("drive_mode", "eco"), ("launch_control", "on")]))
    assert info.value.too_old == {"engine": ("1.0.0", "1.1.0")}
    assert mem.writes() == []
    mem.versions["engine"] = "1.1.0"
    assert apply_change(mem, plan_change(catalog, [("drive_mode", "eco"), ("launch_control", "on")])).ok


def test_plan_checks_names_values_and_ecus(catalog: Catalog) -> None:
    with pytest.raises(ConfigurationError, match="unknown configuration item 'turbo'"):
        plan_change(catalog, [("turbo", "on")])
    with pytest.raises(ConfigValueError, match="not one of eco, normal, sport"):
        plan_change(catalog, [("drive_mode", "rocket")])
    with pytest.raises(ConfigurationError, match="does not concern ECU 'brake'"):
        plan_change(catalog, [("speed_limit", "100")], ["brake"])
    with pytest.raises(ConfigurationError, match="is broadcast"):
        plan_change(catalog, [("comfort_lights", "on")], ["body"])
    only_body = plan_change(catalog, [("speed_limit", "100")], ["body"])
    assert only_body[0].ecus == ("body",)


def test_restore_writes_only_the_ecus_not_on_the_journalled_values(catalog: Catalog) -> None:
    mem = memory()
    mem.values[("body", 0xF1A1)] = b"\x00\x78"  # body took 120, the engine is still on 250
    mem.values[("brake", 0xF1B0)] = mem.values[("body", 0xF1B0)] = b"\x01"
    previous = [("speed_limit", "engine", "250"), ("speed_limit", "body", "250"),
                ("comfort_lights", "brake", "off"), ("comfort_lights", "body", "off")]
    result = restore_values(mem, catalog, previous)
    assert result.state == "rolled_back"
    # last item first, as a change's own rollback goes
    assert mem.writes() == [("broadcast", "comfort_lights", "00"), ("write", "speed_limit", "body", "00fa")]
    assert {(o.item, o.ecu): o.state for o in result.outcomes} == {
        ("speed_limit", "engine"): "unchanged", ("speed_limit", "body"): "restored",
        ("comfort_lights", "brake"): "restored", ("comfort_lights", "body"): "restored"}


def test_restore_of_some_ecus_of_a_broadcast_item_writes_them_over_uds(catalog: Catalog) -> None:
    mem = memory()
    mem.values[("body", 0xF1B0)] = b"\x01"
    result = restore_values(mem, catalog, [("comfort_lights", "body", "off")])
    assert result.state == "rolled_back"
    assert mem.writes() == [("write", "comfort_lights", "body", "00")]  # a frame would reach the brake too
