"""The bench bus: lossless, ordered, cross-process, CAN FD capable."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import can
import pytest

from bench.canbus.hub import HubThread


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubThread]:
    monkeypatch.setenv("OTA_BENCH_HUB_DIR", str(tmp_path / "hub"))
    with HubThread(["t", "u"]) as h:
        yield h


def test_frames_reach_every_other_node_in_order(hub: HubThread) -> None:
    a = can.Bus(interface="benchhub", channel="t")
    b = can.Bus(interface="benchhub", channel="t")
    c = can.Bus(interface="benchhub", channel="t")
    other = can.Bus(interface="benchhub", channel="u")
    try:
        for i in range(2000):
            a.send(can.Message(arbitration_id=0x100 + (i % 16), data=i.to_bytes(4, "big"), is_extended_id=False))
        for node in (b, c):
            got = [node.recv(timeout=10) for _ in range(2000)]
            assert all(m is not None for m in got)
            assert [int.from_bytes(m.data, "big") for m in got if m] == list(range(2000))
        assert a.recv(timeout=0.05) is None  # no echo of own frames by default
        assert other.recv(timeout=0.05) is None  # channels are separate buses
    finally:
        for bus in (a, b, c, other):
            bus.shutdown()


def test_can_fd_and_extended_frames_round_trip(hub: HubThread) -> None:
    a = can.Bus(interface="benchhub", channel="t", fd=True)
    b = can.Bus(interface="benchhub", channel="t", fd=True)
    try:
        sent = can.Message(arbitration_id=0x18DA10F1, is_extended_id=True, is_fd=True, bitrate_switch=True,
                           data=bytes(range(64)))
        a.send(sent)
        got = b.recv(timeout=10)
        assert got is not None
        assert got.arbitration_id == 0x18DA10F1 and got.is_extended_id
        assert got.is_fd and got.bitrate_switch and bytes(got.data) == bytes(range(64))
    finally:
        a.shutdown()
        b.shutdown()


def test_fd_frame_refused_on_classic_bus(hub: HubThread) -> None:
    a = can.Bus(interface="benchhub", channel="t")
    try:
        with pytest.raises(can.CanOperationError, match="CAN FD frame"):
            a.send(can.Message(arbitration_id=1, is_fd=True, data=bytes(12)))
    finally:
        a.shutdown()


def test_receive_own_messages(hub: HubThread) -> None:
    a = can.Bus(interface="benchhub", channel="t", receive_own_messages=True)
    try:
        a.send(can.Message(arbitration_id=0x7DF, data=b"\x02\x3e\x80", is_extended_id=False))
        own = a.recv(timeout=5)
        assert own is not None and bytes(own.data) == b"\x02\x3e\x80" and not own.is_rx
    finally:
        a.shutdown()


def test_filters_apply(hub: HubThread) -> None:
    a = can.Bus(interface="benchhub", channel="t")
    b = can.Bus(interface="benchhub", channel="t",
                can_filters=[{"can_id": 0x7E8, "can_mask": 0x7FF, "extended": False}])
    try:
        a.send(can.Message(arbitration_id=0x100, data=b"x", is_extended_id=False))
        a.send(can.Message(arbitration_id=0x7E8, data=b"y", is_extended_id=False))
        got = b.recv(timeout=5)
        assert got is not None and got.arbitration_id == 0x7E8
    finally:
        a.shutdown()
        b.shutdown()


def test_no_hub_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTA_BENCH_HUB_DIR", str(tmp_path / "none"))
    with pytest.raises(can.CanInitializationError, match=r"no hub at .*start the bench first"):
        can.Bus(interface="benchhub", channel="t")


def _burst_from_another_process(count: int) -> subprocess.Popen[bytes]:
    """A process sending ``count`` unpaced frames numbered 0.. on channel t."""
    script = textwrap.dedent(f"""
        import can
        bus = can.Bus(interface="benchhub", channel="t")
        for i in range({count}):
            bus.send(can.Message(arbitration_id=0x200, data=i.to_bytes(4, "big"), is_extended_id=False))
        bus.shutdown()
    """)
    return subprocess.Popen([sys.executable, "-c", script], env=dict(os.environ))


def _receive_burst(receiver: can.BusABC, count: int) -> None:
    """Every frame of the burst arrives, in order."""
    proc = _burst_from_another_process(count)
    seen = []
    for _ in range(count):
        msg = receiver.recv(timeout=10)
        assert msg is not None, f"frame {len(seen)} of {count} lost for a node that reads"
        seen.append(int.from_bytes(msg.data, "big"))
    assert proc.wait(timeout=60) == 0
    assert seen == list(range(count))


def test_lossless_between_processes_under_a_burst(hub: HubThread) -> None:
    """A burst of 20,000 unpaced frames from another process arrives complete and in order."""
    receiver = can.Bus(interface="benchhub", channel="t")
    try:
        _receive_burst(receiver, 20000)
    finally:
        receiver.shutdown()


def test_a_node_that_never_reads_does_not_stall_the_bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Like a CAN controller with a full receive FIFO, a silent node is overrun, not a brake on the bus."""
    monkeypatch.setenv("OTA_BENCH_HUB_DIR", str(tmp_path / "hub"))
    with HubThread(["t"], stall_limit=0.2):
        silent = can.Bus(interface="benchhub", channel="t")  # never calls recv()
        receiver = can.Bus(interface="benchhub", channel="t")
        try:
            # ~1.3 MB of records: far more than the socket buffers of a node that never reads
            _receive_burst(receiver, 60000)
        finally:
            silent.shutdown()
            receiver.shutdown()
