"""One reading of an ECU's versions: what was read, when, and how.

Both collectors produce these: active collection (UDS ReadDataByIdentifier,
source ``uds``) and passive collection (the ECU's periodic version frame,
source ``can-frame``); a Linux ECU's running version over SOME/IP is source
``someip`` (asked at each baseline match, not stored). An ECU that did not answer
is a reading too, with ``answered=False`` and the reason in ``detail``, so "not answering" is
reported instead of being mistaken for "missing" or failing the whole read.
"""

from __future__ import annotations

from dataclasses import dataclass
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
