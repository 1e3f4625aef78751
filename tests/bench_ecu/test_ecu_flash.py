"""Flash memory semantics of a bank (pure, no files)."""

from __future__ import annotations

import pytest

from agent.config.vehicle import MemoryRegion
from bench.ecu.flash import FlashBank, FlashError, Layout, RangeSet


def test_range_set_merges_and_splits() -> None:
    r = RangeSet([(10, 20), (30, 40)])
    r.add(20, 30)
    assert list(r) == [(10, 40)]
    r.remove(15, 25)
    assert list(r) == [(10, 15), (25, 40)]
    assert r.overlaps(14, 16) and not r.overlaps(15, 25)
    assert r.total() == 20


def test_bank_layout_programs_only_erased_cells() -> None:
    layout = Layout([MemoryRegion("app", 0x1000, 0x100), MemoryRegion("cal", 0x8000, 0x10)])
    bank = FlashBank(layout, bytearray(b"\xff" * layout.size))
    bank.program(0x8000, b"\x01\x02")
    assert bank.buffer[0x100:0x102] == b"\x01\x02"  # cal sits after app in the buffer
    with pytest.raises(FlashError, match="not erased"):
        bank.program(0x8001, b"\xff")  # even writing 0xFF: the cell is programmed
    with pytest.raises(FlashError, match="not inside one writable region"):
        bank.program(0x10FF, b"\x00\x00")
    bank.erase(0x8000, 0x10)
    assert bank.is_erased(0x8000, 0x10) and bank.read(0x8000, 2) == b"\xff\xff"
