"""Flash memory semantics of one bank: erase to 0xFF, program only what is erased.

A bank covers every writable region of the ECU's memory map, laid out back to
back in one buffer (a ``bytearray`` in tests, an ``mmap`` of the bank file in
the simulator). Like ECC flash, a cell that was programmed since its last
erase cannot be programmed again, even with the same value: the bank keeps the
set of programmed address ranges for that, rather than comparing against 0xFF.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterable, Iterator, Sequence

from agent.config.vehicle import MemoryRegion


class FlashError(Exception):
    """A flash operation a real flash controller would refuse."""


class RangeSet:
    """Sorted, merged, half-open ``[start, end)`` address ranges."""

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self._ranges: list[tuple[int, int]] = []
        for start, end in ranges:
            self.add(start, end)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self._ranges)

    def __len__(self) -> int:
        return len(self._ranges)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RangeSet) and self._ranges == other._ranges

    def __repr__(self) -> str:
        return "RangeSet(" + ", ".join(f"{s:#x}-{e:#x}" for s, e in self._ranges) + ")"

    def total(self) -> int:
        return sum(e - s for s, e in self._ranges)

    def copy(self) -> RangeSet:
        return RangeSet(self._ranges)

    def overlaps(self, start: int, end: int) -> bool:
        return any(s < end and start < e for s, e in self._ranges)

    def add(self, start: int, end: int) -> None:
        if end <= start:
            return
        kept: list[tuple[int, int]] = []
        for s, e in self._ranges:
            if e < start or end < s:  # disjoint and not touching
                kept.append((s, e))
            else:
                start, end = min(s, start), max(e, end)
        kept.append((start, end))
        kept.sort()
        self._ranges = kept

    def remove(self, start: int, end: int) -> None:
        kept: list[tuple[int, int]] = []
        for s, e in self._ranges:
            if e <= start or end <= s:
                kept.append((s, e))
                continue
            if s < start:
                kept.append((s, start))
            if end < e:
                kept.append((end, e))
        self._ranges = kept

    def to_list(self) -> list[list[int]]:
        return [[s, e] for s, e in self._ranges]


class Layout:
    """Where each region of the memory map sits inside a bank buffer."""

    def __init__(self, regions: Sequence[MemoryRegion]) -> None:
        self.regions = tuple(regions)
        self._offsets: list[tuple[MemoryRegion, int]] = []
        offset = 0
        for region in self.regions:
            self._offsets.append((region, offset))
            offset += region.size
        self.size = offset

    def offset(self, address: int, length: int) -> int:
        """The buffer offset of ``[address, address+length)``; FlashError if it leaves a region."""
        for region, base in self._offsets:
            if region.contains(address, length):
                return base + address - region.start
        raise FlashError(f"{address:#x}+{length:#x} is not inside one writable region")

    def region_for(self, address: int, length: int) -> MemoryRegion | None:
        for region in self.regions:
            if region.contains(address, length) and length > 0:
                return region
        return None

    def describe(self) -> list[list[int]]:
        return [[r.start, r.size] for r in self.regions]


class FlashBank:
    """One bank: its bytes and which of them are programmed since their last erase."""

    def __init__(self, layout: Layout, buffer: bytearray | mmap.mmap,
                 programmed: RangeSet | None = None) -> None:
        if len(buffer) != layout.size:
            raise ValueError(f"bank buffer is {len(buffer)} bytes, the memory map needs {layout.size}")
        self.layout = layout
        self.buffer = buffer
        self.programmed = programmed if programmed is not None else RangeSet()

    def read(self, address: int, length: int) -> bytes:
        off = self.layout.offset(address, length)
        return bytes(self.buffer[off:off + length])

    def region_bytes(self, region: MemoryRegion) -> bytes:
        return self.read(region.start, region.size)

    def is_erased(self, address: int, length: int) -> bool:
        self.layout.offset(address, length)
        return not self.programmed.overlaps(address, address + length)

    def erase(self, address: int, length: int) -> None:
        off = self.layout.offset(address, length)
        self.buffer[off:off + length] = b"\xff" * length
        self.programmed.remove(address, address + length)

    def program(self, address: int, data: bytes) -> None:
        off = self.layout.offset(address, len(data))
        if self.programmed.overlaps(address, address + len(data)):
            raise FlashError(f"{address:#x}+{len(data):#x} is not erased")
        self.buffer[off:off + len(data)] = data
        self.programmed.add(address, address + len(data))
