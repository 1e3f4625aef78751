"""Fuzzing the SOME/IP codecs with what a peer on the vehicle network may send: arbitrary bytes and mutated valid
messages through the message header (:mod:`agent.someip.message`), Service Discovery
(:mod:`agent.someip.sd_message`) and the payload serialization (:mod:`agent.someip.serialization`) of every
type the HMI service declares.

The property: each decoder returns a value or raises :class:`~agent.errors.SomeIpError` with a message (what
the modules document), nothing else; and what decodes re-encodes to the same thing (a message to the very
same bytes; an SD message and a payload to the same value). tests/someip/test_someip_codec.py checks each
codec's layout and its own round trips on valid values; this is the outside-input side.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.errors import SomeIpError
from agent.someip.message import HEADER_SIZE, UDP_MAX_MESSAGE, Message, MessageType, decode_message, split_datagram
from agent.someip.sd_message import (
    SD_METHOD_ID,
    SD_SERVICE_ID,
    EntryType,
    EventgroupEntry,
    IPv4EndpointOption,
    L4Protocol,
    Option,
    OptionType,
    OtherOption,
    SdMessage,
    ServiceEntry,
    decode_sd,
    encode_sd,
)
from agent.someip.serialization import (
    Array,
    Boolean,
    Bytes,
    DataType,
    Empty,
    FixedArray,
    Float,
    Integer,
    String,
    Struct,
)
from hmi_agent.someip_service import hmi_interface

from .fuzzkit import FUZZ, TIMEOUT, clear_outcome, mutate

pytestmark = pytest.mark.timeout(TIMEOUT)

ALLOWED = (SomeIpError,)
KINDS = [MessageType.REQUEST, MessageType.REQUEST_NO_RETURN, MessageType.NOTIFICATION, MessageType.RESPONSE,
         MessageType.ERROR]


def payload_types() -> dict[str, DataType]:
    """Every payload type of the HMI service (requests, responses, events, fields), by where it is used."""
    iface = hmi_interface()
    found: dict[str, DataType] = {}
    for name, m in iface.methods.items():
        found[f"{name}.request"], found[f"{name}.response"] = m.request, m.response
    for name, e in iface.events.items():
        found[f"event {name}"] = e.type
    for name, f in iface.fields.items():
        found[f"field {name}"] = f.type
    return found


TYPES = payload_types()


# -- strategies of valid values ----------------------------------------------------------------------------------
def values(dt: DataType) -> st.SearchStrategy[Any]:
    """Valid values of a SOME/IP data type (small: the mutations do the rest)."""
    if isinstance(dt, Integer):
        low, high = (-(1 << (dt.bits - 1)), (1 << (dt.bits - 1)) - 1) if dt.signed else (0, (1 << dt.bits) - 1)
        return st.integers(low, high)
    if isinstance(dt, Boolean):
        return st.booleans()
    if isinstance(dt, Float):
        return st.floats(width=32 if dt.name == "float32" else 64, allow_nan=False)
    if isinstance(dt, String):  # before Bytes: a String is a Bytes
        return st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
    if isinstance(dt, Bytes):
        return st.binary(max_size=min(16, dt.max_length or 16))
    if isinstance(dt, Array):
        return st.lists(values(dt.element), max_size=min(3, dt.max_count or 3))
    if isinstance(dt, FixedArray):
        return st.lists(values(dt.element), min_size=dt.count, max_size=dt.count)
    if isinstance(dt, Struct):
        return st.fixed_dictionaries({name: values(member) for name, member in dt.members})
    if isinstance(dt, Empty):
        return st.none()
    raise AssertionError(f"no strategy for {dt.name}")


messages = st.builds(Message, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF),
                     st.integers(0, 0xFFFF), st.integers(0, 0xFF), st.sampled_from(KINDS), st.integers(0, 0xFF),
                     st.binary(max_size=48))

options: st.SearchStrategy[Option] = st.one_of(
    st.builds(IPv4EndpointOption, st.ip_addresses(v=4).map(str), st.sampled_from(list(L4Protocol)),
              st.integers(0, 0xFFFF),
              st.sampled_from([OptionType.IP4_ENDPOINT, OptionType.IP4_MULTICAST, OptionType.IP4_SD_ENDPOINT])),
    st.builds(OtherOption, st.sampled_from([0x01, 0x02, 0x06, 0x16, 0x30]), st.binary(max_size=12), st.booleans()))
runs = st.lists(options, max_size=3).map(tuple)
service_entries = st.builds(ServiceEntry, st.sampled_from([EntryType.FIND_SERVICE, EntryType.OFFER_SERVICE]),
                            st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 0xFF),
                            st.integers(0, 0xFFFFFF), st.integers(0, 0xFFFFFFFF), runs, runs)
eventgroup_entries = st.builds(EventgroupEntry,
                               st.sampled_from([EntryType.SUBSCRIBE_EVENTGROUP, EntryType.SUBSCRIBE_EVENTGROUP_ACK]),
                               st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 0xFF),
                               st.integers(0, 0xFFFFFF), st.integers(0, 0xFFFF), st.integers(0, 15), runs, runs)
sd_messages = st.builds(SdMessage, st.lists(service_entries | eventgroup_entries, max_size=4).map(tuple),
                        st.booleans(), st.booleans())


# -- the checks ----------------------------------------------------------------------------------------------------
def check_message_bytes(data: bytes) -> None:
    """Header decoding, one message and a datagram of several; what decodes re-encodes byte for byte."""
    one = clear_outcome(decode_message, data, allowed=ALLOWED, max_size=UDP_MAX_MESSAGE)
    if isinstance(one, Message):
        assert one.encode() == data
    many = clear_outcome(split_datagram, data, allowed=ALLOWED)
    if isinstance(many, list):
        assert b"".join(m.encode() for m in many) == data
        for m in many:
            check_sd(m)


def check_sd(message: Message) -> None:
    """SD content of a decoded message: an SdMessage that round-trips, or a SomeIpError."""
    sd = clear_outcome(decode_sd, message, allowed=ALLOWED)
    if isinstance(sd, SdMessage):
        again = decode_sd(decode_message(encode_sd(sd, session_id=message.session_id).encode()))
        assert again == sd and again.session_id == message.session_id


def check_payload(dt: DataType, data: bytes) -> None:
    """A payload decodes to a value that re-encodes and decodes to the same bytes, or a SomeIpError."""
    value = clear_outcome(dt.decode, data, allowed=ALLOWED)
    if not isinstance(value, SomeIpError):
        encoded = dt.encode(value)
        assert dt.encode(dt.decode(encoded)) == encoded  # by bytes: a decoded float may be a NaN


# -- arbitrary bytes -----------------------------------------------------------------------------------------------
@FUZZ
@given(data=st.binary(max_size=96))
def test_arbitrary_bytes_as_a_someip_datagram(data: bytes) -> None:
    check_message_bytes(data)


@FUZZ
@given(header=st.binary(min_size=HEADER_SIZE, max_size=HEADER_SIZE), payload=st.binary(max_size=96))
def test_arbitrary_payload_behind_an_sd_header(header: bytes, payload: bytes) -> None:
    """The SD header right (so the SD decoder is reached), the rest random."""
    message = Message(SD_SERVICE_ID, SD_METHOD_ID, 0, 1 + header[0], 1, MessageType.NOTIFICATION, 0, payload)
    check_message_bytes(message.encode())
    check_sd(message)


@FUZZ
@given(which=st.sampled_from(sorted(TYPES)), data=st.binary(max_size=96))
def test_arbitrary_bytes_as_each_declared_payload(which: str, data: bytes) -> None:
    check_payload(TYPES[which], data)


# -- mutated valid messages -----------------------------------------------------------------------------------------
@FUZZ
@given(data=st.data(), batch=st.lists(messages, min_size=1, max_size=3))
def test_mutated_valid_datagrams(data: st.DataObject, batch: list[Message]) -> None:
    raw = b"".join(m.encode() for m in batch)
    assert split_datagram(raw) == batch
    check_message_bytes(mutate(raw, data.draw))


@FUZZ
@given(data=st.data(), sd=sd_messages, session=st.integers(1, 0xFFFF))
def test_mutated_valid_sd_messages(data: st.DataObject, sd: SdMessage, session: int) -> None:
    raw = encode_sd(sd, session_id=session).encode()
    assert decode_sd(decode_message(raw)) == sd
    check_message_bytes(mutate(raw, data.draw))


@FUZZ
@given(data=st.data(), which=st.sampled_from(sorted(TYPES)))
def test_mutated_valid_payloads_of_each_declared_type(data: st.DataObject, which: str) -> None:
    dt = TYPES[which]
    value = data.draw(values(dt))
    raw = dt.encode(value)
    assert dt.decode(raw) == value
    check_payload(dt, mutate(raw, data.draw))
