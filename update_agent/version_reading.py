"""One reading of an ECU's versions: what was read, when, and how.

Both collectors produce these: active collection (UDS ReadDataByIdentifier,
source ``uds``) and passive collection (the ECU's periodic version frame,
source ``can-frame``); a Linux ECU's running version over SOME/IP is source
``someip`` (asked at each baseline match, not stored). An ECU that did not answer
is a reading too, with ``answered=False`` and the reason in ``detail``, so "not answering" is
reported instead of being mistaken for "missing" or failing the whole read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal

Source = Literal["uds", "can-frame", "someip"]
#: the sources stored in the version store (a Linux ECU's ``someip`` reading is asked for each match)
SOURCES: tuple[Source, ...] = ("uds", "can-frame")


@dataclass(frozen=True)
class VersionReading:
    ecu: str
    source: Source
    #: wall-clock time of the read, seconds since the epoch (what the store keeps)
    read_at: float
    answered: bool
    hardware_version: str | None = None
    software_version: str | None = None
    part_number: str | None = None
    serial_number: str | None = None
    #: why the ECU is counted as not answering, or what else went wrong
    detail: str | None = None

    @classmethod
    def not_answering(cls, ecu: str, source: Source, read_at: float, detail: str) -> VersionReading:
        return cls(ecu=ecu, source=source, read_at=read_at, answered=False, detail=detail)


def freshest(readings: list[VersionReading]) -> VersionReading | None:
    """The reading to match on: the newest answered one, else the newest of all."""
    answered = [r for r in readings if r.answered]
    pool = answered or readings
    return max(pool, key=lambda r: r.read_at) if pool else None


def with_identity_from(used: VersionReading, others: Iterable[VersionReading]) -> VersionReading:
    """``used`` with the part and serial numbers it lacks taken from the newest answered reading of
    ``others`` that has them (a version frame gives only hardware and software versions; the UDS read
    of the same run gives the part number too).

    Only these two, never matched on: the hardware and software versions stay ``used``'s own.
    """
    if not used.answered:
        return used
    donors = sorted((r for r in others if r.answered and r is not used), key=lambda r: r.read_at, reverse=True)
    part = used.part_number or next((r.part_number for r in donors if r.part_number), None)
    serial = used.serial_number or next((r.serial_number for r in donors if r.serial_number), None)
    if (part, serial) == (used.part_number, used.serial_number):
        return used
    return replace(used, part_number=part, serial_number=serial)
