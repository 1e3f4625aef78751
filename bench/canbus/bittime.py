"""How long a CAN or CAN FD frame occupies the wire.

Written by hand because no maintained library computes it: python-can and
cantools know frames, not bit timing. Classic frames are counted exactly:
the real CRC-15 is computed so the dynamic bit stuffing from SOF to the end
of the CRC sequence is the stuffing the frame really gets. CAN FD frames
(ISO 11898-1:2015) use dynamic stuffing from SOF to the end of the data field,
the stuff-count field and fixed stuff bits in the CRC field; the bits after
the BRS bit up to and including the CRC delimiter run at the data bitrate
when BRS is set (the switch back happens at the delimiter's sample point).
Every frame is followed by 3 bits of intermission.
"""

from __future__ import annotations

import re

import can

INTERMISSION = 3
_FD_DLC_LENGTHS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48, 64)


def _crc15_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 7
        for _ in range(8):
            crc = ((crc << 1) ^ 0x4599) if crc & 0x4000 else crc << 1
        table.append(crc & 0x7FFF)
    return table


_CRC15 = _crc15_table()
# runs shorter than four bits can neither be stuffed nor pass a stuff bit on
_LONG_RUNS = re.compile(r"0{4,}|1{4,}")


def crc15(value: int, width: int) -> int:
    """CAN CRC-15 (polynomial 0x4599) over the ``width`` bits of ``value``, MSB first."""
    crc = 0
    head = width % 8
    for i in range(head - 1, -1, -1):  # the unaligned leading bits one by one
        bit = (value >> (width - head + i)) & 1
        crc = ((crc << 1) ^ 0x4599 if bit ^ (crc >> 14) else crc << 1) & 0x7FFF
    for shift in range(width - head - 8, -1, -8):
        crc = ((crc << 8) & 0x7FFF) ^ _CRC15[((crc >> 7) ^ (value >> shift)) & 0xFF]
    return crc


def stuff_count(value: int, width: int) -> int:
    """Stuff bits a transmitter inserts in the ``width`` bits of ``value``.

    After five equal bits a complementary bit is inserted, and it counts as the
    first bit of the next run. Worked run by run: a run of ``n`` equal bits
    preceded by a stuff bit of the same value gets ``(n + 1) // 5`` stuff bits.
    """
    count = 0
    carried_to = -1  # where the stuff bit that ended the previous run starts a run of its value
    for run in _LONG_RUNS.finditer(format(value, f"0{width}b")):
        start, end = run.span()
        total = end - start + (1 if start == carried_to else 0)
        count += total // 5
        carried_to = end if total % 5 == 0 else -1
    return count


def _arbitration(msg: can.Message, *, fd: bool) -> tuple[int, int]:
    """SOF and the arbitration field as (bits, width)."""
    rtr = 1 if msg.is_remote_frame and not fd else 0
    if msg.is_extended_id:
        ident = msg.arbitration_id & 0x1FFFFFFF
        # SOF, base id, SRR=1, IDE=1, id extension, RTR/RRS
        return ((ident >> 18) << 22) | (0b11 << 20) | ((ident & 0x3FFFF) << 1) | rtr, 1 + 11 + 2 + 18 + 1
    # SOF, id, RTR/RRS, IDE=0
    return ((msg.arbitration_id & 0x7FF) << 2) | (rtr << 1), 1 + 11 + 2


def _fd_dlc(length: int) -> int:
    for dlc, size in enumerate(_FD_DLC_LENGTHS):
        if size >= length:
            return dlc
    raise ValueError(f"CAN FD frame too long: {length} bytes")


def frame_bits(msg: can.Message) -> tuple[int, int]:
    """(bits at the nominal bitrate, bits at the data bitrate) of ``msg`` on the wire."""
    data = bytes(msg.data)
    tail = 1 + 2 + 7 + INTERMISSION  # CRC delimiter, ACK slot + delimiter, EOF, intermission
    value, width = _arbitration(msg, fd=msg.is_fd)
    if not msg.is_fd:
        reserved = 2 if msg.is_extended_id else 1  # r1 r0 / r0
        value, width = value << reserved, width + reserved
        dlc = msg.dlc if msg.is_remote_frame else len(data)
        value, width = (value << 4) | dlc, width + 4
        if data and not msg.is_remote_frame:
            value, width = (value << (8 * len(data))) | int.from_bytes(data, "big"), width + 8 * len(data)
        value, width = (value << 15) | crc15(value, width), width + 15
        return width + stuff_count(value, width) + tail, 0
    # CAN FD: the arbitration phase up to and including BRS runs at the nominal rate
    value, width = (value << 3) | (0b100 | (1 if msg.bitrate_switch else 0)), width + 3  # FDF=1, res=0, BRS
    arb_stuff = stuff_count(value, width)
    nominal = width + arb_stuff + tail - 1  # the CRC delimiter is counted in the data phase
    dlc = _fd_dlc(len(data))
    length = _FD_DLC_LENGTHS[dlc]
    phase = ((1 if msg.error_state_indicator else 0) << 4) | dlc
    phase_width = 5 + 8 * length
    phase = (phase << (8 * length)) | int.from_bytes(data + bytes(length - len(data)), "big")
    dynamic = stuff_count((value << phase_width) | phase, width + phase_width)
    crc_len = 17 if length <= 16 else 21
    fixed = 4 + crc_len  # stuff count (3 bits + parity) and CRC
    fixed += -(-fixed // 4)  # a fixed stuff bit before the field and after every 4 bits
    fast = phase_width + (dynamic - arb_stuff) + fixed + 1  # + CRC delimiter
    if not msg.bitrate_switch:
        return nominal + fast, 0
    return nominal, fast


def frame_time(msg: can.Message, bitrate: int, data_bitrate: int | None = None) -> float:
    """Seconds ``msg`` occupies a bus at ``bitrate`` (and ``data_bitrate`` for CAN FD with BRS)."""
    nominal, fast = frame_bits(msg)
    return nominal / bitrate + (fast / (data_bitrate or bitrate) if fast else 0.0)
