"""How long a CAN or CAN FD frame occupies the wire.

Written by hand because no maintained library computes it: python-can and
cantools know frames, not bit timing. Classic frames are counted exactly:
the real CRC-15 is computed so the dynamic bit stuffing from SOF to the end
of the CRC sequence is the stuffing the frame really gets. CAN FD frames
(ISO 11898-1:2015) use dynamic stuffing from SOF to the end of the data field,
the stuff-count field and fixed stuff bits in the CRC field; the bits after
the BRS bit up to the CRC delimiter run at the data bitrate when BRS is set.
Every frame is followed by 3 bits of intermission.
"""

from __future__ import annotations

from collections.abc import Iterable

import can

INTERMISSION = 3
_FD_DLC_LENGTHS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48, 64)


def _bits(value: int, width: int) -> list[int]:
    return [(value >> (width - 1 - i)) & 1 for i in range(width)]


def crc15(bits: Iterable[int]) -> int:
    crc = 0
    for bit in bits:
        nxt = bit ^ ((crc >> 14) & 1)
        crc = (crc << 1) & 0x7FFF
        if nxt:
            crc ^= 0x4599
    return crc


def stuff_count(bits: list[int]) -> int:
    """Stuff bits the transmitter inserts: one after every run of five equal bits."""
    count = 0
    run_bit = -1
    run = 0
    for bit in bits:
        if bit == run_bit:
            run += 1
        else:
            run_bit, run = bit, 1
        if run == 5:
            count += 1
            run_bit, run = 1 - bit, 1  # the stuff bit starts the next run
    return count


def _arbitration_bits(msg: can.Message, *, fd: bool) -> list[int]:
    rtr = 1 if msg.is_remote_frame and not fd else 0
    if msg.is_extended_id:
        ident = msg.arbitration_id & 0x1FFFFFFF
        head = [0, *_bits(ident >> 18, 11), 1, 1, *_bits(ident & 0x3FFFF, 18), rtr]
    else:
        head = [0, *_bits(msg.arbitration_id & 0x7FF, 11), rtr, 0]
    return head


def _fd_dlc(length: int) -> int:
    for dlc, size in enumerate(_FD_DLC_LENGTHS):
        if size >= length:
            return dlc
    raise ValueError(f"CAN FD frame too long: {length} bytes")


def frame_bits(msg: can.Message) -> tuple[int, int]:
    """(bits at the nominal bitrate, bits at the data bitrate) of ``msg`` on the wire."""
    data = bytes(msg.data)
    tail = 1 + 2 + 7 + INTERMISSION  # CRC delimiter, ACK slot + delimiter, EOF, intermission
    if not msg.is_fd:
        dlc = msg.dlc if msg.is_remote_frame else len(data)
        reserved = [0] if not msg.is_extended_id else [0, 0]  # r0 (standard) / r1 r0 (extended)
        body = [*_arbitration_bits(msg, fd=False), *reserved[: 1 if not msg.is_extended_id else 2]]
        body += _bits(dlc, 4)
        if not msg.is_remote_frame:
            for byte in data:
                body += _bits(byte, 8)
        body += _bits(crc15(body), 15)
        return len(body) + stuff_count(body) + tail, 0
    # CAN FD: arbitration phase up to and including BRS at the nominal rate
    arb = [*_arbitration_bits(msg, fd=True), 1, 0, 1 if msg.bitrate_switch else 0]  # FDF, res, BRS
    length = _FD_DLC_LENGTHS[_fd_dlc(len(data))]
    payload = data + bytes(length - len(data))
    data_phase = [1 if msg.error_state_indicator else 0, *_bits(_fd_dlc(len(data)), 4)]
    for byte in payload:
        data_phase += _bits(byte, 8)
    dynamic = stuff_count(arb + data_phase)
    arb_stuff = stuff_count(arb)
    crc_len = 17 if length <= 16 else 21
    fixed = 4 + crc_len  # stuff count (3 bits + parity) and CRC
    fixed += -(-fixed // 4)  # a fixed stuff bit before the field and after every 4 bits
    nominal = len(arb) + arb_stuff + tail
    fast = len(data_phase) + (dynamic - arb_stuff) + fixed
    if not msg.bitrate_switch:
        return nominal + fast, 0
    return nominal, fast


def frame_time(msg: can.Message, bitrate: int, data_bitrate: int | None = None) -> float:
    """Seconds ``msg`` occupies a bus at ``bitrate`` (and ``data_bitrate`` for CAN FD with BRS)."""
    nominal, fast = frame_bits(msg)
    return nominal / bitrate + (fast / (data_bitrate or bitrate) if fast else 0.0)
