"""Bench application images: a header the bootloader reads, and a body.

Real ECUs read their application software version from the application
itself (a header at a fixed address), not from a value the tester writes.
The bench does the same: an image starts with this 64-byte header, so the
version an ECU reports after a flash is the one inside what was flashed.

Header layout (little-endian), at the start of the image:

====== ==== ===========================================
offset size field
====== ==== ===========================================
0      4    magic ``b"OTAH"``
4      1    header format (1)
5      3    reserved (0)
8      16   software version, ASCII, NUL-padded
24     16   part number, ASCII, NUL-padded
40     4    image length in bytes, header included
44     4    CRC-32 (zlib) of the bytes after the header
48     16   reserved (0)
====== ==== ===========================================
"""

from __future__ import annotations

import random
import struct
import zlib
from dataclasses import dataclass

import bincopy

MAGIC = b"OTAH"
HEADER = struct.Struct("<4sB3x16s16sII16x")
assert HEADER.size == 64


@dataclass(frozen=True)
class AppHeader:
    software_version: str
    part_number: str
    length: int
    crc32: int


def build_image(software_version: str, part_number: str, size: int, *, seed: int | str = 0) -> bytes:
    """A deterministic application image of ``size`` bytes with a valid header."""
    if size < HEADER.size:
        raise ValueError(f"image size must be at least {HEADER.size} bytes")
    body = random.Random(f"{seed}:{software_version}:{part_number}").randbytes(size - HEADER.size)
    header = HEADER.pack(MAGIC, 1, software_version.encode("ascii"), part_number.encode("ascii"),
                         size, zlib.crc32(body))
    return header + body


def parse_header(image: bytes) -> AppHeader | None:
    """The header of a complete, intact image, or None (erased, truncated, corrupt)."""
    if len(image) < HEADER.size:
        return None
    magic, fmt, version, part, length, crc = HEADER.unpack_from(image)
    if magic != MAGIC or fmt != 1 or not HEADER.size <= length <= len(image):
        return None
    if zlib.crc32(image[HEADER.size:length]) != crc:
        return None
    return AppHeader(version.rstrip(b"\0").decode("ascii", "replace"),
                     part.rstrip(b"\0").decode("ascii", "replace"), length, crc)


def to_hex(image: bytes, address: int, *, fmt: str = "ihex") -> str:
    """The image as Intel HEX (``ihex``) or Motorola S-record (``srec``) text at ``address``."""
    bf = bincopy.BinFile()
    bf.add_binary(image, address=address)
    if fmt == "ihex":
        return str(bf.as_ihex())
    if fmt == "srec":
        return str(bf.as_srec())
    raise ValueError(f"unknown format {fmt!r}")
