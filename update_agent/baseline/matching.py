"""The baseline matching engine (FAW paper section 3.2.2): pure, no I/O.

Input: the hardware baseline, the software baseline and, per ECU, the reading
to judge it by (:class:`~update_agent.version_reading.VersionReading`, or none
when the ECU was never heard). Output: a :class:`MatchReport`.

1. **Hardware first.** The vehicle hardware versions are tried in document
   order; the first whose every ECU answered with one of its accepted
   hardware versions is the car's. If none matches, the report names the
   nearest one and, per ECU, what is wrong: ``missing`` (never heard),
   ``not-answering``, ``unreadable`` (answered without that version) or
   ``hardware-mismatch``. The software baseline is then not checked, because
   software versions mean nothing on hardware the baseline does not know.
2. **Software.** If the software baseline does not apply to the matched
   vehicle hardware version it is reported as ``not-applicable``. Otherwise
   the vehicle versions are compared from the highest sequence number down
   and the first entry whose every ECU matches is the vehicle's software
   version; comparing stops there.
3. **No match.** The report names the *nearest* entry and the ECUs that
   differ from it.

"Nearest" means: the entry with the fewest differing ECUs; between entries
with the same count, the higher sequence number (for hardware, the earlier
in the file). ECUs that answered but are not part of an entry do not count
against it; they are listed as ``not-in-baseline``.

Cost: one pass over the entries, highest sequence first; counting the
differences of an entry stops as soon as it can no longer be nearer than the
best so far, so a top match costs one entry and no match at most one full
pass (see ``benchmarks/baseline_match.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from update_agent.baseline.model import (
    EcuExpectation,
    HardwareBaseline,
    SoftwareBaseline,
    VehicleHardware,
    VehicleVersionEntry,
)
from update_agent.version_reading import VersionReading

Problem = Literal["missing", "not-answering", "unreadable", "hardware-mismatch", "software-mismatch"]
SoftwareStatus = Literal["matched", "no-match", "not-checked", "not-applicable"]

_WHAT = {"hardware": "hardware version", "software": "software version"}


@dataclass(frozen=True)
class EcuFinding:
    """Why one ECU differs from a baseline entry."""

    ecu: str
    problem: Problem
    expected: frozenset[str]
    found: str | None = None
    detail: str | None = None

    def describe(self) -> str:
        expected = " or ".join(sorted(self.expected)) or "nothing"
        if self.problem == "missing":
            return f"{self.ecu}: missing (no reading; expected {expected})"
        if self.problem == "not-answering":
            return f"{self.ecu}: not answering ({self.detail or 'no answer'}); expected {expected}"
        if self.problem == "unreadable":
            return f"{self.ecu}: answered without the version ({self.detail or 'no value'}); " \
                   f"expected {expected}"
        what = "hardware" if self.problem == "hardware-mismatch" else "software"
        return f"{self.ecu}: {what} version {self.found} (expected {expected})"

    def as_dict(self) -> dict[str, Any]:
        return {"ecu": self.ecu, "problem": self.problem, "expected": sorted(self.expected),
                "found": self.found, "detail": self.detail}


@dataclass(frozen=True)
class HardwareResult:
    matched: VehicleHardware | None
    #: the vehicle hardware version the findings are against when nothing matched
    nearest: VehicleHardware | None
    findings: tuple[EcuFinding, ...] = ()

    @property
    def ok(self) -> bool:
        return self.matched is not None

    @property
    def reference(self) -> VehicleHardware | None:
        return self.matched or self.nearest


@dataclass(frozen=True)
class SoftwareResult:
    status: SoftwareStatus
    matched: VehicleVersionEntry | None = None
    nearest: VehicleVersionEntry | None = None
    findings: tuple[EcuFinding, ...] = ()
    #: entries looked at before stopping
    compared: int = 0
    reason: str | None = None

    @property
    def reference(self) -> VehicleVersionEntry | None:
        return self.matched or self.nearest


@dataclass(frozen=True)
class EcuRow:
    """One line of the per-ECU table: what the reference entries expect and what was found."""

    ecu: str
    name: str | None
    expected_hardware: frozenset[str] | None
    expected_software: frozenset[str] | None
    reading: VersionReading | None
    findings: tuple[EcuFinding, ...] = field(default=())

    @property
    def in_baseline(self) -> bool:
        return self.expected_hardware is not None or self.expected_software is not None


@dataclass(frozen=True)
class MatchReport:
    hardware: HardwareResult
    software: SoftwareResult
    readings: Mapping[str, VersionReading]

    @property
    def ok(self) -> bool:
        return self.hardware.ok and self.software.status == "matched"

    @property
    def vehicle_version(self) -> str | None:
        return None if self.software.matched is None else str(self.software.matched.version)

    @property
    def hardware_version(self) -> str | None:
        return None if self.hardware.matched is None else self.hardware.matched.version

    def reasons(self) -> list[str]:
        """Why the match failed, one sentence per fault; empty when it matched."""
        out: list[str] = []
        hw = self.hardware
        if not hw.ok:
            near = f" (nearest: {hw.nearest.version})" if hw.nearest else ""
            out.append(f"hardware baseline not matched{near}")
            out.extend(f.describe() for f in hw.findings)
        sw = self.software
        if sw.status == "no-match":
            near = f" (nearest: {sw.nearest.version}, sequence {sw.nearest.sequence})" if sw.nearest else ""
            out.append(f"no vehicle software version matches{near}")
            out.extend(f.describe() for f in sw.findings)
        elif sw.status in ("not-checked", "not-applicable") and sw.reason:
            out.append(f"software baseline {sw.status}: {sw.reason}")
        return out

    def rows(self) -> list[EcuRow]:
        """Every ECU in the reference entries or in the readings, baseline order first."""
        hw_ref = self.hardware.reference
        sw_ref = self.software.reference
        names: dict[str, str] = {}
        order: list[str] = []
        for ecus in (hw_ref.ecus if hw_ref else {}, sw_ref.ecus if sw_ref else {}):
            for ecu_id, exp in ecus.items():
                names.setdefault(ecu_id, exp.name)
                if ecu_id not in order:
                    order.append(ecu_id)
        order += sorted(e for e in self.readings if e not in names)
        findings: dict[str, list[EcuFinding]] = {}
        for f in (*self.hardware.findings, *self.software.findings):
            findings.setdefault(f.ecu, []).append(f)
        rows = []
        for ecu_id in order:
            hw_exp = hw_ref.ecus.get(ecu_id) if hw_ref else None
            sw_exp = sw_ref.ecus.get(ecu_id) if sw_ref else None
            rows.append(EcuRow(
                ecu=ecu_id,
                name=names.get(ecu_id),
                expected_hardware=hw_exp.versions if hw_exp else None,
                expected_software=sw_exp.versions if sw_exp else None,
                reading=self.readings.get(ecu_id),
                findings=tuple(findings.get(ecu_id, ())),
            ))
        return rows

    def as_dict(self, now: float | None = None) -> dict[str, Any]:
        """A JSON-ready dict; ``now`` (epoch seconds) adds each reading's age."""
        hw, sw = self.hardware, self.software
        return {
            "ok": self.ok,
            "hardware": {
                "matched": hw.matched.version if hw.matched else None,
                "nearest": hw.nearest.version if hw.nearest else None,
                "findings": [f.as_dict() for f in hw.findings],
            },
            "software": {
                "status": sw.status,
                "vehicle_version": str(sw.matched.version) if sw.matched else None,
                "sequence": sw.matched.sequence if sw.matched else None,
                "nearest": ({"vehicle_version": str(sw.nearest.version), "sequence": sw.nearest.sequence}
                            if sw.nearest else None),
                "findings": [f.as_dict() for f in sw.findings],
                "compared": sw.compared,
                "reason": sw.reason,
            },
            "ecus": [_row_dict(row, now) for row in self.rows()],
            "reasons": self.reasons(),
        }


def _row_dict(row: EcuRow, now: float | None) -> dict[str, Any]:
    r = row.reading
    return {
        "ecu": row.ecu,
        "name": row.name,
        "expected_hardware": None if row.expected_hardware is None else sorted(row.expected_hardware),
        "expected_software": None if row.expected_software is None else sorted(row.expected_software),
        "found_hardware": r.hardware_version if r else None,
        "found_software": r.software_version if r else None,
        "answered": r.answered if r else None,
        "source": r.source if r else None,
        "read_at": r.read_at if r else None,
        "age_s": (round(now - r.read_at, 3) if r is not None and now is not None else None),
        "detail": r.detail if r else None,
        "problems": [f.problem for f in row.findings] or (["not-in-baseline"] if not row.in_baseline else []),
    }


# -- the engine ---------------------------------------------------------------

def _finding(ecu_id: str, exp: EcuExpectation, reading: VersionReading | None,
             kind: Literal["hardware", "software"]) -> EcuFinding | None:
    """None when the ECU matches ``exp``; else what is wrong."""
    if reading is None:
        return EcuFinding(ecu_id, "missing", exp.versions)
    if not reading.answered:
        return EcuFinding(ecu_id, "not-answering", exp.versions, detail=reading.detail)
    found = reading.hardware_version if kind == "hardware" else reading.software_version
    if found is None:
        return EcuFinding(ecu_id, "unreadable", exp.versions,
                          detail=reading.detail or f"no {_WHAT[kind]} in the {reading.source} reading")
    if found in exp.versions:
        return None
    return EcuFinding(ecu_id, "hardware-mismatch" if kind == "hardware" else "software-mismatch",
                      exp.versions, found=found)


def _found(readings: Mapping[str, VersionReading], kind: Literal["hardware", "software"]
           ) -> dict[str, str | None]:
    """ECU -> the version it answered with; not answering counts as no version."""
    attr = "hardware_version" if kind == "hardware" else "software_version"
    return {ecu: getattr(r, attr) if r.answered else None for ecu, r in readings.items()}


def _count(ecus: Mapping[str, EcuExpectation], found: Mapping[str, str | None], give_up_at: int) -> int:
    """Differing ECUs, counting no further than ``give_up_at``."""
    n = 0
    for ecu_id, exp in ecus.items():
        if found.get(ecu_id) not in exp.versions:
            n += 1
            if n >= give_up_at:
                return n
    return n


def _findings(ecus: Mapping[str, EcuExpectation], readings: Mapping[str, VersionReading],
              kind: Literal["hardware", "software"]) -> tuple[EcuFinding, ...]:
    out = (_finding(ecu_id, exp, readings.get(ecu_id), kind) for ecu_id, exp in ecus.items())
    return tuple(f for f in out if f is not None)


def _best(candidates: Iterable[Mapping[str, EcuExpectation]],
          readings: Mapping[str, VersionReading], kind: Literal["hardware", "software"]
          ) -> tuple[int | None, int | None, int]:
    """(index of the first full match or None, index of the nearest, entries compared)."""
    best_index: int | None = None
    best_count = 1 << 62
    compared = 0
    found = _found(readings, kind)
    for index, ecus in enumerate(candidates):
        compared += 1
        n = _count(ecus, found, best_count)
        if n == 0:
            return index, index, compared
        if n < best_count:
            best_index, best_count = index, n
    return None, best_index, compared


def match_hardware(baseline: HardwareBaseline, readings: Mapping[str, VersionReading]) -> HardwareResult:
    variants = baseline.variants
    hit, nearest, _ = _best((v.ecus for v in variants), readings, "hardware")
    if hit is not None:
        return HardwareResult(matched=variants[hit], nearest=None)
    near = variants[nearest] if nearest is not None else None
    return HardwareResult(matched=None, nearest=near,
                          findings=_findings(near.ecus, readings, "hardware") if near else ())


def match_software(baseline: SoftwareBaseline, readings: Mapping[str, VersionReading]) -> SoftwareResult:
    entries = baseline.entries  # highest sequence first
    hit, nearest, compared = _best((e.ecus for e in entries), readings, "software")
    if hit is not None:
        return SoftwareResult(status="matched", matched=entries[hit], compared=compared)
    near = entries[nearest] if nearest is not None else None
    return SoftwareResult(status="no-match", nearest=near, compared=compared,
                          findings=_findings(near.ecus, readings, "software") if near else (),
                          reason="no entry matches every ECU")


def match(hardware: HardwareBaseline, software: SoftwareBaseline,
          readings: Mapping[str, VersionReading]) -> MatchReport:
    """Hardware baseline first, then the software baseline from the highest sequence down."""
    hw = match_hardware(hardware, readings)
    if hw.matched is None:
        sw = SoftwareResult(status="not-checked", reason="the hardware baseline did not match")
    elif not software.applies_to(hw.matched.version):
        sw = SoftwareResult(
            status="not-applicable",
            reason=f"the software baseline is for vehicle hardware "
                   f"{', '.join(sorted(software.hardware_versions))}, not {hw.matched.version}")
    else:
        sw = match_software(software, readings)
    return MatchReport(hardware=hw, software=sw, readings=dict(readings))
