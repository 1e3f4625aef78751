"""SOME/IP header and payload serialization: exact bytes, round trips, strict decoding."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import ProtocolError, SomeIpError
from agent.someip.message import (
    UDP_MAX_MESSAGE,
    Message,
    MessageType,
    ReturnCode,
    decode_message,
    return_code_name,
    split_datagram,
)
from agent.someip.serialization import (
    BOOL,
    FLOAT32,
    FLOAT64,
    SINT16,
    SINT64,
    UINT8,
    UINT16,
    UINT32,
    UINT64,
    VOID,
    Array,
    Bytes,
    FixedArray,
    String,
    Struct,
)


def request(payload: bytes = b"\x01\x02", **overrides: Any) -> Message:
    fields: dict[str, Any] = {"service_id": 0x1234, "method_id": 0x0421, "client_id": 0x0101, "session_id": 0x0007,
                              "interface_version": 2, "message_type": MessageType.REQUEST, "payload": payload}
    fields.update(overrides)
    return Message(**fields)


def test_header_bytes_follow_the_prs_layout() -> None:
    raw = request(b"\xaa\xbb\xcc").encode()
    assert raw == bytes.fromhex("1234 0421 0000000b 0101 0007 01 02 00 00 aabbcc")
    message = decode_message(raw)
    assert message.message_id == 0x12340421
    assert message.request_id == 0x01010007
    assert message.payload == b"\xaa\xbb\xcc" and message.interface_version == 2


def test_reply_keeps_the_request_id_and_maps_errors() -> None:
    call = request()
    ok = call.reply(b"\x05")
    assert (ok.message_type, ok.request_id, ok.return_code) == (MessageType.RESPONSE, call.request_id, 0)
    err = call.reply(return_code=ReturnCode.E_UNKNOWN_METHOD)
    assert err.message_type == MessageType.ERROR and err.encode()[15] == 0x03
    assert return_code_name(0x09) == "E_MALFORMED_MESSAGE" and return_code_name(0x25) == "0x25"


def test_event_ids_have_the_top_bit() -> None:
    assert request(method_id=0x8001, message_type=MessageType.NOTIFICATION).is_event
    assert not request().is_event


@pytest.mark.parametrize("mutate, reason", [
    (lambda raw: raw[:7], "truncated"),
    (lambda raw: raw[:15], "truncated"),
    (lambda raw: raw[:-1], "says 18 bytes in all, got 17"),
    (lambda raw: raw + b"\x00", "says 18 bytes in all, got 19"),
    (lambda raw: raw[:4] + b"\x00\x00\x00\x07" + raw[8:], "below the minimum"),
    (lambda raw: raw[:12] + b"\x02" + raw[13:], "protocol version 2"),
    (lambda raw: raw[:14] + b"\x03" + raw[15:], "message type 0x03"),
    (lambda raw: raw[:14] + b"\x20" + raw[15:], "SOME/IP-TP"),
])
def test_bad_headers_are_refused_with_a_reason(mutate: Any, reason: str) -> None:
    with pytest.raises(SomeIpError, match=reason) as caught:
        decode_message(mutate(request().encode()))
    assert isinstance(caught.value, ProtocolError)


def test_error_codes_name_the_fault() -> None:
    raw = bytearray(request().encode())
    raw[12] = 2
    with pytest.raises(SomeIpError) as caught:
        decode_message(bytes(raw))
    assert caught.value.return_code == ReturnCode.E_WRONG_PROTOCOL_VERSION


def test_datagram_with_two_messages_and_size_limit() -> None:
    first, second = request(b"a"), request(b"bc", session_id=8)
    assert split_datagram(first.encode() + second.encode()) == [first, second]
    with pytest.raises(SomeIpError, match="says"):
        split_datagram(first.encode() + second.encode()[:-1])
    big = request(b"x" * 1401).encode()
    assert len(big) == UDP_MAX_MESSAGE + 1
    with pytest.raises(SomeIpError, match="exceeds the limit"):
        split_datagram(big, max_size=UDP_MAX_MESSAGE)


def test_encode_refuses_values_that_do_not_fit() -> None:
    with pytest.raises(SomeIpError, match="service_id"):
        request(service_id=0x10000).encode()


@given(st.binary(max_size=64))
@settings(max_examples=100, deadline=None)
def test_decoding_random_bytes_never_crashes(data: bytes) -> None:
    with contextlib.suppress(SomeIpError):
        split_datagram(data)


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF),
       st.integers(0, 0xFF), st.sampled_from([MessageType.REQUEST, MessageType.REQUEST_NO_RETURN,
                                              MessageType.NOTIFICATION, MessageType.RESPONSE, MessageType.ERROR]),
       st.integers(0, 0xFF), st.binary(max_size=40))
@settings(max_examples=60, deadline=None)
def test_header_round_trip(service: int, method: int, client: int, session: int, iface: int, kind: MessageType,
                           code: int, payload: bytes) -> None:
    message = Message(service, method, client, session, iface, kind, code, payload)
    assert decode_message(message.encode()) == message


# ----------------------------------------------------------------- serialization
STATUS = Struct(("name", String()), ("ok", BOOL), ("size", UINT64), ("delta", SINT16),
                ("parts", Array(Struct(("id", UINT16), ("data", Bytes(length_field=2)), name="Part"))),
                ("crc", FixedArray(UINT8, 4)), ("ratio", FLOAT64), name="Status")


def test_string_is_utf8_with_bom_and_terminator_in_the_length() -> None:
    assert String().encode("hé") == bytes.fromhex("00000007 efbbbf 68c3a9 00")
    assert String(length_field=1).encode("") == bytes.fromhex("04 efbbbf 00")
    assert String().decode(bytes.fromhex("00000007 efbbbf 68c3a9 00")) == "hé"


@pytest.mark.parametrize("raw, reason", [
    ("00000005 68c3a90000", "byte order mark"),
    ("00000006 efbbbf 68c3a9", "terminator"),
    ("00000006 efbbbf 00 6800", "NUL before"),
    ("00000005 efbbbf ff00", "invalid UTF-8"),
    ("00000009 efbbbf 6800", "needs 9 bytes"),
    ("00000004 efbbbf 00 ff", "trailing"),
])
def test_bad_strings_are_refused(raw: str, reason: str) -> None:
    with pytest.raises(SomeIpError, match=reason):
        String().decode(bytes.fromhex(raw))


def test_integers_and_bool_are_big_endian_and_strict() -> None:
    assert UINT32.encode(0x01020304) == b"\x01\x02\x03\x04"
    assert SINT16.encode(-2) == b"\xff\xfe"
    assert SINT64.decode(b"\xff" * 8) == -1
    assert BOOL.encode(True) == b"\x01"
    with pytest.raises(SomeIpError, match="neither 0 nor 1"):
        BOOL.decode(b"\x02")
    with pytest.raises(SomeIpError, match="out of range"):
        UINT8.encode(256)
    with pytest.raises(SomeIpError, match="expected an integer"):
        UINT8.encode(True)
    assert FLOAT32.encode(1.0) == b"\x3f\x80\x00\x00"
    assert math.isnan(FLOAT64.decode(FLOAT64.encode(math.nan)))


def test_struct_round_trip_and_exact_layout() -> None:
    value = {"name": "ivi", "ok": True, "size": 2**40, "delta": -3,
             "parts": [{"id": 1, "data": b"\x01\x02"}, {"id": 2, "data": b""}], "crc": [1, 2, 3, 4], "ratio": 0.5}
    raw = STATUS.encode(value)
    assert STATUS.decode(raw) == value
    parts = raw[4 + 7 + 1 + 8 + 2:]
    assert parts[:4] == (2 + 2 + 2 + 2 + 2).to_bytes(4, "big")  # array length counts bytes, not elements
    assert raw[:4] == (3 + 3 + 1).to_bytes(4, "big")  # BOM + "ivi" + NUL


def test_struct_with_length_field_skips_members_a_newer_minor_version_appended() -> None:
    old = Struct(("a", UINT16), length_field=2, name="Old")
    assert old.decode(b"\x00\x04\x00\x07\xff\xff") == {"a": 7}
    with pytest.raises(SomeIpError, match=r"Old\.a"):
        old.decode(b"\x00\x01\x00")


@pytest.mark.parametrize("value, reason", [
    ({"name": "x"}, "missing"),
    ({"name": 5}, "expected str"),
    ([], "expected a mapping"),
])
def test_struct_encode_names_the_member(value: Any, reason: str) -> None:
    with pytest.raises(SomeIpError, match=reason):
        STATUS.encode(value)


def test_arrays_and_limits() -> None:
    numbers = Array(UINT16, length_field=1, max_count=3)
    assert numbers.encode([1, 2]) == b"\x04\x00\x01\x00\x02"
    with pytest.raises(SomeIpError, match="needs 2 bytes"):
        numbers.decode(b"\x03\x00\x01\x00")
    with pytest.raises(SomeIpError, match="more than 3"):
        numbers.decode(b"\x08" + b"\x00\x01" * 4)
    with pytest.raises(SomeIpError, match="do not fit a 1-byte length field"):
        Bytes(length_field=1).encode(b"x" * 256)
    with pytest.raises(SomeIpError, match="exactly 4"):
        FixedArray(UINT8, 4).encode([1])
    assert VOID.encode(None) == b"" and VOID.decode(b"") is None
    with pytest.raises(ValueError, match="needs a 1, 2 or 4-byte length field"):
        String(length_field=0)
    with pytest.raises(SomeIpError, match="trailing"):
        VOID.decode(b"\x00")


@given(st.binary(max_size=80))
@settings(max_examples=100, deadline=None)
def test_decoding_random_payloads_never_crashes(data: bytes) -> None:
    with contextlib.suppress(SomeIpError):
        STATUS.decode(data)


@given(st.text(max_size=20).filter(lambda t: "\x00" not in t), st.booleans(), st.integers(0, 2**64 - 1),
       st.integers(-(2**15), 2**15 - 1),
       st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=8)), max_size=4),
       st.lists(st.integers(0, 255), min_size=4, max_size=4), st.floats(allow_nan=False))
@settings(max_examples=50, deadline=None)
def test_struct_round_trip(name: str, ok: bool, size: int, delta: int, parts: list[tuple[int, bytes]],
                           crc: list[int], ratio: float) -> None:
    value = {"name": name, "ok": ok, "size": size, "delta": delta,
             "parts": [{"id": i, "data": d} for i, d in parts], "crc": crc, "ratio": ratio}
    assert STATUS.decode(STATUS.encode(value)) == value
