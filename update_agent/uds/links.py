"""Open UDS sessions to the ECUs of a vehicle config, one CAN link per bus."""

from __future__ import annotations

from agent.config.vehicle import PREFIX_MODES, EcuConfig, VehicleConfig
from update_agent.uds.client import UdsClientSession
from update_agent.uds.transport import (
    SHORT_NOTIFIER_TIMEOUT,
    CanLink,
    FunctionalSender,
    StackFactory,
    open_connection,
)


class VehicleLinks:
    """Opens each bus once, on first use, and every session on it; closes them all on exit."""

    def __init__(self, vehicle: VehicleConfig, *, stack_factory: StackFactory | None = None) -> None:
        self.vehicle = vehicle
        self._stack_factory = stack_factory
        self._links: dict[str, CanLink] = {}
        self._sessions: list[UdsClientSession] = []

    def link(self, bus: str) -> CanLink:
        if bus not in self._links:
            self._links[bus] = CanLink(self.vehicle.buses[bus], notifier_timeout=SHORT_NOTIFIER_TIMEOUT)
        return self._links[bus]

    def session(self, ecu: EcuConfig) -> UdsClientSession:
        link = self.link(ecu.bus)
        conn = open_connection(ecu, link, stack_factory=self._stack_factory)
        functional = None
        if ecu.isotp.functional_id is not None or ecu.isotp.addressing in PREFIX_MODES:
            functional = FunctionalSender(ecu, link.send, link.config).send
        session = UdsClientSession(ecu, conn, functional=functional)
        self._sessions.append(session)
        return session

    def close(self) -> None:
        for session in self._sessions:
            session.close()
        self._sessions.clear()
        for link in self._links.values():
            link.close()
        self._links.clear()

    def __enter__(self) -> VehicleLinks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
