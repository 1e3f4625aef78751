"""Bit timing of CAN frames and the hub's emulated wire."""

from __future__ import annotations

import asyncio
from pathlib import Path

import can
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.canbus import wire
from bench.canbus.bittime import crc15, frame_bits, frame_time, stuff_count
from bench.canbus.hub import HubThread, _Channel, _Node


def std(ident: int, data: bytes) -> can.Message:
    return can.Message(arbitration_id=ident, data=data, is_extended_id=False)


def reference_stuff_count(bits: list[int]) -> int:
    """Bit by bit, as a transmitter does it."""
    count, run_bit, run = 0, -1, 0
    for bit in bits:
        run = run + 1 if bit == run_bit else 1
        run_bit = bit
        if run == 5:
            count += 1
            run_bit, run = 1 - bit, 1
    return count


def reference_crc15(bits: list[int]) -> int:
    crc = 0
    for bit in bits:
        nxt = bit ^ ((crc >> 14) & 1)
        crc = (crc << 1) & 0x7FFF
        if nxt:
            crc ^= 0x4599
    return crc


def as_bits(value: int, width: int) -> list[int]:
    return [(value >> (width - 1 - i)) & 1 for i in range(width)]


def test_stuffing_counts_runs_of_five_including_the_stuff_bit() -> None:
    assert stuff_count(0b0000, 4) == 0
    assert stuff_count(0b00000, 5) == 1
    # 00000 -> stuff 1, then 1111 with the stuff bit makes five ones -> second stuff bit
    assert stuff_count(0b000001111, 9) == 2
    assert stuff_count(int("01" * 20, 2), 40) == 0


@given(st.integers(1, 200).flatmap(lambda w: st.tuples(st.integers(0, (1 << w) - 1), st.just(w))))
def test_stuffing_and_crc_agree_with_bit_by_bit_reference(case: tuple[int, int]) -> None:
    value, width = case
    assert stuff_count(value, width) == reference_stuff_count(as_bits(value, width))
    assert crc15(value, width) == reference_crc15(as_bits(value, width))


def test_crc15_of_a_single_one_bit() -> None:
    assert crc15(1, 1) == 0x4599


def test_classic_frame_without_stuffing_is_111_bits() -> None:
    # 0x2AA = 010 1010 1010 and data 0x55.. alternate bits; nothing to stuff except where the CRC runs
    bits, fast = frame_bits(std(0x2AA, bytes([0x55] * 8)))
    assert fast == 0
    assert 111 <= bits <= 113


@given(ident=st.integers(0, 0x7FF), data=st.binary(min_size=0, max_size=8))
def test_classic_standard_frame_bounds(ident: int, data: bytes) -> None:
    """Between the unstuffed length and the worst case (Davis et al.: 55 + 10 * bytes bits incl. IFS)."""
    bits, _ = frame_bits(std(ident, data))
    unstuffed = 47 + 8 * len(data)
    assert unstuffed <= bits <= 55 + 10 * len(data)


@given(ident=st.integers(0, 0x1FFFFFFF), data=st.binary(min_size=0, max_size=8))
def test_classic_extended_frame_bounds(ident: int, data: bytes) -> None:
    bits, _ = frame_bits(can.Message(arbitration_id=ident, data=data, is_extended_id=True))
    unstuffed = 67 + 8 * len(data)
    assert unstuffed <= bits <= unstuffed + (54 + 8 * len(data) - 1) // 4


def test_fd_frame_with_bitrate_switch_splits_phases() -> None:
    msg = can.Message(arbitration_id=0x7E0, data=bytes(64), is_fd=True, bitrate_switch=True, is_extended_id=False)
    nominal, fast = frame_bits(msg)
    assert 29 <= nominal <= 34  # SOF..BRS, delimiters, ACK, EOF, IFS
    assert fast > 512 + 5 + 32
    assert frame_time(msg, 500_000, 2_000_000) == pytest.approx(nominal / 500_000 + fast / 2_000_000)
    # without BRS everything runs at the nominal rate
    slow = can.Message(arbitration_id=0x7E0, data=bytes(64), is_fd=True, bitrate_switch=False, is_extended_id=False)
    assert frame_bits(slow)[1] == 0 and frame_bits(slow)[0] == nominal + fast


class _Capture(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.written.append(bytes(data))

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False


def test_arbitration_lowest_identifier_wins_when_frames_wait() -> None:
    """Two nodes with frames waiting: the wire carries the lower identifier first, each node's own order kept."""
    loop = asyncio.new_event_loop()
    clock = [1000.0]
    loop.time = lambda: clock[0]  # type: ignore[method-assign]
    try:
        channel = _Channel("t", bitrate=500_000)
        a, b, listener = _Node(channel), _Node(channel), _Node(channel)
        for node in (a, b, listener):
            node.transport = _Capture()
            channel.nodes.append(node)

        async def run() -> None:
            channel.submit(a, [wire.encode(std(0x700, bytes([i]))) for i in range(3)])
            channel.submit(b, [wire.encode(std(0x100, bytes([i]))) for i in range(3)])
            clock[0] += 1.0  # a whole second later every frame has had time on the wire
            channel._pump()

        loop.run_until_complete(run())
        assert isinstance(listener.transport, _Capture)
        order = [wire.decode(r) for r in listener.transport.written]
        # a's first frame already held the wire when b's arrived; then 0x100 wins every arbitration
        assert [(m.arbitration_id, m.data[0]) for m in order] == [
            (0x700, 0), (0x100, 0), (0x100, 1), (0x100, 2), (0x700, 1), (0x700, 2)]
        expected = sum(frame_time(m, 500_000) for m in order)
        assert channel.busy_seconds == pytest.approx(expected)
    finally:
        loop.close()


def test_emulated_wire_delivers_everything_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTA_BENCH_HUB_DIR", str(tmp_path / "hub"))
    frames = [std(0x123, i.to_bytes(2, "big") * 4) for i in range(400)]
    with HubThread(["t"], timing={"t": (1_000_000, None)}) as hub:
        a = can.Bus(interface="benchhub", channel="t")
        b = can.Bus(interface="benchhub", channel="t")
        try:
            for msg in frames:
                a.send(msg)
            got = [b.recv(timeout=10) for _ in frames]
            assert [bytes(m.data) for m in got if m] == [bytes(m.data) for m in frames]
            carried, seconds = hub.stats("t")
            assert carried == len(frames)
            assert seconds == pytest.approx(sum(frame_time(m, 1_000_000) for m in frames))
        finally:
            a.shutdown()
            b.shutdown()
