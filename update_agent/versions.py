"""ECU versions over UDS: the version DIDs of every configured ECU.

Each ECU is read in its default session with ReadDataByIdentifier, one DID
per request (an ECU may refuse one DID and answer the others). An ECU that
does not answer within its own ``timing.request_timeout`` - or whose bus
cannot be opened - is marked *not answering* and the read goes on with the
others: one dead ECU must not hide the versions of the rest of the car.
ECUs are read in parallel, each opening its own session in its worker (the buses' links are
shared), so a dead ECU costs one timeout, not one per ECU.
"""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from agent.config.vehicle import EcuConfig, VehicleConfig
from agent.errors import NegativeResponseError, OtaError, OtaTimeoutError
from update_agent.uds.api import UdsSession
from update_agent.uds.links import VehicleLinks
from update_agent.version_reading import VersionReading

_PRINTABLE = set(string.printable) - set("\t\n\r\x0b\x0c")


@dataclass
class EcuVersions:
    ecu: str
    bus: str
    answering: bool = True
    #: DID name -> value (ASCII text, or hex when the value is not text)
    values: dict[str, str] = field(default_factory=dict)
    raw: dict[str, str] = field(default_factory=dict)
    #: DID name -> why it could not be read (e.g. NRC 0x31 requestOutOfRange)
    errors: dict[str, str] = field(default_factory=dict)
    #: why the ECU counts as not answering
    error: str | None = None

    def to_reading(self, read_at: float) -> VersionReading:
        """This read as a :class:`~update_agent.version_reading.VersionReading` (source ``uds``)."""
        if not self.answering:
            return VersionReading.not_answering(self.ecu, "uds", read_at, self.error or "not answering")
        detail = "; ".join(f"{name}: {why}" for name, why in self.errors.items()) or None
        return VersionReading(ecu=self.ecu, source="uds", read_at=read_at, answered=True,
                              hardware_version=self.values.get("hardware_version"),
                              software_version=self.values.get("software_version"),
                              part_number=self.values.get("part_number"),
                              serial_number=self.values.get("serial_number"), detail=detail)

    def to_dict(self) -> dict[str, Any]:
        return {"ecu": self.ecu, "bus": self.bus, "answering": self.answering, "values": self.values,
                "raw": self.raw, "errors": self.errors, "error": self.error}


def decode_did(data: bytes) -> str:
    """ASCII text without its NUL / space padding, else the bytes as hex."""
    text = data.rstrip(b"\x00 ").decode("ascii", "replace")
    if data and all(c in _PRINTABLE for c in text):
        return text
    return data.hex()


def read_ecu_versions(session: UdsSession, ecu: EcuConfig, names: Iterable[str] | None = None) -> EcuVersions:
    """Read every version DID of ``ecu`` (or only the ``names`` of them it has) through ``session``;
    no answer at all marks it not answering."""
    found = EcuVersions(ecu=ecu.name, bus=ecu.bus)
    answered = False
    wanted = None if names is None else set(names)
    for name, did in ecu.version_dids.items():
        if wanted is not None and name not in wanted:
            continue
        try:
            data = session.read_did(did)
        except NegativeResponseError as e:
            answered = True
            found.errors[name] = f"DID {did:04X}: {e}"
            continue
        except OtaTimeoutError as e:
            if not answered:  # the first request went unanswered: do not wait once per DID
                found.answering = False
                found.error = str(e)
                return found
            found.errors[name] = f"DID {did:04X}: {e}"
            continue
        answered = True
        found.values[name] = decode_did(data)
        found.raw[name] = data.hex()
    return found


def select_ecus(vehicle: VehicleConfig, names: Iterable[str] | None) -> list[EcuConfig]:
    if not names:
        return list(vehicle.ecus.values())
    return [vehicle.ecu(name) for name in names]


def read_versions(vehicle: VehicleConfig, names: Iterable[str] | None = None, *,
                  timeout: float | None = None,
                  links_factory: Callable[[VehicleConfig], VehicleLinks] = VehicleLinks,
                  ) -> list[EcuVersions]:
    """Versions of the named ECUs (all when ``names`` is empty), in config order.

    ``timeout`` overrides each ECU's ``timing.request_timeout`` for this read.
    """
    ecus = select_ecus(vehicle, names)
    if timeout is not None:
        ecus = [dataclasses.replace(e, timing=dataclasses.replace(e.timing, request_timeout=timeout))
                for e in ecus]
    with links_factory(vehicle) as links:
        def one(ecu: EcuConfig) -> EcuVersions:
            try:
                session = links.session(ecu)
            except OtaError as e:
                return EcuVersions(ecu=ecu.name, bus=ecu.bus, answering=False, error=str(e))
            return read_ecu_versions(session, ecu)

        with ThreadPoolExecutor(max_workers=max(1, len(ecus)), thread_name_prefix="versions") as pool:
            return list(pool.map(one, ecus))
