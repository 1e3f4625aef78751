"""SOME/IP payload serialization (AUTOSAR PRS_SOMEIP "Serialization of Parameters and Data Structures").

A payload type is described once, declaratively, and the same object encodes and decodes::

    PROGRESS = Struct(("job", String()), ("done", UINT64), ("total", UINT64), ("state", UINT8))
    raw = PROGRESS.encode({"job": "ivi-1", "done": 10, "total": 100, "state": 2})
    PROGRESS.decode(raw) == {...}

Everything is big-endian. Integers, ``BOOL`` (0 or 1 only), floats; ``String`` is UTF-8 with
BOM (EF BB BF) and a NUL terminator, both counted by its length field; ``Array`` and ``Bytes``
are dynamic with a length field counting bytes; ``FixedArray`` has no length field; ``Struct``
encodes its members in order, optionally behind a length field. Length fields are 1, 2 or 4
bytes (PRS default 4; a struct may have none). Decoding is strict: a short buffer, a bad BOM or terminator, a length
that overruns, or trailing bytes raise :class:`agent.errors.SomeIpError`.
"""

from __future__ import annotations

import abc
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from agent.errors import SomeIpError

UTF8_BOM = b"\xef\xbb\xbf"
_LENGTH_FORMATS = {1: ">B", 2: ">H", 4: ">I"}


class Reader:
    """A cursor over a payload; every read checks bounds."""

    def __init__(self, data: bytes, offset: int = 0, end: int | None = None) -> None:
        self.data = data
        self.offset = offset
        self.end = len(data) if end is None else end

    def take(self, size: int, what: str) -> bytes:
        if size < 0 or self.offset + size > self.end:
            raise SomeIpError(f"{what}: needs {size} bytes at offset {self.offset}, "
                              f"only {self.end - self.offset} left")
        chunk = self.data[self.offset:self.offset + size]
        self.offset += size
        return chunk

    def sub(self, size: int, what: str) -> Reader:
        """A reader over the next ``size`` bytes (the content of a length-prefixed item)."""
        start = self.offset
        self.take(size, what)
        return Reader(self.data, start, start + size)

    def expect_end(self, what: str) -> None:
        if self.offset != self.end:
            raise SomeIpError(f"{what}: {self.end - self.offset} unexpected trailing bytes at offset {self.offset}")


class DataType(abc.ABC):
    """A SOME/IP data type: ``encode(value) -> bytes`` and ``decode(bytes) -> value``."""

    name = "data"

    def encode(self, value: Any) -> bytes:
        out = bytearray()
        self.write(value, out)
        return bytes(out)

    def decode(self, data: bytes) -> Any:
        reader = Reader(bytes(data))
        value = self.read(reader)
        reader.expect_end(self.name)
        return value

    @abc.abstractmethod
    def write(self, value: Any, out: bytearray) -> None: ...

    @abc.abstractmethod
    def read(self, reader: Reader) -> Any: ...


def _check_length_field(size: int) -> int:
    if size not in (0, 1, 2, 4):
        raise ValueError(f"length field size must be 0, 1, 2 or 4 bytes, not {size}")
    return size


def _dynamic_length_field(size: int) -> int:
    """Dynamic strings and arrays need a length field (PRS: 1, 2 or 4 bytes)."""
    if size not in (1, 2, 4):
        raise ValueError(f"a dynamic string or array needs a 1, 2 or 4-byte length field, not {size}")
    return size


def _write_length(size: int, length: int, out: bytearray, what: str) -> None:
    if length >= 1 << (8 * size):
        raise SomeIpError(f"{what}: {length} bytes do not fit a {size}-byte length field")
    out += struct.pack(_LENGTH_FORMATS[size], length)


def _read_length(size: int, reader: Reader, what: str) -> int:
    (length,) = struct.unpack(_LENGTH_FORMATS[size], reader.take(size, f"{what} length field"))
    return int(length)


class Integer(DataType):
    def __init__(self, bits: int, *, signed: bool = False) -> None:
        self.bits = bits
        self.signed = signed
        self.name = f"{'s' if signed else 'u'}int{bits}"
        code = {8: "b", 16: "h", 32: "i", 64: "q"}[bits]
        self._struct = struct.Struct(">" + (code if signed else code.upper()))

    def write(self, value: Any, out: bytearray) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SomeIpError(f"{self.name}: expected an integer, got {type(value).__name__}")
        low, high = (-(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1) if self.signed else (0, (1 << self.bits) - 1)
        if not low <= value <= high:
            raise SomeIpError(f"{self.name}: {value} out of range [{low}, {high}]")
        out += self._struct.pack(value)

    def read(self, reader: Reader) -> int:
        return int(self._struct.unpack(reader.take(self._struct.size, self.name))[0])


class Boolean(DataType):
    name = "bool"

    def write(self, value: Any, out: bytearray) -> None:
        if not isinstance(value, bool):
            raise SomeIpError(f"bool: expected True or False, got {value!r}")
        out.append(1 if value else 0)

    def read(self, reader: Reader) -> bool:
        byte = reader.take(1, self.name)[0]
        if byte > 1:
            raise SomeIpError(f"bool: byte 0x{byte:02x} is neither 0 nor 1")
        return byte == 1


class Float(DataType):
    def __init__(self, bits: int) -> None:
        self.name = f"float{bits}"
        self._struct = struct.Struct(">f" if bits == 32 else ">d")

    def write(self, value: Any, out: bytearray) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SomeIpError(f"{self.name}: expected a number, got {type(value).__name__}")
        try:
            out += self._struct.pack(value)
        except OverflowError as e:
            raise SomeIpError(f"{self.name}: {value} out of range") from e

    def read(self, reader: Reader) -> float:
        return float(self._struct.unpack(reader.take(self._struct.size, self.name))[0])


UINT8 = Integer(8)
UINT16 = Integer(16)
UINT32 = Integer(32)
UINT64 = Integer(64)
SINT8 = Integer(8, signed=True)
SINT16 = Integer(16, signed=True)
SINT32 = Integer(32, signed=True)
SINT64 = Integer(64, signed=True)
BOOL = Boolean()
FLOAT32 = Float(32)
FLOAT64 = Float(64)


class Bytes(DataType):
    """Dynamic array of uint8 as ``bytes``: a length field (1, 2 or 4 bytes) counting the bytes, then them."""

    def __init__(self, *, length_field: int = 4, max_length: int | None = None) -> None:
        self.length_field = _dynamic_length_field(length_field)
        self.max_length = max_length
        self.name = "bytes"

    def write(self, value: Any, out: bytearray) -> None:
        body = self.to_body(value)
        if self.max_length is not None and len(body) > self.max_length:
            raise SomeIpError(f"{self.name}: {len(body)} bytes exceed the maximum {self.max_length}")
        _write_length(self.length_field, len(body), out, self.name)
        out += body

    def read(self, reader: Reader) -> Any:
        length = _read_length(self.length_field, reader, self.name)
        if self.max_length is not None and length > self.max_length:
            raise SomeIpError(f"{self.name}: length {length} exceeds the maximum {self.max_length}")
        return self.from_body(bytes(reader.take(length, self.name)))

    def to_body(self, value: Any) -> bytes:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise SomeIpError(f"bytes: expected bytes, got {type(value).__name__}")
        return bytes(value)

    def from_body(self, body: bytes) -> Any:
        return body


class String(Bytes):
    """Dynamic UTF-8 string: length field, BOM, text, NUL terminator (length counts BOM and NUL)."""

    def __init__(self, *, length_field: int = 4, max_length: int | None = None) -> None:
        super().__init__(length_field=length_field, max_length=max_length)
        self.name = "string"

    def to_body(self, value: Any) -> bytes:
        if not isinstance(value, str):
            raise SomeIpError(f"string: expected str, got {type(value).__name__}")
        if "\x00" in value:
            raise SomeIpError("string: NUL inside the text would end it early")
        return UTF8_BOM + value.encode("utf-8") + b"\x00"

    def from_body(self, body: bytes) -> str:
        if not body.startswith(UTF8_BOM):
            raise SomeIpError("string: missing UTF-8 byte order mark EF BB BF")
        if len(body) < len(UTF8_BOM) + 1 or body[-1] != 0:
            raise SomeIpError("string: missing NUL terminator")
        text = body[len(UTF8_BOM):-1]
        if b"\x00" in text:
            raise SomeIpError("string: NUL before the terminator")
        try:
            return text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise SomeIpError(f"string: invalid UTF-8 at byte {e.start}") from None


class Array(DataType):
    """Dynamic array: a length field counting the bytes of the elements, then the elements."""

    def __init__(self, element: DataType, *, length_field: int = 4, max_count: int | None = None) -> None:
        self.element = element
        self.length_field = _dynamic_length_field(length_field)
        self.max_count = max_count
        self.name = f"array<{element.name}>"

    def write(self, value: Any, out: bytearray) -> None:
        if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
            raise SomeIpError(f"{self.name}: expected a list, got {type(value).__name__}")
        if self.max_count is not None and len(value) > self.max_count:
            raise SomeIpError(f"{self.name}: {len(value)} elements exceed the maximum {self.max_count}")
        body = bytearray()
        for item in value:
            self.element.write(item, body)
        _write_length(self.length_field, len(body), out, self.name)
        out += body

    def read(self, reader: Reader) -> list[Any]:
        length = _read_length(self.length_field, reader, self.name)
        inner = reader.sub(length, self.name)
        items: list[Any] = []
        while inner.offset < inner.end:
            items.append(self.element.read(inner))
            if self.max_count is not None and len(items) > self.max_count:
                raise SomeIpError(f"{self.name}: more than {self.max_count} elements")
        return items


class FixedArray(DataType):
    """Fixed-length array: exactly ``count`` elements, no length field."""

    def __init__(self, element: DataType, count: int) -> None:
        self.element = element
        self.count = count
        self.name = f"{element.name}[{count}]"

    def write(self, value: Any, out: bytearray) -> None:
        if not isinstance(value, Sequence) or isinstance(value, (str, bytes)) or len(value) != self.count:
            raise SomeIpError(f"{self.name}: expected a list of exactly {self.count} elements")
        for item in value:
            self.element.write(item, out)

    def read(self, reader: Reader) -> list[Any]:
        return [self.element.read(reader) for _ in range(self.count)]


class Struct(DataType):
    """Members in declaration order, as a dict; ``length_field`` > 0 prefixes the struct's size."""

    def __init__(self, *members: tuple[str, DataType], length_field: int = 0, name: str = "struct") -> None:
        names = [member for member, _ in members]
        if len(set(names)) != len(names):
            raise ValueError(f"{name}: duplicate member names {names}")
        self.members = members
        self.length_field = _check_length_field(length_field)
        self.name = name

    def write(self, value: Any, out: bytearray) -> None:
        if not isinstance(value, Mapping):
            raise SomeIpError(f"{self.name}: expected a mapping, got {type(value).__name__}")
        extra = set(value) - {member for member, _ in self.members}
        if extra:
            raise SomeIpError(f"{self.name}: unknown members {sorted(extra)}")
        body = bytearray()
        for member, kind in self.members:
            if member not in value:
                raise SomeIpError(f"{self.name}: member {member!r} missing")
            try:
                kind.write(value[member], body)
            except SomeIpError as e:
                raise SomeIpError(f"{self.name}.{member}: {e}") from None
        if self.length_field:
            _write_length(self.length_field, len(body), out, self.name)
        out += body

    def read(self, reader: Reader) -> dict[str, Any]:
        inner = reader
        if self.length_field:
            inner = reader.sub(_read_length(self.length_field, reader, self.name), self.name)
        result: dict[str, Any] = {}
        for member, kind in self.members:
            try:
                result[member] = kind.read(inner)
            except SomeIpError as e:
                raise SomeIpError(f"{self.name}.{member}: {e}") from None
        if self.length_field:
            # PRS: a receiver skips members it does not know (a newer minor version appended them)
            inner.offset = inner.end
        return result


class Empty(DataType):
    """No payload at all (a method without arguments, or a void response)."""

    name = "void"

    def write(self, value: Any, out: bytearray) -> None:
        if value not in (None, {}, ()):
            raise SomeIpError(f"void: expected no value, got {value!r}")

    def read(self, reader: Reader) -> None:
        return None


VOID = Empty()
