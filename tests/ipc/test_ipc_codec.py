"""The pure wire layer: newline framing with a size cap, and the JSON-RPC message codec."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.ipc.error_codes import INVALID_REQUEST, PARSE_ERROR
from agent.ipc.framing import LineFramer, Oversized
from agent.ipc.jsonrpc import (
    DecodeError,
    ErrorResponse,
    Notification,
    Request,
    Response,
    decode,
    encode,
)

# -- framing --------------------------------------------------------------------------


def test_lines_split_across_chunks_come_out_whole() -> None:
    framer = LineFramer(100)
    assert framer.feed(b'{"a":') == []
    assert framer.feed(b'1}\n{"b"') == [b'{"a":1}']
    assert framer.feed(b":2}\r\n\n  \n") == [b'{"b":2}']


def test_oversized_line_is_reported_once_and_the_next_line_is_intact() -> None:
    framer = LineFramer(10)
    out = framer.feed(b"x" * 25)  # no newline yet: reported as soon as the cap is passed
    assert out == [Oversized(seen=25, limit=10)]
    assert framer.buffered == 0
    assert framer.feed(b"y" * 1000) == []  # still inside the oversized line: skipped, not buffered
    assert framer.buffered == 0
    assert framer.feed(b'zz\n{"ok":1}\n') == [b'{"ok":1}']


def test_oversized_line_ending_in_the_same_chunk() -> None:
    framer = LineFramer(4)
    assert framer.feed(b"123456\nabc\n") == [Oversized(seen=6, limit=4), b"abc"]


def test_a_line_of_exactly_the_cap_passes() -> None:
    assert LineFramer(4).feed(b"1234\n") == [b"1234"]


lines_st = st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=20)


@given(lines=lines_st, cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=30))
def test_chunking_never_changes_the_messages(lines: list[bytes], cuts: list[int]) -> None:
    """However the stream is cut into reads, the same messages and oversize notices come out."""
    limit = 20
    stream = b"".join(line + b"\n" for line in lines)
    expected: list[bytes | str] = []
    for line in lines:
        if len(line) > limit:
            expected.append("oversized")
        else:
            line = line.rstrip(b"\r")
            if line.strip():
                expected.append(line)
    framer = LineFramer(limit)
    got: list[bytes | str] = []
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    for a, b in itertools.pairwise(points):
        got.extend("oversized" if isinstance(x, Oversized) else x for x in framer.feed(stream[a:b]))
    assert got == expected
    assert framer.buffered == 0


# -- decode: what a daemon answers to bad input -----------------------------------------------

@pytest.mark.parametrize(("line", "code", "words"), [
    (b"{not json", PARSE_ERROR, "parse error"),
    (b"\xff\xfe{}", PARSE_ERROR, "not UTF-8"),
    (b'{"jsonrpc":"2.0","method":"x","params":{"v":NaN},"id":1}', PARSE_ERROR, "NaN"),
    (b"[" * 100_000, PARSE_ERROR, "parse error"),
    (b"[]", INVALID_REQUEST, "empty batch"),
    (b'[{"jsonrpc":"2.0","method":"daemon.ping","id":1}]', INVALID_REQUEST, "batches are not supported"),
    (b"42", INVALID_REQUEST, "expected a JSON-RPC object, got a number"),
    (b'"hi"', INVALID_REQUEST, "got a string"),
    (b'{"method":"daemon.ping","id":1}', INVALID_REQUEST, '"jsonrpc" must be "2.0"'),
    (b'{"jsonrpc":"1.0","method":"daemon.ping","id":1}', INVALID_REQUEST, '"jsonrpc" must be "2.0"'),
    (b'{"jsonrpc":"2.0","method":"daemon.ping","id":1.5}', INVALID_REQUEST, '"id" must be'),
    (b'{"jsonrpc":"2.0","method":"daemon.ping","id":true}', INVALID_REQUEST, '"id" must be'),
    (b'{"jsonrpc":"2.0","method":7,"id":1}', INVALID_REQUEST, '"method" must be a non-empty string'),
    (b'{"jsonrpc":"2.0","method":"x","params":3,"id":1}', INVALID_REQUEST, '"params" must be'),
    (b'{"jsonrpc":"2.0","method":"x","id":1,"extra":0}', INVALID_REQUEST, "unknown member 'extra'"),
    (b'{"jsonrpc":"2.0"}', INVALID_REQUEST, 'neither "method"'),
    (b'{"jsonrpc":"2.0","id":1,"result":1,"error":{}}', INVALID_REQUEST, "exactly one of"),
    (b'{"jsonrpc":"2.0","id":1,"error":{"code":"x","message":"m"}}', INVALID_REQUEST, "integer"),
])
def test_bad_lines_get_the_right_code_and_a_clear_reason(line: bytes, code: int, words: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode(line)
    assert info.value.code == code
    assert words in str(info.value)


def test_the_request_id_is_kept_for_the_error_answer_when_it_is_readable() -> None:
    with pytest.raises(DecodeError) as info:
        decode(b'{"jsonrpc":"2.0","method":"","id":"abc"}')
    assert info.value.id == "abc"


def test_each_kind_of_message_decodes() -> None:
    assert decode(b'{"jsonrpc":"2.0","method":"m","params":{"a":1},"id":7}') == Request(7, "m", {"a": 1})
    assert decode(b'{"jsonrpc":"2.0","method":"m"}') == Notification("m", None)
    assert decode(b'{"jsonrpc":"2.0","result":null,"id":"x"}') == Response("x", None)
    assert decode(b'{"jsonrpc":"2.0","error":{"code":-32601,"message":"no"},"id":null}') == \
        ErrorResponse(None, -32601, "no")


def test_encode_refuses_values_json_cannot_carry() -> None:
    with pytest.raises(ValueError, match=r"not representable as JSON"):
        encode(Request(1, "m", {"x": float("nan")}))
    with pytest.raises(ValueError, match=r"not representable as JSON"):
        encode(Response(1, {"x": b"bytes"}))


def test_encoded_messages_are_one_ascii_line_even_with_newlines_and_surrogates() -> None:
    line = encode(Notification("m", {"text": "a\nb\u2028\ud800é"}))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert line.isascii()
    assert decode(line[:-1]) == Notification("m", {"text": "a\nb\u2028\ud800é"})


# -- properties -----------------------------------------------------------------------------

json_st = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_random_bytes_never_crash_the_decoder(data: bytes) -> None:
    try:
        decode(data)
    except DecodeError as e:
        assert e.code in (PARSE_ERROR, INVALID_REQUEST)
        assert str(e)


@settings(max_examples=150)
@given(json_st)
def test_random_json_is_a_message_or_a_clear_invalid_request(value: object) -> None:
    try:
        message = decode(json.dumps(value).encode())
    except DecodeError as e:
        assert e.code == INVALID_REQUEST
        assert str(e).startswith("invalid request: ")
    else:
        assert isinstance(message, (Request, Notification, Response, ErrorResponse))


@settings(max_examples=60)
@given(
    msg_id=st.one_of(st.none(), st.integers(), st.text(max_size=10)),
    method=st.text(min_size=1, max_size=20),
    params=st.one_of(st.none(), st.dictionaries(st.text(max_size=8), json_st, max_size=4)),
)
def test_requests_survive_a_round_trip(msg_id: str | int | None, method: str,
                                       params: dict[str, object] | None) -> None:
    request = Request(msg_id, method, params)
    line = encode(request)
    assert decode(line.rstrip(b"\n")) == request
