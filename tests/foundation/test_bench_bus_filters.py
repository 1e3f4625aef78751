"""Acceptance filters on the bench bus: applied by the hub, so other frames never reach the node."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from pathlib import Path

import can
import pytest

from bench.canbus import wire
from bench.canbus.hub import HubThread
from bench.canbus.interface import BenchHubBus
from bench.canbus.paths import socket_path

STD = 0x7FF
EXT = 0x1FFFFFFF
#: frames wait at most this long (s) before a test fails loudly
WAIT = 10.0


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubThread]:
    monkeypatch.setenv("OTA_BENCH_HUB_DIR", str(tmp_path / "hub"))
    with HubThread(["t"]) as h:
        yield h


def frame(arbitration_id: int, extended: bool = False, data: bytes = b"\x01") -> can.Message:
    return can.Message(arbitration_id=arbitration_id, is_extended_id=extended, data=data)


def received(bus: can.BusABC, count: int) -> list[tuple[int, bool, bytes]]:
    out: list[tuple[int, bool, bytes]] = []
    for _ in range(count):
        msg = bus.recv(timeout=WAIT)
        assert msg is not None, f"frame {len(out)} of {count} did not arrive"
        out.append((msg.arbitration_id, msg.is_extended_id, bytes(msg.data)))
    return out


def test_a_filtered_node_gets_only_matching_frames_and_the_others_get_all(hub: HubThread) -> None:
    sender = can.Bus(interface="benchhub", channel="t")
    filtered = can.Bus(interface="benchhub", channel="t", can_filters=[
        {"can_id": 0x0C0, "can_mask": STD, "extended": False},
        {"can_id": 0x18DA00F1, "can_mask": 0x1FFF00FF, "extended": True},  # any target address
        {"can_id": 0x300, "can_mask": 0x700},  # 0x300-0x3FF, standard or extended
    ])
    everything = can.Bus(interface="benchhub", channel="t")
    sent = [frame(0x0C0), frame(0x0C0, extended=True), frame(0x5F0), frame(0x18DA10F1, True),
            frame(0x18DB33F1, True), frame(0x3F2), frame(0x7E8), frame(0x0C1)]
    try:
        for i, msg in enumerate(sent):
            msg.data = bytearray([i])
            sender.send(msg)
        sender.send(frame(0x0C0, data=b"end"))  # the last frame: everything before it has been relayed
        assert received(everything, len(sent) + 1) == [(m.arbitration_id, m.is_extended_id, bytes(m.data))
                                                        for m in [*sent, frame(0x0C0, data=b"end")]]
        assert received(filtered, 5) == [(0x0C0, False, b"\x00"), (0x18DA10F1, True, b"\x03"),
                                         (0x18DB33F1, True, b"\x04"),  # 0x3xx in its low 11 bits: the third filter
                                         (0x3F2, False, b"\x05"), (0x0C0, False, b"end")]
    finally:
        for bus in (sender, filtered, everything):
            bus.shutdown()


def test_filters_can_be_changed_and_removed(hub: HubThread) -> None:
    sender = can.Bus(interface="benchhub", channel="t")
    node = can.Bus(interface="benchhub", channel="t", can_filters=[{"can_id": 0x100, "can_mask": STD}])
    def in_effect() -> None:
        """Once the sender hears a frame the node sent after its filters, the hub has them (one stream)."""
        node.send(frame(0x7FF, data=b"sync"))
        assert received(sender, 1) == [(0x7FF, False, b"sync")]

    try:
        node.set_filters([{"can_id": 0x200, "can_mask": STD}])
        in_effect()
        for arbitration_id in (0x100, 0x200):
            sender.send(frame(arbitration_id))
        assert [a for a, _e, _d in received(node, 1)] == [0x200]
        node.set_filters(None)  # every frame again
        in_effect()
        for arbitration_id in (0x100, 0x300):
            sender.send(frame(arbitration_id))
        assert [a for a, _e, _d in received(node, 2)] == [0x100, 0x300]
    finally:
        sender.shutdown()
        node.shutdown()


def test_many_filters_span_several_records(hub: HubThread) -> None:
    sender = can.Bus(interface="benchhub", channel="t")
    wanted = list(range(0x600, 0x620))  # 32 filters: five filter records
    node = can.Bus(interface="benchhub", channel="t", can_filters=[{"can_id": i, "can_mask": STD} for i in wanted])
    try:
        for arbitration_id in range(0x5F0, 0x630):
            sender.send(frame(arbitration_id))
        assert [a for a, _e, _d in received(node, len(wanted))] == wanted
    finally:
        sender.shutdown()
        node.shutdown()


def test_the_hub_itself_drops_what_a_node_filters_out(hub: HubThread) -> None:
    """A raw node: what the hub writes to its socket after the filter's ack (no python-can in between)."""
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.settimeout(WAIT)
    raw.connect(str(socket_path("t")))
    sender = can.Bus(interface="benchhub", channel="t")
    try:
        stream = bytearray()
        while len(stream) < len(wire.WELCOME):
            stream += raw.recv(4096)
        assert bytes(stream[:len(wire.WELCOME)]) == wire.WELCOME
        del stream[:len(wire.WELCOME)]
        raw.sendall(wire.encode_filters([{"can_id": 0x1A0, "can_mask": STD, "extended": False}]))
        records: list[bytes] = []
        while not any(wire.is_filter(r) for r in records):  # the ack: later frames are filtered by the hub
            stream += raw.recv(4096)
            records += wire.split(stream)
        for arbitration_id in (0x0C0, 0x1A0, 0x5F0, 0x1A0):
            sender.send(frame(arbitration_id))
        sender.send(frame(0x1A0, data=b"end"))  # one stream: anything written for the others comes before it
        records = [r for r in records if not wire.is_filter(r)]
        while not records or bytes(wire.decode(records[-1]).data) != b"end":
            stream += raw.recv(4096)
            records += wire.split(stream)
        assert [(wire.decode(r).arbitration_id, bytes(wire.decode(r).data)) for r in records] == [
            (0x1A0, b"\x01"), (0x1A0, b"\x01"), (0x1A0, b"end")]  # 0x0C0 and 0x5F0 never written to it
    finally:
        sender.shutdown()
        raw.close()


def test_the_hubs_rule_is_python_cans() -> None:
    """wire.matches (the hub's check) against BusABC._matches_filters, on random filters and frames."""
    rng = random.Random(6)
    for _ in range(300):
        filters: list[can.typechecking.CanFilter] = []
        for _f in range(rng.randint(1, 4)):
            extended = rng.random() < 0.5
            f: can.typechecking.CanFilter = {"can_id": rng.getrandbits(29 if extended else 11),
                                             "can_mask": rng.choice([STD, EXT, rng.getrandbits(29), 0x700, 0])}
            if rng.random() < 0.7:
                f["extended"] = extended
            filters.append(f)
        reference = can.BusABC.__new__(BenchHubBus)  # only the filter bookkeeping of a bus, no hub
        reference._filters = filters
        hub_filters = None
        for part in wire.split(bytearray(wire.encode_filters(filters))):
            hub_filters = wire.apply_filter_record(part, hub_filters)
        for _m in range(20):
            extended = rng.random() < 0.5
            base = rng.choice(filters)["can_id"] & (EXT if extended else STD)
            msg = frame(base ^ (rng.getrandbits(3) if rng.random() < 0.5 else 0), extended)
            assert wire.matches(wire.encode(msg), hub_filters) == reference._matches_filters(msg), (filters, msg)
