"""SOME/IP-SD messages: entries and options, encoded and decoded strictly (AUTOSAR PRS_SOMEIPSD).

An SD message is a SOME/IP NOTIFICATION to service 0xFFFF, method 0x8100, client id 0, whose
payload is::

    Flags (8: 0x80 reboot, 0x40 unicast) | Reserved (24)
    Length of entries array (32) | entries, 16 bytes each
    Length of options array (32) | options: Length (16) | Type (8) | Reserved (8) | content

Entries refer to options through two "runs" (index of the first option, count: 4 bits each).
Here entries carry their options as values; :func:`encode_sd` builds the shared option array
(identical options stored once) and the run indexes, :func:`decode_sd` resolves the runs back.
Stop Offer, Stop Subscribe and Subscribe Nack are the Offer / Subscribe / Ack entries with TTL 0.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from agent.errors import SomeIpError
from agent.someip.message import Message, MessageType, ReturnCode

SD_SERVICE_ID = 0xFFFF
SD_METHOD_ID = 0x8100
SD_PORT = 30490
SD_MULTICAST_GROUP = "224.224.224.245"
SD_INTERFACE_VERSION = 1

FLAG_REBOOT = 0x80
FLAG_UNICAST = 0x40
TTL_INFINITE = 0xFFFFFF
ANY_INSTANCE = 0xFFFF
ANY_MAJOR = 0xFF
ANY_MINOR = 0xFFFFFFFF
ENTRY_SIZE = 16
MAX_RUN = 15
_ENTRY_HEAD = struct.Struct(">BBBBHHBBBB")  # type, idx1, idx2, counts, service, instance, major, ttl (3 bytes)


class EntryType(enum.IntEnum):
    FIND_SERVICE = 0x00
    OFFER_SERVICE = 0x01
    SUBSCRIBE_EVENTGROUP = 0x06
    SUBSCRIBE_EVENTGROUP_ACK = 0x07


class OptionType(enum.IntEnum):
    CONFIGURATION = 0x01
    LOAD_BALANCING = 0x02
    IP4_ENDPOINT = 0x04
    IP6_ENDPOINT = 0x06
    IP4_MULTICAST = 0x14
    IP6_MULTICAST = 0x16
    IP4_SD_ENDPOINT = 0x24
    IP6_SD_ENDPOINT = 0x26


class L4Protocol(enum.IntEnum):
    TCP = 0x06
    UDP = 0x11


@dataclass(frozen=True)
class IPv4EndpointOption:
    """IPv4 endpoint (0x04), multicast (0x14) or SD endpoint (0x24) option."""

    address: str
    protocol: L4Protocol
    port: int
    kind: OptionType = OptionType.IP4_ENDPOINT

    def encode(self) -> bytes:
        try:
            packed = ipaddress.IPv4Address(self.address).packed
        except ValueError as e:
            raise SomeIpError(f"IPv4 endpoint option: {e}") from None
        if not 0 <= self.port <= 0xFFFF:
            raise SomeIpError(f"IPv4 endpoint option: port {self.port} out of range")
        return struct.pack(">HBB4sBBH", 9, int(self.kind), 0, packed, 0, int(self.protocol), self.port)


@dataclass(frozen=True)
class OtherOption:
    """An option this stack does not interpret (kept as bytes; ``discardable`` is the reserved byte's top bit)."""

    type: int
    data: bytes
    discardable: bool = False

    def encode(self) -> bytes:
        return struct.pack(">HBB", len(self.data) + 1, self.type, 0x80 if self.discardable else 0) + self.data


Option = IPv4EndpointOption | OtherOption


@dataclass(frozen=True)
class ServiceEntry:
    """FindService / OfferService (TTL 0: StopOfferService)."""

    type: EntryType
    service_id: int
    instance_id: int
    major_version: int
    ttl: int
    minor_version: int
    options_1: tuple[Option, ...] = ()
    options_2: tuple[Option, ...] = ()

    @property
    def is_stop(self) -> bool:
        return self.type == EntryType.OFFER_SERVICE and self.ttl == 0


@dataclass(frozen=True)
class EventgroupEntry:
    """SubscribeEventgroup (TTL 0: Stop) / SubscribeEventgroupAck (TTL 0: Nack)."""

    type: EntryType
    service_id: int
    instance_id: int
    major_version: int
    ttl: int
    eventgroup_id: int
    counter: int = 0
    options_1: tuple[Option, ...] = ()
    options_2: tuple[Option, ...] = ()

    @property
    def is_stop(self) -> bool:
        return self.ttl == 0


Entry = ServiceEntry | EventgroupEntry


@dataclass(frozen=True)
class SdMessage:
    entries: tuple[Entry, ...]
    reboot: bool = False
    unicast: bool = True
    #: the session id of the SOME/IP header (set by decode_sd; encode_sd takes it as an argument)
    session_id: int = field(default=0, compare=False)


def endpoints(entry: Entry) -> list[IPv4EndpointOption]:
    """The IPv4 endpoint options of both runs of an entry."""
    return [option for option in (*entry.options_1, *entry.options_2) if isinstance(option, IPv4EndpointOption)]


def _check_range(what: str, value: int, bits: int) -> None:
    if not 0 <= value < (1 << bits):
        raise SomeIpError(f"SD entry {what} {value} does not fit {bits} bits")


def _place_run(options: tuple[Option, ...], table: list[Option], encoded: list[bytes]) -> tuple[int, int]:
    """Index and count of a run; reuses an identical contiguous run already in the option array."""
    if not options:
        return 0, 0
    if len(options) > MAX_RUN:
        raise SomeIpError(f"SD entry has {len(options)} options in one run, at most {MAX_RUN}")
    n = len(options)
    for start in range(len(table) - n + 1):
        if tuple(table[start:start + n]) == options:
            return start, n
    start = len(table)
    for option in options:
        table.append(option)
        encoded.append(option.encode())
    if start > 0xFF:
        raise SomeIpError("SD option array exceeds 256 options")
    return start, n


def encode_sd(message: SdMessage, *, session_id: int) -> Message:
    """The SOME/IP message carrying ``message`` (session id 1..0xFFFF, from the sender's counter)."""
    table: list[Option] = []
    encoded_options: list[bytes] = []
    entries = bytearray()
    for entry in message.entries:
        for what, value, bits in (("service id", entry.service_id, 16), ("instance id", entry.instance_id, 16),
                                  ("major version", entry.major_version, 8), ("TTL", entry.ttl, 24)):
            _check_range(what, value, bits)
        idx1, n1 = _place_run(entry.options_1, table, encoded_options)
        idx2, n2 = _place_run(entry.options_2, table, encoded_options)
        head = _ENTRY_HEAD.pack(int(entry.type), idx1, idx2, (n1 << 4) | n2, entry.service_id, entry.instance_id,
                                entry.major_version, entry.ttl >> 16, (entry.ttl >> 8) & 0xFF, entry.ttl & 0xFF)
        if isinstance(entry, ServiceEntry):
            if entry.type not in (EntryType.FIND_SERVICE, EntryType.OFFER_SERVICE):
                raise SomeIpError(f"{entry.type.name} is not a service entry type")
            _check_range("minor version", entry.minor_version, 32)
            entries += head + struct.pack(">I", entry.minor_version)
        else:
            if entry.type not in (EntryType.SUBSCRIBE_EVENTGROUP, EntryType.SUBSCRIBE_EVENTGROUP_ACK):
                raise SomeIpError(f"{entry.type.name} is not an eventgroup entry type")
            _check_range("counter", entry.counter, 4)
            _check_range("eventgroup id", entry.eventgroup_id, 16)
            entries += head + struct.pack(">BBH", 0, entry.counter, entry.eventgroup_id)
    options = b"".join(encoded_options)
    flags = (FLAG_REBOOT if message.reboot else 0) | (FLAG_UNICAST if message.unicast else 0)
    payload = struct.pack(">B3xI", flags, len(entries)) + entries + struct.pack(">I", len(options)) + options
    if not 1 <= session_id <= 0xFFFF:
        raise SomeIpError(f"SD session id {session_id} out of 1..0xFFFF")
    return Message(SD_SERVICE_ID, SD_METHOD_ID, 0, session_id, SD_INTERFACE_VERSION, MessageType.NOTIFICATION,
                   ReturnCode.E_OK, payload)


def is_sd(message: Message) -> bool:
    return message.service_id == SD_SERVICE_ID and message.method_id == SD_METHOD_ID


def decode_sd(message: Message) -> SdMessage:
    """The SD content of a SOME/IP message; malformed content raises :class:`SomeIpError`."""
    if not is_sd(message):
        raise SomeIpError(f"not an SD message: 0x{message.service_id:04x}.0x{message.method_id:04x}")
    if message.message_type != MessageType.NOTIFICATION or message.return_code != ReturnCode.E_OK:
        raise SomeIpError(f"SD message must be a NOTIFICATION with E_OK, got {message.message_type.name} "
                          f"return code 0x{message.return_code:02x}")
    if message.client_id != 0 or message.interface_version != SD_INTERFACE_VERSION:
        raise SomeIpError(f"SD message with client id 0x{message.client_id:04x} / interface version "
                          f"{message.interface_version}, expected 0 / {SD_INTERFACE_VERSION}")
    if message.session_id == 0:
        raise SomeIpError("SD message with session id 0")
    data = message.payload
    if len(data) < 12:
        raise SomeIpError(f"SD payload truncated: {len(data)} bytes, at least 12 needed")
    flags, entries_length = struct.unpack_from(">B3xI", data)
    if entries_length % ENTRY_SIZE:
        raise SomeIpError(f"SD entries array length {entries_length} is not a multiple of {ENTRY_SIZE}")
    options_at = 8 + entries_length
    if options_at + 4 > len(data):
        raise SomeIpError(f"SD entries array of {entries_length} bytes overruns the {len(data)}-byte payload")
    (options_length,) = struct.unpack_from(">I", data, options_at)
    if options_at + 4 + options_length != len(data):
        raise SomeIpError(f"SD options array length {options_length} does not match the payload "
                          f"({len(data) - options_at - 4} bytes left)")
    options = _decode_options(data[options_at + 4:])
    entries = tuple(_decode_entry(data[offset:offset + ENTRY_SIZE], options)
                    for offset in range(8, options_at, ENTRY_SIZE))
    return SdMessage(entries, reboot=bool(flags & FLAG_REBOOT), unicast=bool(flags & FLAG_UNICAST),
                     session_id=message.session_id)


def _decode_options(data: bytes) -> list[Option]:
    options: list[Option] = []
    offset = 0
    while offset < len(data):
        if offset + 4 > len(data):
            raise SomeIpError(f"SD option header truncated at offset {offset}")
        length, kind, reserved = struct.unpack_from(">HBB", data, offset)
        if length < 1 or offset + 3 + length > len(data):
            raise SomeIpError(f"SD option at offset {offset}: length {length} overruns the options array")
        content = data[offset + 4:offset + 3 + length]
        if kind in (OptionType.IP4_ENDPOINT, OptionType.IP4_MULTICAST, OptionType.IP4_SD_ENDPOINT):
            if length != 9:
                raise SomeIpError(f"SD IPv4 option at offset {offset}: length {length}, expected 9")
            address, _res, proto, port = struct.unpack(">4sBBH", content)
            try:
                protocol = L4Protocol(proto)
            except ValueError:
                raise SomeIpError(f"SD IPv4 option at offset {offset}: unknown L4 protocol 0x{proto:02x}") from None
            options.append(IPv4EndpointOption(str(ipaddress.IPv4Address(address)), protocol, port,
                                              OptionType(kind)))
        else:
            options.append(OtherOption(kind, bytes(content), bool(reserved & 0x80)))
        offset += 3 + length
    return options


def _run(options: Sequence[Option], index: int, count: int, which: str) -> tuple[Option, ...]:
    if count == 0:
        return ()
    if index + count > len(options):
        raise SomeIpError(f"SD entry's {which} option run {index}+{count} is outside the {len(options)} options")
    return tuple(options[index:index + count])


def _decode_entry(raw: bytes, options: Sequence[Option]) -> Entry:
    kind, idx1, idx2, counts, service, instance, major, t0, t1, t2 = _ENTRY_HEAD.unpack_from(raw)
    ttl = (t0 << 16) | (t1 << 8) | t2
    run1 = _run(options, idx1, counts >> 4, "first")
    run2 = _run(options, idx2, counts & 0x0F, "second")
    if kind in (EntryType.FIND_SERVICE, EntryType.OFFER_SERVICE):
        (minor,) = struct.unpack_from(">I", raw, 12)
        return ServiceEntry(EntryType(kind), service, instance, major, ttl, minor, run1, run2)
    if kind in (EntryType.SUBSCRIBE_EVENTGROUP, EntryType.SUBSCRIBE_EVENTGROUP_ACK):
        _reserved, counter, eventgroup = struct.unpack_from(">BBH", raw, 12)
        return EventgroupEntry(EntryType(kind), service, instance, major, ttl, eventgroup, counter & 0x0F, run1, run2)
    raise SomeIpError(f"unknown SD entry type 0x{kind:02x}")
