"""Flash images: Intel HEX, Motorola S-record or raw binary, as contiguous segments.

Parsing is bincopy's (record checksums, extended addresses, overlaps); this
module adds what a flasher needs on top of it: the format chosen from the
option or the file name, a line number on a malformed record, a refusal of
truncated files (HEX: no end-of-file record; S-record: a count record that
does not match, or neither count nor termination record), and the check that
every segment lies inside one writable region of the ECU's memory map
before a single byte goes on the bus.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import bincopy

from agent.config.vehicle import MemoryConfig, MemoryRegion
from agent.errors import ConfigurationError

FORMATS = ("ihex", "srec", "bin")
_SUFFIXES = {
    ".hex": "ihex", ".ihex": "ihex", ".ihx": "ihex",
    ".s19": "srec", ".s28": "srec", ".s37": "srec", ".srec": "srec", ".mot": "srec", ".sx": "srec",
    ".bin": "bin", ".img": "bin",
}


@dataclass(frozen=True)
class Segment:
    """One contiguous run of bytes at an address."""

    address: int
    data: bytes

    @property
    def end(self) -> int:
        return self.address + len(self.data)

    def __str__(self) -> str:
        return f"{self.address:#010x}-{self.end:#010x} ({len(self.data)} bytes)"


@dataclass(frozen=True)
class FlashImage:
    """The segments of an image, in address order, and where they came from."""

    source: str
    format: str
    segments: tuple[Segment, ...]

    @property
    def size(self) -> int:
        return sum(len(s.data) for s in self.segments)

    @property
    def crc32(self) -> int:
        """CRC-32 (zlib) over the data of all segments concatenated in address order.

        This is what routine 0202 checkMemory compares with the ECU's own CRC.
        """
        crc = 0
        for segment in self.segments:
            crc = zlib.crc32(segment.data, crc)
        return crc


def detect_format(path: Path, fmt: str | None = None) -> str:
    """``fmt`` if given, else the format the file name says."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ConfigurationError(f"unknown image format {fmt!r} (known: {', '.join(FORMATS)})",
                                     source=str(path))
        return fmt
    found = _SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise ConfigurationError(
            f"cannot tell the image format from the name; pass --format ({', '.join(FORMATS)})",
            source=str(path))
    return found


def load_image(path: str | Path, *, fmt: str | None = None, base_address: int | None = None) -> FlashImage:
    """Read an image file into segments; a malformed file raises ConfigurationError naming the line."""
    p = Path(path)
    kind = detect_format(p, fmt)
    if kind == "bin":
        if base_address is None:
            raise ConfigurationError("a raw binary image needs a base address (--base-address)",
                                     source=str(p))
        if base_address < 0:
            raise ConfigurationError(f"base address must be >= 0, got {base_address:#x}", source=str(p))
        try:
            data = p.read_bytes()
        except OSError as e:
            raise ConfigurationError(f"cannot read: {e.strerror or e}", source=str(p)) from e
        segments: tuple[Segment, ...] = (Segment(base_address, data),) if data else ()
    else:
        if base_address is not None:
            raise ConfigurationError(f"--base-address applies to raw binary images only, not {kind}",
                                     source=str(p))
        try:
            text = p.read_text(encoding="ascii")
        except OSError as e:
            raise ConfigurationError(f"cannot read: {e.strerror or e}", source=str(p)) from e
        except UnicodeDecodeError as e:
            raise ConfigurationError(f"not a text {kind} file (byte {e.start} is not ASCII)",
                                     source=str(p)) from e
        segments = _parse_records(p, kind, text)
    if not segments:
        raise ConfigurationError("the image holds no data", source=str(p))
    return FlashImage(source=str(p), format=kind, segments=segments)


def _parse_records(path: Path, kind: str, text: str) -> tuple[Segment, ...]:
    binfile = bincopy.BinFile()
    try:
        if kind == "ihex":
            binfile.add_ihex(text)
        else:
            binfile.add_srec(text)
    except (bincopy.Error, ValueError) as e:
        raise ConfigurationError(f"{_where(kind, text)}malformed {kind} file: {e}", source=str(path)) from e
    _require_end_record(path, kind, text)
    return tuple(Segment(int(s.minimum_address), bytes(s.data)) for s in binfile.segments)


def _where(kind: str, text: str) -> str:
    """``line N: `` for the first record bincopy cannot unpack, if one is to blame."""
    unpack = bincopy.unpack_ihex if kind == "ihex" else bincopy.unpack_srec
    for number, line in enumerate(text.splitlines(), start=1):
        record = line.strip()
        if not record:
            continue
        try:
            unpack(record)
        except (bincopy.Error, ValueError, IndexError):
            return f"line {number}: "
    return ""


def _require_end_record(path: Path, kind: str, text: str) -> None:
    """A file cut short (no EOF / termination record) must not be flashed as if whole."""
    records = [line.strip() for line in text.splitlines() if line.strip()]
    if kind == "ihex":
        if not records or records[-1][7:9] != "01":
            raise ConfigurationError("no end-of-file record (':00000001FF') at the end: file truncated?",
                                     source=str(path))
        return
    data_records = sum(1 for r in records if r[:2] in ("S1", "S2", "S3"))
    counts = [int(bincopy.unpack_srec(r)[1]) for r in records if r[:2] in ("S5", "S6")]
    if counts:
        if counts[-1] != data_records:
            raise ConfigurationError(f"the count record says {counts[-1]} data records, the file has "
                                     f"{data_records}: file truncated or spliced?", source=str(path))
    elif not any(r[:2] in ("S7", "S8", "S9") for r in records):
        raise ConfigurationError("neither a count (S5/S6) nor a termination record (S7/S8/S9): "
                                 "file truncated?", source=str(path))


def map_segments(image: FlashImage, memory: MemoryConfig, ecu: str) -> list[tuple[Segment, MemoryRegion]]:
    """Each segment with the writable region it lies in; refuse any segment outside the map."""
    mapped = []
    for segment in image.segments:
        region = memory.region_for(segment.address, len(segment.data))
        if region is None:
            raise ConfigurationError(
                f"segment {segment} is outside the memory map of {ecu} ({_describe(memory.regions)})",
                source=image.source)
        mapped.append((segment, region))
    return mapped


def _describe(regions: Sequence[MemoryRegion]) -> str:
    return ", ".join(f"{r.name} {r.start:#010x}-{r.end:#010x}" for r in regions)
