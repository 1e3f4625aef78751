"""Frame records exchanged with the bench hub.

A record is a fixed header ``<flags:u8><arbitration id:u32><timestamp:f64>
<data length:u8>`` followed by the data bytes (0..64). Unix stream sockets
carry records back to back; a reader keeps the tail of an incomplete record
for the next read.

A node may also send *filter* records (``F_FILTER`` set; never relayed): its acceptance
filters, as a CAN controller's hardware filters, so the hub does not send it frames it would
only drop. The first record of a set has arbitration id 0 (it replaces the node's filters),
any further ones 1 (they add to them); the data is up to seven 9-byte entries
``<can_id:u32><can_mask:u32><kind:u8>`` (kind 0: any frame, 1: standard ids only, 2: extended
ids only: python-can's optional ``extended``). One record with no entry: no filter, every frame.
The hub answers each filter record with an *ack* (the record's header, no data) in the node's
stream: every frame after the ack has passed the new filters, so the node checks frames itself
only until then.
A frame matches when ``(can_id ^ arbitration_id) & can_mask == 0`` for one entry (python-can's rule).
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
F_FILTER = 0x40

_FILTER = struct.Struct("<IIB")
_FILTERS_PER_RECORD = MAX_DATA // _FILTER.size
#: a hub-side filter entry: (can_id, can_mask, kind) with kind 0 any, 1 standard, 2 extended
Filter = tuple[int, int, int]


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


#: the attributes ``can.Message.__init__`` sets (python-can 4.x); :func:`decode` sets them directly
_MESSAGE_SLOTS = frozenset({"timestamp", "arbitration_id", "is_extended_id", "is_remote_frame", "is_error_frame",
                            "channel", "is_fd", "is_rx", "bitrate_switch", "error_state_indicator", "data", "dlc"})
_FAST_DECODE = set(getattr(can.Message, "__slots__", ())) - {"__weakref__"} == _MESSAGE_SLOTS


def decode(record: bytes, *, channel: str | None = None, timestamp: float | None = None) -> can.Message:
    """The received frame of a record. Every frame a node reads goes through here (an idle listener's
    CPU is mostly this): when ``can.Message`` has the slots this module knows, they are set directly,
    a third of the cost of ``can.Message(...)`` with its keyword arguments and checks."""
    flags, arbitration_id, ts, length = HEADER.unpack_from(record)
    if _FAST_DECODE:
        msg = can.Message.__new__(can.Message)
        msg.timestamp = ts if timestamp is None else timestamp
        msg.arbitration_id = arbitration_id
        msg.is_extended_id = bool(flags & F_EXTENDED)
        msg.is_remote_frame = bool(flags & F_REMOTE)
        msg.is_error_frame = bool(flags & F_ERROR)
        msg.channel = channel
        msg.is_fd = bool(flags & F_FD)
        msg.is_rx = True
        msg.bitrate_switch = bool(flags & F_BRS)
        msg.error_state_indicator = bool(flags & F_ESI)
        msg.data = bytearray(record[HEADER.size:HEADER.size + length])
        msg.dlc = length
        return msg
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


def encode_filters(filters: can.typechecking.CanFilters | None) -> bytes:
    """The filter records for python-can ``can_filters`` (None or empty: receive everything)."""
    entries = [_FILTER.pack(f["can_id"] & 0x1FFFFFFF, f["can_mask"] & 0x1FFFFFFF,
                            0 if "extended" not in f else 2 if f["extended"] else 1)
               for f in filters or ()]
    chunks = [entries[i:i + _FILTERS_PER_RECORD] for i in range(0, len(entries), _FILTERS_PER_RECORD)] or [[]]
    return b"".join(HEADER.pack(F_FILTER, 0 if i == 0 else 1, 0.0, sum(len(e) for e in chunk)) + b"".join(chunk)
                    for i, chunk in enumerate(chunks))


def is_filter(record: bytes) -> bool:
    return bool(record[0] & F_FILTER)


def filter_ack(record: bytes) -> bytes:
    """The hub's acknowledgement of a filter record."""
    _flags, more, _ts, _length = HEADER.unpack_from(record)
    return HEADER.pack(F_FILTER, more, 0.0, 0)


def apply_filter_record(record: bytes, current: list[Filter] | None) -> list[Filter] | None:
    """The node's filters after one filter record (None: every frame)."""
    _flags, more, _ts, length = HEADER.unpack_from(record)
    data = record[HEADER.size:HEADER.size + length]
    entries = [_FILTER.unpack_from(data, i) for i in range(0, len(data) - _FILTER.size + 1, _FILTER.size)]
    merged = [*(current or ()), *entries] if more else entries
    return merged or None


def matches(record: bytes, filters: list[Filter] | None) -> bool:
    """Whether a frame record passes ``filters`` (python-can's ``BusABC._matches_filters`` rule)."""
    if filters is None:
        return True
    flags, arbitration_id, _ts, _length = HEADER.unpack_from(record)
    extended = 2 if flags & F_EXTENDED else 1
    return any((can_id ^ arbitration_id) & mask == 0 and kind in (0, extended) for can_id, mask, kind in filters)
