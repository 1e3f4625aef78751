"""Load the hardware and software baseline files into typed models.

:mod:`.xmlfile` makes the document safe and schema-valid; this module reads
it into :mod:`.model` objects and checks what an XSD 1.0 cannot say: every
vehicle version belongs to the file's model and platform, and a higher
sequence number always carries a newer vehicle version.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from lxml import etree

from agent.errors import BaselineFileError, VehicleVersionError
from update_agent import vehicle_version
from update_agent.baseline import xmlfile
from update_agent.baseline.model import (
    EcuExpectation,
    HardwareBaseline,
    SoftwareBaseline,
    VehicleHardware,
    VehicleVersionEntry,
)

HW_NS = "urn:ota-agent-stack:hardware-baseline:1"
SW_NS = "urn:ota-agent-stack:software-baseline:1"


def load_hardware_baseline(path: str | Path) -> HardwareBaseline:
    root = xmlfile.load(path, xmlfile.HARDWARE_SCHEMA)
    return hardware_from_element(root, source=str(path))


def load_software_baseline(path: str | Path) -> SoftwareBaseline:
    root = xmlfile.load(path, xmlfile.SOFTWARE_SCHEMA)
    return software_from_element(root, source=str(path))


def parse_hardware_baseline(data: bytes, *, source: str) -> HardwareBaseline:
    return hardware_from_element(xmlfile.load_bytes(data, xmlfile.HARDWARE_SCHEMA, source=source),
                                 source=source)


def parse_software_baseline(data: bytes, *, source: str) -> SoftwareBaseline:
    return software_from_element(xmlfile.load_bytes(data, xmlfile.SOFTWARE_SCHEMA, source=source),
                                 source=source)


def _q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


def _line(element: etree._Element) -> int | None:
    line: Any = element.sourceline  # lxml-stubs type it loosely
    return line if isinstance(line, int) else None


def _text(element: etree._Element | None) -> str | None:
    return None if element is None else (element.text or "")


def _ecus(parent: etree._Element, ns: str,
          seen: dict[tuple[str, str, frozenset[str]], EcuExpectation]) -> dict[str, EcuExpectation]:
    """The ``ecu`` children; identical expectations are shared between entries (a baseline
    of 1,000 vehicle versions repeats most ECUs' versions from node to node)."""
    ecus: dict[str, EcuExpectation] = {}
    for ecu in parent.iterchildren(_q(ns, "ecu")):
        ecu_id = ecu.get("id") or ""
        versions = frozenset([v.text or "" for v in ecu])  # the XSD allows only version children
        key = (ecu_id, ecu.get("name") or "", versions)
        exp = seen.get(key)
        if exp is None:
            exp = seen[key] = EcuExpectation(id=key[0], name=key[1], versions=versions, line=_line(ecu))
        ecus[ecu_id] = exp
    return ecus


def hardware_from_element(root: etree._Element, *, source: str) -> HardwareBaseline:
    seen: dict[tuple[str, str, frozenset[str]], EcuExpectation] = {}
    variants = tuple(
        VehicleHardware(
            version=vh.get("version") or "",
            ecus=_ecus(vh, HW_NS, seen),
            description=_text(vh.find(_q(HW_NS, "description"))),
            line=_line(vh),
        )
        for vh in root.iterchildren(_q(HW_NS, "vehicleHardware"))
    )
    return HardwareBaseline(source=source, vehicle_model=root.get("vehicleModel") or "", variants=variants)


def software_from_element(root: etree._Element, *, source: str) -> SoftwareBaseline:
    model = root.get("vehicleModel") or ""
    platform = root.get("platform") or ""
    seen: dict[tuple[str, str, frozenset[str]], EcuExpectation] = {}
    entries: list[VehicleVersionEntry] = []
    for vv in root.iterchildren(_q(SW_NS, "vehicleVersion")):
        line = _line(vv)
        try:
            version = vehicle_version.parse(vv.get("version") or "")
        except VehicleVersionError as e:  # the XSD pattern should have caught it already
            raise BaselineFileError(str(e), source=source, line=line, element="vehicleVersion") from e
        if (version.model, version.platform) != (model, platform):
            raise BaselineFileError(
                f"vehicle version {str(version)!r} is not of this file's vehicle model {model!r} "
                f"and platform {platform!r}", source=source, line=line, element="vehicleVersion")
        entries.append(VehicleVersionEntry(
            sequence=int(vv.get("sequence") or "0"),
            version=version,
            ecus=_ecus(vv, SW_NS, seen),
            description=_text(vv.find(_q(SW_NS, "description"))),
            line=line,
        ))
    ascending = sorted(entries, key=lambda e: e.sequence)
    for older, newer in itertools.pairwise(ascending):
        if not newer.version > older.version:
            raise BaselineFileError(
                f"sequence {newer.sequence} carries vehicle version {str(newer.version)!r}, which is "
                f"not newer than {str(older.version)!r} at sequence {older.sequence}",
                source=source, line=newer.line, element="vehicleVersion")
    return SoftwareBaseline(
        source=source,
        vehicle_model=model,
        platform=platform,
        hardware_versions=frozenset(h.text or "" for h in root.iterchildren(_q(SW_NS, "hardwareVersion"))),
        entries=tuple(reversed(ascending)),
    )


def check_pair(hardware: HardwareBaseline, software: SoftwareBaseline) -> None:
    """Refuse a software baseline written for another model or unknown hardware."""
    if software.vehicle_model != hardware.vehicle_model:
        raise BaselineFileError(
            f"software baseline is for vehicle model {software.vehicle_model!r}, the hardware "
            f"baseline ({hardware.source}) for {hardware.vehicle_model!r}",
            source=software.source, element="softwareBaseline")
    known = {v.version for v in hardware.variants}
    unknown = sorted(software.hardware_versions - known)
    if unknown:
        raise BaselineFileError(
            f"names vehicle hardware version(s) {', '.join(unknown)} that the hardware baseline "
            f"({hardware.source}) does not define", source=software.source, element="hardwareVersion")
