"""The SOME/IP message: 16-byte header and payload, encoded and decoded strictly (AUTOSAR PRS_SOMEIP).

Header layout, all big-endian::

    Message ID  = Service ID (16) | Method/Event ID (16)      top bit of the method id set for events
    Length (32)                 bytes from Request ID to the end of the payload (8 + len(payload))
    Request ID  = Client ID (16) | Session ID (16)
    Protocol Version (8) = 1 | Interface Version (8) | Message Type (8) | Return Code (8)
    Payload

Pure codec: no I/O. Every decoding fault raises :class:`agent.errors.SomeIpError`
(``return_code`` E_MALFORMED_MESSAGE or E_WRONG_PROTOCOL_VERSION), never another exception.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from agent.errors import SomeIpError

HEADER_SIZE = 16
#: the Length field counts these header bytes (Request ID .. Return Code) plus the payload
LENGTH_OFFSET = 8
PROTOCOL_VERSION = 1
#: PRS: without SOME/IP-TP a UDP message carries at most 1400 bytes of payload
UDP_MAX_PAYLOAD = 1400
UDP_MAX_MESSAGE = HEADER_SIZE + UDP_MAX_PAYLOAD
#: bit 0x20 of the message type marks a SOME/IP-TP segment (not produced by this stack)
TP_FLAG = 0x20
#: top bit of the method id: an event / notification id
EVENT_ID_FLAG = 0x8000

_HEADER = struct.Struct(">HHIHHBBBB")


class MessageType(enum.IntEnum):
    REQUEST = 0x00
    REQUEST_NO_RETURN = 0x01
    NOTIFICATION = 0x02
    RESPONSE = 0x80
    ERROR = 0x81
    TP_REQUEST = 0x20
    TP_REQUEST_NO_RETURN = 0x21
    TP_NOTIFICATION = 0x22
    TP_RESPONSE = 0xA0
    TP_ERROR = 0xA1


class ReturnCode(enum.IntEnum):
    E_OK = 0x00
    E_NOT_OK = 0x01
    E_UNKNOWN_SERVICE = 0x02
    E_UNKNOWN_METHOD = 0x03
    E_NOT_READY = 0x04
    E_NOT_REACHABLE = 0x05
    E_TIMEOUT = 0x06
    E_WRONG_PROTOCOL_VERSION = 0x07
    E_WRONG_INTERFACE_VERSION = 0x08
    E_MALFORMED_MESSAGE = 0x09
    E_WRONG_MESSAGE_TYPE = 0x0A
    E_E2E_REPEATED = 0x0B
    E_E2E_WRONG_SEQUENCE = 0x0C
    E_E2E = 0x0D
    E_E2E_NOT_AVAILABLE = 0x0E
    E_E2E_NO_NEW_DATA = 0x0F


def return_code_name(code: int) -> str:
    """``E_NOT_OK`` for 1; service-specific codes (0x20..0x5E) and reserved ones as hex."""
    try:
        return ReturnCode(code).name
    except ValueError:
        return f"0x{code:02x}"


@dataclass(frozen=True)
class Message:
    """One SOME/IP message. ``session_id`` 0 means "session handling off" (SD uses 1..0xFFFF)."""

    service_id: int
    method_id: int
    client_id: int
    session_id: int
    interface_version: int
    message_type: MessageType
    return_code: int = ReturnCode.E_OK
    payload: bytes = b""
    protocol_version: int = PROTOCOL_VERSION

    @property
    def message_id(self) -> int:
        return (self.service_id << 16) | self.method_id

    @property
    def request_id(self) -> int:
        return (self.client_id << 16) | self.session_id

    @property
    def is_event(self) -> bool:
        return bool(self.method_id & EVENT_ID_FLAG)

    def encode(self) -> bytes:
        for name, value, bits in (("service_id", self.service_id, 16), ("method_id", self.method_id, 16),
                                  ("client_id", self.client_id, 16), ("session_id", self.session_id, 16),
                                  ("interface_version", self.interface_version, 8),
                                  ("return_code", self.return_code, 8),
                                  ("protocol_version", self.protocol_version, 8)):
            if not 0 <= value < (1 << bits):
                raise SomeIpError(f"SOME/IP {name} {value} does not fit {bits} bits")
        if len(self.payload) > 0xFFFFFFFF - LENGTH_OFFSET:
            raise SomeIpError(f"SOME/IP payload of {len(self.payload)} bytes exceeds the 32-bit length field")
        return _HEADER.pack(self.service_id, self.method_id, LENGTH_OFFSET + len(self.payload), self.client_id,
                            self.session_id, self.protocol_version, self.interface_version,
                            int(self.message_type), self.return_code) + self.payload

    def reply(self, payload: bytes = b"", *, return_code: int = ReturnCode.E_OK) -> Message:
        """The RESPONSE (E_OK) or ERROR (any other code) to this request, same request id (PRS)."""
        kind = MessageType.RESPONSE if return_code == ReturnCode.E_OK else MessageType.ERROR
        return Message(self.service_id, self.method_id, self.client_id, self.session_id, self.interface_version,
                       kind, return_code, payload)

    def __str__(self) -> str:
        return (f"SOME/IP {self.message_type.name} 0x{self.service_id:04x}.0x{self.method_id:04x} "
                f"client 0x{self.client_id:04x} session 0x{self.session_id:04x} "
                f"{return_code_name(self.return_code)} {len(self.payload)} B")


def message_length(header: bytes) -> int:
    """Total size (header + payload) announced by the first 8 bytes of a message."""
    if len(header) < LENGTH_OFFSET:
        raise SomeIpError(f"SOME/IP header truncated: {len(header)} of {LENGTH_OFFSET} bytes for the length")
    length = int.from_bytes(header[4:8], "big")
    if length < LENGTH_OFFSET:
        raise SomeIpError(f"SOME/IP length field {length} is below the minimum {LENGTH_OFFSET}")
    return LENGTH_OFFSET + length


def decode_message(data: bytes, *, max_size: int | None = None) -> Message:
    """Exactly one message: ``data`` must hold the header and precisely the announced payload."""
    total = message_length(data)
    if max_size is not None and total > max_size:
        raise SomeIpError(f"SOME/IP message of {total} bytes exceeds the limit of {max_size} bytes")
    if len(data) < HEADER_SIZE:
        raise SomeIpError(f"SOME/IP header truncated: {len(data)} of {HEADER_SIZE} bytes")
    if len(data) != total:
        raise SomeIpError(f"SOME/IP length field says {total} bytes in all, got {len(data)}")
    return _decode_fixed(data)


def split_datagram(data: bytes, *, max_size: int | None = None) -> list[Message]:
    """All messages of one UDP datagram (PRS allows several back to back); any fault fails the whole."""
    messages: list[Message] = []
    offset = 0
    if not data:
        raise SomeIpError("empty SOME/IP datagram")
    while offset < len(data):
        messages.append(decode_message(data[offset:offset + message_length(data[offset:])], max_size=max_size))
        offset += message_length(data[offset:])
    return messages


def _decode_fixed(data: bytes) -> Message:
    service, method, _length, client, session, proto, iface, mtype, rcode = _HEADER.unpack_from(data)
    if proto != PROTOCOL_VERSION:
        raise SomeIpError(f"SOME/IP protocol version {proto}, expected {PROTOCOL_VERSION}",
                          return_code=ReturnCode.E_WRONG_PROTOCOL_VERSION)
    try:
        kind = MessageType(mtype)
    except ValueError:
        raise SomeIpError(f"unknown SOME/IP message type 0x{mtype:02x}",
                          return_code=ReturnCode.E_WRONG_MESSAGE_TYPE) from None
    if kind & TP_FLAG:
        raise SomeIpError(f"SOME/IP-TP segment ({kind.name}) not supported: use TCP for large messages",
                          return_code=ReturnCode.E_WRONG_MESSAGE_TYPE)
    return Message(service, method, client, session, iface, kind, rcode, bytes(data[HEADER_SIZE:]), proto)
