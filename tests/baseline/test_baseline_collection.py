"""Active + passive collection together: which reading counts per ECU, and what gets stored."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import can
import pytest
from baselinekit import CONFIGS, write_config

from agent.config.vehicle import VehicleConfig, load_vehicle_config
from agent.errors import ConfigurationError
from bench.canbus.hub import HubThread
from bench.version_broadcast import VersionBroadcaster, load_dbc
from update_agent.version_collection import _load_dbc, collect
from update_agent.version_reading import VersionReading, with_identity_from
from update_agent.version_store import VersionStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1.0  # every reading is later than the one before
        return self.now


@pytest.fixture
def vehicle(tmp_path: Path, hub_dir: Path) -> VehicleConfig:
    return load_vehicle_config(write_config(tmp_path / "vehicle.yaml"))


@pytest.fixture
def hub(hub_dir: Path) -> Iterator[HubThread]:
    with HubThread(["powertrain", "body"]) as h:
        yield h


def fake_uds(answers: dict[str, VersionReading]) -> Any:
    def active(vehicle: VehicleConfig, names: list[str], *, timeout: float | None,
               clock: Any) -> dict[str, VersionReading]:
        stamp = clock()
        return {n: VersionReading(**{**answers[n].__dict__, "read_at": stamp}) for n in names}
    return active


def test_each_ecu_is_judged_by_its_newest_answered_reading(vehicle: VehicleConfig, hub: HubThread,
                                                           tmp_path: Path) -> None:
    db = load_dbc(CONFIGS / "bench-vehicle.dbc")
    powertrain = can.Bus(interface="benchhub", channel="powertrain")
    # engine broadcasts a newer version than UDS saw; brake broadcasts nothing; body is deaf to UDS
    body_bus = can.Bus(interface="benchhub", channel="body")
    casters = [VersionBroadcaster(powertrain, db, "ENGINE_VERSION", lambda: ("H1.0", "1.1.0"), period=0.02),
               VersionBroadcaster(body_bus, db, "BODY_VERSION", lambda: ("H1.2", "2.0.0"), period=0.02)]
    uds = fake_uds({
        "engine": VersionReading("engine", "uds", 0, True, "H1.0", "1.0.0"),
        "brake": VersionReading("brake", "uds", 0, True, "H2.1", "3.4.0"),
        "body": VersionReading.not_answering("body", "uds", 0, "no response within 0.5 s"),
    })
    try:
        for c in casters:
            c.start()
        with VersionStore.in_dir(tmp_path / "state") as store:
            got = collect(vehicle, listen=0.5, store=store, clock=Clock(), active=uds)
            stored = {e: store.history(e) for e in ("engine", "brake", "body")}
    finally:
        for c in casters:
            c.stop()
        powertrain.shutdown()
        body_bus.shutdown()
    used = {e: (r.source, r.answered, r.software_version) for e, r in got.readings.items()}
    assert used == {"engine": ("can-frame", True, "1.1.0"),  # newer than the UDS read
                    "brake": ("uds", True, "3.4.0"),  # no frame heard: the UDS answer counts
                    "body": ("can-frame", True, "2.0.0")}  # UDS silent, frame heard
    assert not got.by_source["can-frame"]["brake"].answered
    assert got.by_source["can-frame"]["brake"].detail == "no version frame within 0.5 s"
    assert "engine: can-frame says software version 1.1.0, uds says 1.0.0; using the newer (can-frame)" \
        in got.notes
    # both sources of every ECU are in the store, the silent ones too
    assert {r.source for r in stored["body"]} == {"uds", "can-frame"}
    assert [r.answered for r in stored["brake"] if r.source == "can-frame"] == [False]


def test_a_newer_frame_reading_still_shows_the_uds_part_number(vehicle: VehicleConfig, hub: HubThread) -> None:
    db = load_dbc(CONFIGS / "bench-vehicle.dbc")
    powertrain = can.Bus(interface="benchhub", channel="powertrain")
    body_bus = can.Bus(interface="benchhub", channel="body")
    casters = [VersionBroadcaster(powertrain, db, "BRAKE_VERSION", lambda: ("H2.1", "3.5.0"), period=0.02),
               VersionBroadcaster(body_bus, db, "BODY_VERSION", lambda: ("H1.2", "2.0.0"), period=0.02)]
    uds_answers = {"brake": VersionReading("brake", "uds", 1.0, True, "H2.1", "3.4.0", "BRK-0815", "BRK0000001"),
                   "body": VersionReading("body", "uds", 1.0, True, "H1.2", "2.0.0", "BCM-2201", None)}

    def uds(vehicle: VehicleConfig, names: list[str], *, timeout: float | None,
            clock: Any) -> dict[str, VersionReading]:
        return {n: uds_answers[n] for n in names}  # read at 1.0: older than any frame (the clock is at 1000+)

    try:
        for c in casters:
            c.start()
        got = collect(vehicle, ecus=["brake", "body"], listen=5.0, clock=Clock(), active=uds)
    finally:
        for c in casters:
            c.stop()
        powertrain.shutdown()
        body_bus.shutdown()
    brake, body = got.readings["brake"], got.readings["body"]
    # the frame reading is still the one used: its versions, its source, its time
    assert (brake.source, brake.hardware_version, brake.software_version) == ("can-frame", "H2.1", "3.5.0")
    assert brake.read_at == got.by_source["can-frame"]["brake"].read_at
    # what the frame does not carry comes from the UDS reading of the same run
    assert (brake.part_number, brake.serial_number) == ("BRK-0815", "BRK0000001")
    assert (body.source, body.part_number, body.serial_number) == ("can-frame", "BCM-2201", None)
    # the disagreement is still told against the newer reading; the frame readings themselves are untouched
    assert got.notes == ["brake: can-frame says software version 3.5.0, uds says 3.4.0; using the newer (can-frame)"]
    assert got.by_source["can-frame"]["brake"].part_number is None


def test_identity_is_filled_only_from_answered_readings_and_never_the_versions() -> None:
    frame = VersionReading("brake", "can-frame", 30.0, True, "H2.1", None)
    silent = VersionReading.not_answering("brake", "uds", 40.0, "no response")
    older = VersionReading("brake", "uds", 10.0, True, "H9", "9.9.9", "OLD-1", "S-OLD")
    newer = VersionReading("brake", "uds", 20.0, True, "H2.1", "3.4.0", "BRK-0815", None)
    filled = with_identity_from(frame, [frame, silent, older, newer])
    assert (filled.part_number, filled.serial_number) == ("BRK-0815", "S-OLD")  # newest that has each
    assert (filled.hardware_version, filled.software_version, filled.source) == ("H2.1", None, "can-frame")
    assert with_identity_from(frame, [frame, silent]) is frame


def test_unknown_ecu_name_is_a_configuration_error(vehicle: VehicleConfig) -> None:
    with pytest.raises(ConfigurationError, match="unknown ECU 'gateway'"):
        collect(vehicle, ecus=["gateway"], passive=False, active=fake_uds({}))


def test_no_hub_means_frames_are_noted_not_fatal(vehicle: VehicleConfig) -> None:
    uds = fake_uds({n: VersionReading(n, "uds", 0, True, "H", "1") for n in ("engine", "brake", "body")})
    got = collect(vehicle, listen=0.1, active=uds, clock=Clock())
    assert {r.source for r in got.readings.values()} == {"uds"}
    assert any(n.startswith("version frames on bus powertrain:") for n in got.notes)


def test_the_dbc_is_parsed_once_and_again_when_the_file_changes(tmp_path: Path) -> None:
    dbc = tmp_path / "vehicle.dbc"
    dbc.write_text((CONFIGS / "bench-vehicle.dbc").read_text())
    first = _load_dbc(dbc)
    assert _load_dbc(dbc) is first  # every collection of a running update agent: not parsed again
    before = dbc.stat()
    dbc.write_text(dbc.read_text().replace("ENGINE_VERSION", "ENGINE_VERSION_V2"))
    os.utime(dbc, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))  # later, on any clock
    edited = _load_dbc(dbc)
    assert edited is not first
    assert edited.get_message_by_name("ENGINE_VERSION_V2").senders == ["engine"]
