"""Functionally addressed UDS requests to every ECU of a bus: OTA mode and the session keep-alive.

Before flashing, a tester puts the whole bus quiet: CommunicationControl
(0x28) disableRxAndTx of normal messages and ControlDTCSetting (0x85) off,
sent once to the functional address so every ECU hears them, with the
suppressPosRspMsgIndicationBit set (nobody answers; ISO 14229-1 also has
servers stay silent on most NRCs to functional requests). Both services are
allowed only outside the default session, so each is preceded by a
functional DiagnosticSessionControl extended (0x10 0x83), and the session is
then held by TesterPresent 0x3E 0x80 until OTA mode ends. Because nothing
answers, the tester gives the ECUs their P2 (the largest configured
``timing.p2``) between the session change and the request; every bus gets
each request at once, so that wait is taken once, not once per bus. The links
only send (no receive thread), so opening and closing them costs next to nothing.

The functional address is an ECU setting (``isotp.functional_id``, or the
29-bit prefix modes' target address); a bus's requests go once to each
distinct functional address among its ECUs. The frames are encoded by
can-isotp through :class:`~update_agent.uds.transport.FunctionalSender`, the
same encoder the flash sessions use for their keep-alive.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

from agent.config.vehicle import PREFIX_MODES, BusConfig, EcuConfig, VehicleConfig
from agent.errors import ConfigurationError

if TYPE_CHECKING:  # python-can, can-isotp and udsoncan load with the first request sent (idle RSS)
    import can

    from update_agent.uds.transport import FunctionalSender

log = logging.getLogger(__name__)

EXTENDED_SESSION_SILENT = bytes([0x10, 0x83])
#: request name -> the payloads sent, in order (0x80: suppressPosRspMsgIndicationBit)
REQUESTS: dict[str, tuple[bytes, ...]] = {
    "communication_control_disable": (EXTENDED_SESSION_SILENT, bytes([0x28, 0x83, 0x01])),
    "communication_control_enable": (EXTENDED_SESSION_SILENT, bytes([0x28, 0x80, 0x01])),
    "dtc_setting_off": (EXTENDED_SESSION_SILENT, bytes([0x85, 0x82])),
    "dtc_setting_on": (EXTENDED_SESSION_SILENT, bytes([0x85, 0x81])),
    "tester_present": (bytes([0x3E, 0x80]),),
}


class FrameLink(Protocol):
    """What the requests need of a bus: its config and a frame sender (a :class:`CanLink`)."""

    config: BusConfig

    def send(self, message: can.Message) -> None: ...

    def __enter__(self) -> FrameLink: ...

    def __exit__(self, *exc: object) -> None: ...


def payloads(request: str) -> tuple[bytes, ...]:
    try:
        return REQUESTS[request]
    except KeyError:
        raise ConfigurationError(f"unknown functional request {request!r} (known: {', '.join(REQUESTS)})") \
            from None


def changes_session(request: str) -> bool:
    """Whether the request switches sessions (and so must not interleave with a flash on the bus)."""
    return EXTENDED_SESSION_SILENT in payloads(request)


def functional_targets(vehicle: VehicleConfig, bus: str) -> list[EcuConfig]:
    """One ECU per distinct functional address on ``bus`` (its encoder serves them all)."""
    if bus not in vehicle.buses:
        raise ConfigurationError(f"unknown bus {bus!r} (buses: {', '.join(vehicle.buses)})",
                                 source=vehicle.source, key="buses")
    seen: dict[tuple[object, ...], EcuConfig] = {}
    for ecu in vehicle.ecus.values():
        if ecu.bus != bus:
            continue
        cfg = ecu.isotp
        if cfg.addressing in PREFIX_MODES:
            key: tuple[object, ...] = (cfg.addressing, cfg.functional_id, cfg.target_address, cfg.address_extension)
        elif cfg.functional_id is not None:
            key = (cfg.addressing, cfg.functional_id, cfg.target_address, cfg.address_extension)
        else:
            continue
        seen.setdefault(key, ecu)
    if not seen:
        raise ConfigurationError(f"bus {bus!r}: no ECU on it has a functional address (isotp.functional_id)",
                                 source=vehicle.source, key="ecus")
    return list(seen.values())


def functional_buses(vehicle: VehicleConfig) -> list[str]:
    """The buses with at least one functionally addressable ECU (what "every bus" means)."""
    buses = [bus for bus in vehicle.buses
             if any(e.bus == bus and (e.isotp.functional_id is not None or e.isotp.addressing in PREFIX_MODES)
                    for e in vehicle.ecus.values())]
    if not buses:
        raise ConfigurationError("no ECU of the vehicle has a functional address (isotp.functional_id)",
                                 source=vehicle.source, key="ecus")
    return buses


def send_functional(vehicle: VehicleConfig, request: str, buses: Iterable[str], *,
                    link_factory: Callable[[BusConfig], FrameLink] | None = None,
                    sleep: Callable[[float], None] = time.sleep) -> list[str]:
    """Send ``request`` functionally on every bus at once; returns the hex of every request sent
    (per payload, once per bus).

    All buses are opened first, each payload goes out on every bus, and the P2 wait after the
    silent session change is taken once for all of them (the largest P2 of every target), not
    bus after bus: the ECUs of every bus get at least their P2 between the two requests.
    ``link_factory``: a :class:`~update_agent.uds.transport.CanLink` per bus unless given.
    """
    from update_agent.uds.transport import CanLink, FunctionalSender

    sent: list[str] = []
    plan = [(bus, functional_targets(vehicle, bus)) for bus in buses]  # refuse bad input before any I/O
    wanted = payloads(request)
    p2 = max((t.timing.p2 for _bus, targets in plan for t in targets), default=0.0)
    with contextlib.ExitStack() as stack:
        senders: list[tuple[str, list[FunctionalSender]]] = []
        for bus, targets in plan:
            link = stack.enter_context((link_factory or CanLink)(vehicle.buses[bus]))
            senders.append((bus, [FunctionalSender(ecu, link.send, link.config) for ecu in targets]))
        for i, payload in enumerate(wanted):
            if i:
                sleep(p2)  # no answer comes: give the ECUs their P2 to take the previous request
            for _bus, on_bus in senders:
                for sender in on_bus:
                    sender.send(payload)
                sent.append(payload.hex())
    for bus, targets in plan:
        log.info("bus %s: functional %s sent to %d address(es)", bus, request, len(targets))
    return sent
