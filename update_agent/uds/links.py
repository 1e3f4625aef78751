"""Open UDS sessions to the ECUs of a vehicle config, one CAN link per bus.

Sessions may be opened from several threads at once (a version read opens each ECU's in its
own worker); a bus's link is still opened once. The functional sender a session needs only for
TesterPresent (a flash) is built on its first use, not for every version read.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

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
        self._lock = threading.Lock()

    def link(self, bus: str) -> CanLink:
        with self._lock:
            if bus not in self._links:
                self._links[bus] = CanLink(self.vehicle.buses[bus], notifier_timeout=SHORT_NOTIFIER_TIMEOUT)
            return self._links[bus]

    def session(self, ecu: EcuConfig) -> UdsClientSession:
        link = self.link(ecu.bus)
        conn = open_connection(ecu, link, stack_factory=self._stack_factory)
        functional = None
        if ecu.isotp.functional_id is not None or ecu.isotp.addressing in PREFIX_MODES:
            functional = _lazy_functional(ecu, link)
        session = UdsClientSession(ecu, conn, functional=functional)
        with self._lock:
            self._sessions.append(session)
        return session

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
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


def _lazy_functional(ecu: EcuConfig, link: CanLink) -> Callable[[bytes], None]:
    """``FunctionalSender(ecu, ...).send``, the sender built on the first request."""
    sender: FunctionalSender | None = None
    lock = threading.Lock()

    def send(payload: bytes) -> None:
        nonlocal sender
        with lock:
            if sender is None:
                sender = FunctionalSender(ecu, link.send, link.config)
        sender.send(payload)
    return send
