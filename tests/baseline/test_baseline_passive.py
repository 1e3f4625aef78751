"""Passive version collection over a real bench hub bus, with the bench broadcaster as the ECU."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import can
import pytest
from cantools.database.can import Database

from agent.config.node import Node
from agent.errors import ConfigurationError
from bench.canbus.hub import HubThread
from bench.version_broadcast import VersionBroadcaster, load_dbc, parse_sim_settings
from update_agent import version_frame
from update_agent.passive_versions import (
    PassiveVersionCollector,
    VersionFrameDecoder,
    collect_passive,
)
from update_agent.version_reading import VersionReading

REPO = Path(__file__).resolve().parents[2]
DBC = REPO / "configs" / "bench-vehicle.dbc"
PERIOD = 0.02
WAIT = 10.0  # s before a wait fails loudly; a pass never waits this long


@pytest.fixture
def hub(hub_dir: Path) -> Iterator[HubThread]:
    with HubThread(["powertrain", "body"]) as h:
        yield h


@pytest.fixture
def db() -> Database:
    return load_dbc(DBC)


class Versions:
    """What the simulated ECU runs; the broadcaster asks before every frame."""

    def __init__(self, hardware: str, software: str) -> None:
        self.lock = threading.Lock()
        self.hardware, self.software = hardware, software

    def __call__(self) -> tuple[str, str]:
        with self.lock:
            return self.hardware, self.software


def test_codec_round_trip_and_limits() -> None:
    signals = version_frame.encode("H2.1", "3.4.0", 0)
    assert version_frame.decode(signals) == version_frame.FrameVersions("H2.1", "3.4.0", 0)
    assert version_frame.decode(version_frame.encode("7.255", "0.0.255", 9)).hardware_version == "7.255"
    for hw, sw in (("H2.1", "1.0.0-beta"), ("H2.1", "256.0.0"), ("h2.1", "1.0.0"), ("H2", "1.0.0")):
        with pytest.raises(version_frame.VersionFrameError):
            version_frame.encode(hw, sw, 0)
    assert [version_frame.next_counter(c) for c in (0, 1, 254, 255)] == [1, 2, 255, 1]


def test_dbc_describes_one_version_message_per_bench_ecu(db: Database) -> None:
    messages = version_frame.version_messages(db)
    assert sorted(messages) == ["body", "brake", "engine"]
    assert messages["engine"].name == "ENGINE_VERSION" and messages["engine"].cycle_time == 100
    # the frame layout documented in update_agent/version_frame.py
    data = messages["brake"].encode(version_frame.encode("H2.1", "3.4.0", 7))
    assert data.hex() == "0304004802010700"


def test_collector_hears_every_broadcasting_ecu(hub: HubThread, db: Database) -> None:
    tx = can.Bus(interface="benchhub", channel="powertrain")
    tx_body = can.Bus(interface="benchhub", channel="body")
    rx = can.Bus(interface="benchhub", channel="powertrain")
    rx_body = can.Bus(interface="benchhub", channel="body")
    casters = [
        VersionBroadcaster(tx, db, "ENGINE_VERSION", Versions("H1.0", "1.0.0").__call__, period=PERIOD),
        VersionBroadcaster(tx, db, "BRAKE_VERSION", Versions("H2.1", "3.4.0").__call__, period=PERIOD),
        VersionBroadcaster(tx_body, db, "BODY_VERSION", Versions("H1.2", "2.0.0").__call__),  # DBC: 100 ms
    ]
    assert casters[2].period == 0.1
    stored: list[VersionReading] = []
    try:
        for c in casters:
            c.start()
        got = collect_passive([(rx, ["engine", "brake"]), (rx_body, ["body"])], db, WAIT,
                              on_change=stored.append)
    finally:
        for c in casters:
            c.stop()
        for bus in (tx, tx_body, rx, rx_body):
            bus.shutdown()
    assert {e: (r.source, r.answered, r.hardware_version, r.software_version) for e, r in got.items()} == {
        "engine": ("can-frame", True, "H1.0", "1.0.0"),
        "brake": ("can-frame", True, "H2.1", "3.4.0"),
        "body": ("can-frame", True, "H1.2", "2.0.0"),
    }
    assert {r.ecu for r in stored} == {"engine", "brake", "body"}  # the first frame of each is a change


def test_first_frame_after_a_restart_carries_the_new_version(hub: HubThread, db: Database) -> None:
    tx = can.Bus(interface="benchhub", channel="powertrain")
    rx = can.Bus(interface="benchhub", channel="powertrain")
    ecu = Versions("H1.0", "1.0.0")
    caster = VersionBroadcaster(tx, db, "ENGINE_VERSION", ecu, period=PERIOD)
    changes: list[VersionReading] = []
    collector = PassiveVersionCollector(on_change=changes.append)
    raw = can.BufferedReader()
    notifier = can.Notifier(rx, [raw, collector.listener(VersionFrameDecoder(db, ["engine"]))], timeout=0.05)
    try:
        caster.start()
        assert collector.wait_for(["engine"], WAIT, lambda f: f["engine"].frame.counter >= 3), \
            "no steady engine version frames"
        # the ECU is flashed: the application stops, the new image runs after the reset
        caster.stop()
        assert not caster.running
        with ecu.lock:
            ecu.software = "1.1.0"
        caster.start()
        assert collector.wait_for(
            ["engine"], WAIT, lambda f: f["engine"].reading.software_version == "1.1.0"), "no new version"
    finally:
        caster.stop()
        notifier.stop()
        tx.shutdown()
        rx.shutdown()
    decoder = VersionFrameDecoder(db, ["engine"])
    frames = []
    while (msg := raw.get_message(timeout=0)) is not None:
        heard = decoder.decode(msg, 0.0)
        assert heard is not None
        frames.append(heard.frame)
    restart = [i for i, f in enumerate(frames) if f.counter == 0]
    assert len(restart) == 2 and restart[0] == 0, "counter 0 exactly on the first frame after each start"
    assert frames[restart[1]].software_version == "1.1.0"  # the very first frame after the reset
    assert {f.software_version for f in frames[:restart[1]]} == {"1.0.0"}
    assert {f.software_version for f in frames[restart[1]:]} == {"1.1.0"}
    assert [f.counter for f in frames[:restart[1]]] == list(range(restart[1]))
    assert collector.restarts["engine"] == 2
    assert [c.software_version for c in changes] == ["1.0.0", "1.1.0"]  # steady repeats are not changes


def test_silent_ecu_is_not_answering_and_bad_frames_are_noted(hub: HubThread, db: Database) -> None:
    tx = can.Bus(interface="benchhub", channel="powertrain")
    rx = can.Bus(interface="benchhub", channel="powertrain")
    caster = VersionBroadcaster(tx, db, "ENGINE_VERSION", Versions("H1.0", "1.0.0"), period=PERIOD)
    collector = PassiveVersionCollector()
    notifier = can.Notifier(rx, [collector.listener(VersionFrameDecoder(db, ["engine", "brake"]))],
                            timeout=0.05)
    try:
        # a brake frame too short to decode, then a brake frame with a bad prefix letter
        tx.send(can.Message(arbitration_id=0x5F1, is_extended_id=False, data=b"\x01\x02"))
        tx.send(can.Message(arbitration_id=0x5F1, is_extended_id=False, data=bytes([1, 0, 0, 7, 1, 0, 0, 0])))
        caster.start()
        assert collector.wait_for(["engine"], WAIT)
    finally:
        caster.stop()
        notifier.stop()
    try:
        assert len(collector.bad_frames) == 2
        assert "BRAKE_VERSION from brake: cannot decode 0102" in collector.bad_frames[0]
        assert "HwPrefix is 7" in collector.bad_frames[1]
        got = collect_passive([(rx, ["engine", "brake"])], db, 0.05)
        assert not got["brake"].answered and got["brake"].detail == "no version frame within 0.05 s"
    finally:
        tx.shutdown()
        rx.shutdown()


def test_broadcaster_refuses_what_it_cannot_send(hub: HubThread, db: Database) -> None:
    tx = can.Bus(interface="benchhub", channel="powertrain")
    try:
        with pytest.raises(ConfigurationError, match="'NOPE' is not in the DBC"):
            VersionBroadcaster(tx, db, "NOPE", Versions("H1.0", "1.0.0"))
        caster = VersionBroadcaster(tx, db, "ENGINE_VERSION", Versions("H1.0", "1.0.0-beta"), period=PERIOD)
        with pytest.raises(version_frame.VersionFrameError, match=r"1\.0\.0-beta"):
            caster.start()
        assert not caster.running
    finally:
        tx.shutdown()


def test_sim_settings_parse_and_reject_typos() -> None:
    ok = parse_sim_settings(Node({"message": "ENGINE_VERSION", "period": 0.1}, source="v.yaml",
                                 path="ecus.engine.sim.version_frames"))
    assert (ok.message, ok.period) == ("ENGINE_VERSION", 0.1)
    assert parse_sim_settings(Node({"message": "X"}, source="v.yaml", path="p")).period is None
    with pytest.raises(ConfigurationError, match=r"v.yaml: ecus.engine.sim.version_frames: unknown key 'perod'"):
        parse_sim_settings(Node({"message": "X", "perod": 1}, source="v.yaml",
                                path="ecus.engine.sim.version_frames"))


BROADCASTER = textwrap.dedent("""
    import sys, can
    from bench.version_broadcast import VersionBroadcaster, load_dbc
    bus = can.Bus(interface="benchhub", channel="body")
    caster = VersionBroadcaster(bus, load_dbc(sys.argv[1]), "BODY_VERSION", lambda: ("H1.2", "2.0.0"),
                                period=0.02)
    caster.start()
    print("broadcasting", flush=True)
    sys.stdin.read()          # run until the test closes our stdin
    caster.stop()
    bus.shutdown()
""")


def test_passive_collection_across_processes(hub: HubThread, db: Database) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", BROADCASTER, str(DBC)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
    rx = can.Bus(interface="benchhub", channel="body")
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "broadcasting"
        got = collect_passive([(rx, ["body"])], db, WAIT)
        assert got["body"].answered and (got["body"].hardware_version, got["body"].software_version) == \
            ("H1.2", "2.0.0")
    finally:
        rx.shutdown()
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.wait(timeout=WAIT) == 0


def test_broadcaster_for_an_ecu_checks_the_dbc_transmitter(hub: HubThread, tmp_path: Path) -> None:
    from agent.config.vehicle import load_vehicle_config
    from bench.version_broadcast import VersionFramesSim, broadcaster_for

    vehicle = load_vehicle_config(REPO / "configs" / "bench-vehicle.yaml")
    tx = can.Bus(interface="benchhub", channel="powertrain")
    try:
        caster = broadcaster_for(tx, vehicle, vehicle.ecu("engine"), VersionFramesSim("ENGINE_VERSION"),
                                 Versions("H1.0", "1.0.0"))
        assert caster.period == 0.1  # GenMsgCycleTime
        with pytest.raises(ConfigurationError,
                           match=r"ecus.brake.sim.version_frames: message 'ENGINE_VERSION' is sent by engine"):
            broadcaster_for(tx, vehicle, vehicle.ecu("brake"), VersionFramesSim("ENGINE_VERSION"),
                            Versions("H2.1", "3.4.0"))
    finally:
        tx.shutdown()
