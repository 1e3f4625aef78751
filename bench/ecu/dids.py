"""The data identifiers a simulated ECU serves, and who may write them.

Standard identification DIDs (ISO 14229-1 annex C) always answer; the ECU
config's ``version_dids`` may map the same values to other DIDs (an OEM that
reads the software version from 0xF195, say); ``sim.config_dids`` adds
configuration DIDs. What a DID answers is looked up by the server at read
time (the software version depends on the booted image).
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.config.vehicle import EcuConfig
from agent.errors import ConfigurationError
from bench.ecu.simconfig import SimConfig

#: value kinds; a configuration DID's kind is ``config``
PART_NUMBER = "part_number"
SOFTWARE_VERSION = "software_version"
HARDWARE_VERSION = "hardware_version"
SERIAL_NUMBER = "serial_number"
VIN = "vin"
BOOT_SOFTWARE = "boot_software"
ACTIVE_SESSION = "active_session"
FINGERPRINT = "fingerprint"
CONFIG = "config"

STANDARD_DIDS = {
    0xF187: PART_NUMBER,  # vehicleManufacturerSparePartNumber
    0xF189: SOFTWARE_VERSION,  # vehicleManufacturerECUSoftwareVersionNumber
    0xF191: HARDWARE_VERSION,  # vehicleManufacturerECUHardwareNumber
    0xF18C: SERIAL_NUMBER,  # ECUSerialNumber
    0xF190: VIN,  # VIN
    0xF180: BOOT_SOFTWARE,  # bootSoftwareIdentification
    0xF186: ACTIVE_SESSION,  # activeDiagnosticSession
    0xF15A: FINGERPRINT,  # fingerprint (OEM usage: programming date + tester serial)
}
FINGERPRINT_LENGTH = 9


@dataclass(frozen=True)
class DidSpec:
    did: int
    kind: str
    #: configuration DID name (kind ``config``)
    name: str = ""
    #: exact length a write must have; None: read-only
    write_size: int | None = None


def build_did_table(ecu: EcuConfig, sim: SimConfig) -> dict[int, DidSpec]:
    table: dict[int, DidSpec] = {}
    for did, kind in STANDARD_DIDS.items():
        table[did] = DidSpec(did, kind, write_size=FINGERPRINT_LENGTH if kind == FINGERPRINT else None)
    by_name: dict[str, DidSpec] = {}
    for cd in sim.config_dids:
        spec = DidSpec(cd.did, CONFIG, name=cd.name, write_size=cd.size)
        table[cd.did] = spec
        by_name[cd.name] = spec
    kinds = set(STANDARD_DIDS.values())
    for name, did in ecu.version_dids.items():
        if name in kinds:
            spec = DidSpec(did, name, write_size=FINGERPRINT_LENGTH if name == FINGERPRINT else None)
        elif name in by_name:
            spec = by_name[name]
        else:
            raise ConfigurationError(
                f"the simulator has no value for version DID {name!r}: use one of "
                f"{', '.join(sorted(kinds))} or declare it in sim.config_dids",
                key=f"ecus.{ecu.name}.version_dids.{name}")
        existing = table.get(did)
        if existing is not None and (existing.kind, existing.name) != (spec.kind, spec.name):
            raise ConfigurationError(
                f"DID {did:#06x} already answers {existing.name or existing.kind}",
                key=f"ecus.{ecu.name}.version_dids.{name}")
        table[did] = DidSpec(did, spec.kind, spec.name, spec.write_size)
    return table


def valid_fingerprint(data: bytes) -> bool:
    """9 bytes: programming date YYMMDD in BCD, then 6 bytes of tester serial number."""
    if len(data) != FINGERPRINT_LENGTH:
        return False
    digits = []
    for byte in data[:3]:
        hi, lo = byte >> 4, byte & 0x0F
        if hi > 9 or lo > 9:
            return False
        digits.append(hi * 10 + lo)
    _, month, day = digits
    return 1 <= month <= 12 and 1 <= day <= 31
