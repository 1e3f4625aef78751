"""Version reads over the bench bus: ECUs of one bus share a link and are read in parallel, a
silent ECU costs one request, a refused DID leaves the others, and a link's receive thread ends
when the link closes (not after a receive timeout)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import can
import pytest
from flashkit import write_config

from agent.config.vehicle import VehicleConfig, load_vehicle_config
from bench.ecu.host import BenchHost
from update_agent.uds.canlink import CanLink, WakeableNotifier
from update_agent.uds.links import VehicleLinks
from update_agent.versions import read_versions

pytestmark = pytest.mark.e2e

#: a DID the simulated engine does not have (it answers NRC 0x31 requestOutOfRange)
UNKNOWN_DID = 0xF1FE


@pytest.fixture(scope="module")
def vehicle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VehicleConfig]:
    """The bench vehicle with only the engine simulated (brake, on the same bus, and body stay
    silent); the tester's config lists a version DID the engine does not have."""
    root = tmp_path_factory.mktemp("version-links")

    def tester(data: dict[str, Any]) -> None:
        data["ecus"]["engine"]["version_dids"] = {"part_number": 0xF187, "software_version": 0xF189,
                                                  "calibration": UNKNOWN_DID, "serial_number": 0xF18C}

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OTA_BENCH_HUB_DIR", str(root / "hub"))
        host = BenchHost(load_vehicle_config(write_config(root, name="sim.yaml")), root / "state",
                         ecus=["engine"])
        host.start()
        try:
            yield load_vehicle_config(write_config(root, tester))
        finally:
            host.stop()


class CountingLinks(VehicleLinks):
    """Records the link each session got (sessions open from several threads at once)."""

    given: list[tuple[str, CanLink]] = []

    def link(self, bus: str) -> CanLink:
        got = super().link(bus)
        CountingLinks.given.append((bus, got))
        return got


def requests_seen(spy: can.BusABC) -> list[bytes]:
    """Every frame the spy node got, until none comes for a while (the read is over by then)."""
    frames = []
    while (msg := spy.recv(timeout=0.5)) is not None:
        frames.append(bytes(msg.data))
    return frames


def test_a_silent_ecu_costs_one_request_and_its_bus_neighbour_still_answers(vehicle: VehicleConfig) -> None:
    brake = vehicle.ecu("brake")
    spy = can.Bus(interface="benchhub", channel="powertrain",
                  can_filters=[{"can_id": brake.isotp.tx_id or 0, "can_mask": 0x7FF, "extended": False}])
    CountingLinks.given = []
    try:
        found = {v.ecu: v for v in read_versions(vehicle, ["engine", "brake"], timeout=0.5,
                                                 links_factory=CountingLinks)}
        to_brake = requests_seen(spy)
    finally:
        spy.shutdown()
    # both ECUs of the bus, opened in parallel, over one link
    assert len(CountingLinks.given) == 2 and len({id(link) for _, link in CountingLinks.given}) == 1
    assert found["engine"].answering and found["engine"].values["software_version"] == "1.0.0"
    assert not found["brake"].answering and "no response within 0.5 s" in (found["brake"].error or "")
    # one ReadDataByIdentifier to the silent ECU, not one per version DID
    assert [f[1:4] for f in to_brake] == [bytes([0x22, 0xF1, 0x87])]


def test_an_ecu_refusing_one_did_still_gives_the_others(vehicle: VehicleConfig) -> None:
    (engine,) = read_versions(vehicle, ["engine"])
    assert engine.answering
    assert engine.values == {"part_number": "ENG-4711", "software_version": "1.0.0", "serial_number": "ENG0000001"}
    assert engine.errors == {"calibration": f"DID {UNKNOWN_DID:04X}: NRC 0x31 requestOutOfRange"}


def test_a_link_hands_every_frame_to_its_listeners_and_its_thread_ends_with_the_link(
        vehicle: VehicleConfig) -> None:
    got: list[int] = []
    done = threading.Condition()

    def listener(msg: can.Message) -> None:
        with done:
            got.append(msg.arbitration_id)
            done.notify_all()

    link = CanLink(vehicle.buses["body"])
    sender = can.Bus(interface="benchhub", channel="body")
    try:
        notifier = link.notifier
        assert isinstance(notifier, WakeableNotifier)  # the bench bus has a file descriptor
        notifier.add_listener(listener)
        for i in range(50):  # a burst: the hub hands several frames over in one read
            sender.send(can.Message(arbitration_id=0x100 + i, data=b"\x01", is_extended_id=False))
        with done:
            assert done.wait_for(lambda: len(got) >= 50, timeout=10), f"only {len(got)} of 50 frames"
        assert got == [0x100 + i for i in range(50)]
    finally:
        sender.shutdown()
        link.close()
    # no receive timeout to run out: nothing but the wake-up can end a thread waiting on a quiet bus
    assert not notifier.running


def test_a_bus_without_a_file_descriptor_keeps_python_cans_notifier(tmp_path: Path) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["buses"]["body"].update(interface="virtual", channel=f"body-{tmp_path.name}")

    bus = load_vehicle_config(write_config(tmp_path, edit)).buses["body"]
    with CanLink(bus) as link:
        assert type(link.notifier) is can.Notifier
