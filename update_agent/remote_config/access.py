"""The ECU access of a configuration change over the real stack: UDS sessions and CAN links.

Diagnostic writes use the same udsoncan sessions as the flasher
(:class:`update_agent.uds.links.VehicleLinks`): DiagnosticSessionControl to the
item's session, SecurityAccess with the ECU's seed/key algorithm, then
WriteDataByIdentifier, and back to the default session. Reads
(ReadDataByIdentifier) run in whatever session the ECU is in. A broadcast frame
goes out once on every bus that carries an ECU of the item, through the same
:class:`~update_agent.uds.transport.CanLink` as that bus's sessions, so it
reaches each ECU before the read-back requests that follow it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import cantools

from agent.config.vehicle import EcuConfig, VehicleConfig
from agent.errors import ConfigurationError, OtaError
from update_agent.remote_config.broadcast import FrameSpec, frame_spec
from update_agent.remote_config.codec import ConfigValueError
from update_agent.remote_config.items import SESSIONS, Catalog, ConfigItem
from update_agent.uds.api import UdsSession
from update_agent.uds.links import VehicleLinks
from update_agent.versions import decode_did

log = logging.getLogger(__name__)


def unlock(session: UdsSession, ecu: EcuConfig, level: int) -> None:
    """SecurityAccess at ``level`` with the ECU's configured algorithm (a zero seed: already unlocked)."""
    seed = session.request_seed(level)
    if not any(seed):
        return
    algorithm = ecu.security.load()
    try:
        key = bytes(algorithm(seed, level, dict(ecu.security.params)))
    except Exception as e:  # an OEM algorithm failing is a configuration problem, say which
        raise ConfigurationError(f"seed/key algorithm {ecu.security.algorithm} failed: {e}") from e
    session.send_key(level + 1, key)


class VehicleAccess:
    """:class:`~update_agent.remote_config.change.EcuAccess` over a vehicle's buses; close when done."""

    def __init__(self, vehicle: VehicleConfig, catalog: Catalog, *,
                 links_factory: Callable[[VehicleConfig], VehicleLinks] = VehicleLinks) -> None:
        self.vehicle = vehicle
        self.catalog = catalog
        self.links = links_factory(vehicle)
        self._sessions: dict[str, UdsSession] = {}
        self._frames: dict[str, FrameSpec] = {}

    def session(self, ecu: str) -> UdsSession:
        if ecu not in self._sessions:
            self._sessions[ecu] = self.links.session(self.vehicle.ecu(ecu))
        return self._sessions[ecu]

    def software_version(self, ecu: str) -> str:
        did = self.vehicle.ecu(ecu).version_dids.get("software_version", 0xF189)
        return decode_did(self.session(ecu).read_did(did))

    def read(self, item: ConfigItem, ecu: str) -> bytes:
        return self.session(ecu).read_did(item.did)

    def write(self, item: ConfigItem, ecu: str, data: bytes) -> None:
        config = self.vehicle.ecu(ecu)
        session = self.session(ecu)
        if item.session != SESSIONS["default"]:
            session.change_session(item.session)
        try:
            if item.security_level is not None:
                unlock(session, config, item.security_level or config.security.level)
            session.write_did(item.did, data)
            log.info("%s: %s written (DID %#06x = %s)", ecu, item.name, item.did, data.hex())
        finally:
            if item.session != SESSIONS["default"]:
                try:  # back to the default session (S3 would take it there too); never hide the write's error
                    session.change_session(SESSIONS["default"])
                except OtaError as e:
                    log.warning("%s: back to the default session failed: %s", ecu, e)

    def broadcast(self, item: ConfigItem, data: bytes) -> None:
        if item.name not in self._frames:
            self._frames[item.name] = frame_spec(self.catalog, item)
        spec = self._frames[item.name]
        try:
            frame = spec.frame(item.encoding.to_int(data))
        except (cantools.database.EncodeError, ValueError) as e:
            raise ConfigValueError(f"{item.name}: signal {spec.signal} cannot carry {data.hex()}: {e}",
                                   source=self.catalog.source) from e
        for bus in dict.fromkeys(self.vehicle.ecu(e).bus for e in item.ecus):
            self.links.link(bus).send(frame)
        log.info("%s: broadcast %s = %s on %s", item.name, spec.message.name, data.hex(),
                 ", ".join(sorted({self.vehicle.ecu(e).bus for e in item.ecus})))

    def close(self) -> None:
        self.links.close()
        self._sessions.clear()

    def __enter__(self) -> VehicleAccess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_value(access: VehicleAccess, item: ConfigItem, ecu: str) -> dict[str, Any]:
    """One ECU's value of one item, as ``otactl config get`` and ``update_agent.config.get`` report it."""
    try:
        data = access.read(item, ecu)
    except OtaError as e:
        return {"item": item.name, "ecu": ecu, "value": None, "raw": None, "error": str(e)}
    return {"item": item.name, "ecu": ecu, "value": item.encoding.decode(data), "raw": data.hex(), "error": None}
