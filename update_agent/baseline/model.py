"""Typed hardware and software baselines, as loaded from their XML files."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from update_agent.vehicle_version import VehicleVersion


@dataclass(frozen=True)
class EcuExpectation:
    """One ECU of a baseline entry and the versions accepted for it (any one matches)."""

    id: str
    name: str
    versions: frozenset[str]
    #: where it was first written (entries share identical expectations)
    line: int | None = None


@dataclass(frozen=True)
class VehicleHardware:
    """One vehicle hardware version of the hardware baseline."""

    version: str
    ecus: Mapping[str, EcuExpectation]
    description: str | None = None
    line: int | None = None


@dataclass(frozen=True)
class HardwareBaseline:
    source: str
    vehicle_model: str
    #: in document order, which is the order they are checked in
    variants: tuple[VehicleHardware, ...]

    def variant(self, version: str) -> VehicleHardware | None:
        return next((v for v in self.variants if v.version == version), None)


@dataclass(frozen=True)
class VehicleVersionEntry:
    """One node of the software baseline: a vehicle software version and its ECUs."""

    sequence: int
    version: VehicleVersion
    ecus: Mapping[str, EcuExpectation]
    description: str | None = None
    line: int | None = None


@dataclass(frozen=True)
class SoftwareBaseline:
    source: str
    vehicle_model: str
    platform: str
    #: vehicle hardware versions the file applies to; empty means any
    hardware_versions: frozenset[str]
    #: highest sequence number first, the order matching walks them in
    entries: tuple[VehicleVersionEntry, ...]

    def entry(self, sequence: int) -> VehicleVersionEntry | None:
        return next((e for e in self.entries if e.sequence == sequence), None)

    def applies_to(self, hardware_version: str) -> bool:
        return not self.hardware_versions or hardware_version in self.hardware_versions
