"""Frame records exchanged with the bench hub.

A record is a fixed header ``<flags:u8><arbitration id:u32><timestamp:f64>
<data length:u8>`` followed by the data bytes (0..64). Unix stream sockets
carry records back to back; a reader keeps the tail of an incomplete record
for the next read.
"""

from __future__ import annotations

import struct

import can

#: sent by the hub to a node once it has joined the channel; the node's
#: constructor waits for it, so a bus is on the channel when ``can.Bus()`` returns
WELCOME = b"OTAHUB1\n"
HEADER = struct.Struct("<BIdB")
MAX_DATA = 64

F_EXTENDED = 0x01
F_FD = 0x02
F_BRS = 0x04
F_ESI = 0x08
F_ERROR = 0x10
F_REMOTE = 0x20


def encode(msg: can.Message) -> bytes:
    flags = (
        (F_EXTENDED if msg.is_extended_id else 0)
        | (F_FD if msg.is_fd else 0)
        | (F_BRS if msg.bitrate_switch else 0)
        | (F_ESI if msg.error_state_indicator else 0)
        | (F_ERROR if msg.is_error_frame else 0)
        | (F_REMOTE if msg.is_remote_frame else 0)
    )
    data = bytes(msg.data)
    if len(data) > MAX_DATA:
        raise ValueError(f"CAN frame data too long: {len(data)} bytes")
    return HEADER.pack(flags, msg.arbitration_id, msg.timestamp or 0.0, len(data)) + data


def split(buffer: bytearray) -> list[bytes]:
    """Remove and return the complete records at the start of ``buffer``."""
    records = []
    pos = 0
    size = len(buffer)
    while size - pos >= HEADER.size:
        length = buffer[pos + HEADER.size - 1]
        if length > MAX_DATA:
            raise ValueError(f"corrupt record on the bench bus (data length {length})")
        end = pos + HEADER.size + length
        if end > size:
            break
        records.append(bytes(buffer[pos:end]))
        pos = end
    del buffer[:pos]
    return records


def decode(record: bytes, *, channel: str | None = None, timestamp: float | None = None) -> can.Message:
    flags, arbitration_id, ts, length = HEADER.unpack_from(record)
    return can.Message(
        timestamp=ts if timestamp is None else timestamp,
        arbitration_id=arbitration_id,
        is_extended_id=bool(flags & F_EXTENDED),
        is_fd=bool(flags & F_FD),
        bitrate_switch=bool(flags & F_BRS),
        error_state_indicator=bool(flags & F_ESI),
        is_error_frame=bool(flags & F_ERROR),
        is_remote_frame=bool(flags & F_REMOTE),
        dlc=length,
        data=record[HEADER.size:HEADER.size + length],
        channel=channel,
        is_rx=True,
        check=False,
    )
