"""Functionally addressed UDS requests to every ECU of a bus: OTA mode and the session keep-alive.

Before flashing, a tester puts the whole bus quiet: CommunicationControl
(0x28) disableRxAndTx of normal messages and ControlDTCSetting (0x85) off,
sent once to the functional address so every ECU hears them. Both services
are allowed only outside the default session, so each is preceded by a
functional DiagnosticSessionControl extended (0x10 0x03), and the session is
then held by TesterPresent 0x3E 0x80 until OTA mode ends.

The session change, 0x28 and 0x85 go *without* the suppressPosRspMsgIndicationBit,
so every ECU answers on its physical response id, and the next request leaves
as soon as every ECU expected to hear the functional address has answered
(:class:`Awaited`): no blind P2 wait. An ECU that stays silent is given its own
``timing.p2`` (``timing.p2_star`` from each NRC 0x78 responsePending on), then
recorded as ``no_answer`` and the requests go on; an NRC is recorded with its
name. Nothing here fails on an answer: :class:`FunctionalResult` lists every
ECU's :class:`EcuAnswer` and the caller decides (the system agent refuses OTA
mode when an ECU refuses to go quiet, see :mod:`system_agent.ota_mode`). The
positive answer to 0x10 carries the server's P2 / P2*: the configured timing
stays the tester's (it is what the OEM specified for the ECU).

Every bus gets each request at once and the answers of all buses are awaited
together, through one queue fed by each bus's notifier (acceptance filters: only
the expected response ids). The answers are decoded by can-isotp, one
:class:`~update_agent.uds.transport.ResponseReceiver` per ECU, since the ECUs of
a bus answer interleaved. TesterPresent (0x3E 0x80) stays suppressed and
send-only: its links open no receive thread.

The functional address is an ECU setting (``isotp.functional_id``, or the
29-bit prefix modes' target address); a bus's requests go once to each
distinct functional address among its ECUs, and every ECU of the bus with
that address is expected to answer. The frames are encoded by can-isotp
through :class:`~update_agent.uds.transport.FunctionalSender`, the same
encoder the flash sessions use for their keep-alive. The clock is injected
(``clock``): deadlines are computed on it, so a test decides when P2 has passed.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from agent.config.vehicle import PREFIX_MODES, BusConfig, EcuConfig, VehicleConfig
from agent.errors import ConfigurationError

if TYPE_CHECKING:  # python-can, can-isotp and udsoncan load with the first request sent (idle RSS)
    import can

    from update_agent.uds.transport import FunctionalSender, ResponseReceiver

log = logging.getLogger(__name__)

EXTENDED_SESSION = bytes([0x10, 0x03])
SESSION_CONTROL = 0x10
#: services whose second byte is a sub-function carrying the suppressPosRspMsgIndicationBit (0x80)
_SUBFUNCTION_SERVICES = frozenset({0x10, 0x11, 0x27, 0x28, 0x31, 0x3E, 0x85})
#: request name -> the payloads sent, in order
REQUESTS: dict[str, tuple[bytes, ...]] = {
    "communication_control_disable": (EXTENDED_SESSION, bytes([0x28, 0x03, 0x01])),
    "communication_control_enable": (EXTENDED_SESSION, bytes([0x28, 0x00, 0x01])),
    "dtc_setting_off": (EXTENDED_SESSION, bytes([0x85, 0x02])),
    "dtc_setting_on": (EXTENDED_SESSION, bytes([0x85, 0x01])),
    "tester_present": (bytes([0x3E, 0x80]),),
}
#: s a receiving link's notifier blocks in one read on a bus without a file descriptor (closing the link
#: waits up to this for its thread; see :mod:`update_agent.uds.canlink`): the links live for one request
RECEIVE_POLL = 0.005

POSITIVE, NEGATIVE, NO_ANSWER = "positive", "negative", "no_answer"


class Listening(Protocol):
    """A bus's receive side (:class:`can.Notifier`): calls each listener with every frame received."""

    def add_listener(self, listener: Callable[[can.Message], None]) -> None: ...


class FrameLink(Protocol):
    """What the requests need of a bus (a :class:`CanLink`): its config, a frame sender, and for
    the requests answered, its notifier (the receive thread, started on first use)."""

    config: BusConfig

    @property
    def notifier(self) -> Listening: ...

    def send(self, message: can.Message) -> None: ...

    def __enter__(self) -> FrameLink: ...

    def __exit__(self, *exc: object) -> None: ...


#: opens a bus; the filters (python-can ``can_filters``) are the response ids awaited, None: send-only
LinkFactory = Callable[[BusConfig, "list[dict[str, Any]] | None"], FrameLink]


@dataclass(frozen=True)
class EcuAnswer:
    """How one ECU answered one functional payload."""

    bus: str
    ecu: str
    request: str  # hex of the payload
    outcome: str  # POSITIVE, NEGATIVE or NO_ANSWER
    nrc: int | None = None
    #: s from the request to the final answer, or to giving up (on the injected clock)
    waited: float = 0.0

    def describe(self) -> str:
        from update_agent.uds.nrc import describe_nrc, service_name  # udsoncan: not loaded by an idle daemon

        what = f"{self.ecu} (bus {self.bus}): {service_name(int(self.request[:2], 16))} {self.request}"
        if self.outcome == NEGATIVE and self.nrc is not None:
            return f"{what} refused: {describe_nrc(self.nrc)}"
        if self.outcome == NO_ANSWER:
            return f"{what}: no answer within {self.waited:.3f} s"
        return f"{what}: positive answer"

    def to_json(self) -> dict[str, Any]:
        from update_agent.uds.nrc import nrc_name

        return {"bus": self.bus, "ecu": self.ecu, "request": self.request, "outcome": self.outcome,
                "nrc": self.nrc, "nrc_name": None if self.nrc is None else nrc_name(self.nrc),
                "waited_s": round(self.waited, 6)}


@dataclass
class FunctionalResult:
    request: str
    #: the hex of every payload sent (once per bus)
    sent: list[str] = field(default_factory=list)
    #: every expected ECU's answer to every answered payload, in order
    answers: list[EcuAnswer] = field(default_factory=list)

    @property
    def problems(self) -> list[EcuAnswer]:
        """The answers that are not positive (an NRC, or none)."""
        return [a for a in self.answers if a.outcome != POSITIVE]


class Awaited:
    """One ECU's answer to one functional payload, awaited until its P2 (P2* after each NRC 0x78)."""

    def __init__(self, bus: str, ecu: EcuConfig, payload: bytes, sent_at: float) -> None:
        self.bus = bus
        self.ecu = ecu
        self.payload = payload
        self.sent_at = sent_at
        self.deadline = sent_at + ecu.timing.p2

    def _answer(self, outcome: str, now: float, nrc: int | None = None) -> EcuAnswer:
        return EcuAnswer(self.bus, self.ecu.name, self.payload.hex(), outcome, nrc, now - self.sent_at)

    def take(self, response: bytes, now: float) -> EcuAnswer | None:
        """The final answer ``response`` gives, or None (responsePending, or not an answer to this request:
        a late one to an earlier request)."""
        from update_agent.uds.nrc import RESPONSE_PENDING

        sid = self.payload[0]
        if response[:1] == bytes([sid + 0x40]):
            return self._answer(POSITIVE, now)
        if len(response) >= 3 and response[0] == 0x7F and response[1] == sid:
            if response[2] == RESPONSE_PENDING:
                self.deadline = now + self.ecu.timing.p2_star
                return None
            return self._answer(NEGATIVE, now, response[2])
        log.debug("%s: %s ignored while awaiting the answer to %s", self.ecu.name, response[:3].hex(),
                  self.payload.hex())
        return None

    def expire(self, now: float) -> EcuAnswer | None:
        """NO_ANSWER once the deadline has passed, else None."""
        return self._answer(NO_ANSWER, now) if now >= self.deadline else None


def payloads(request: str) -> tuple[bytes, ...]:
    try:
        return REQUESTS[request]
    except KeyError:
        raise ConfigurationError(f"unknown functional request {request!r} (known: {', '.join(REQUESTS)})") \
            from None


def changes_session(request: str) -> bool:
    """Whether the request switches sessions (and so must not interleave with a flash on the bus)."""
    return any(p[0] == SESSION_CONTROL for p in payloads(request))


def answered(payload: bytes) -> bool:
    """Whether the ECUs answer ``payload`` (its suppressPosRspMsgIndicationBit is not set)."""
    return not (payload[0] in _SUBFUNCTION_SERVICES and len(payload) >= 2 and payload[1] & 0x80)


def _functional_key(ecu: EcuConfig) -> tuple[object, ...] | None:
    cfg = ecu.isotp
    if cfg.addressing not in PREFIX_MODES and cfg.functional_id is None:
        return None
    return (cfg.addressing, cfg.functional_id, cfg.target_address, cfg.address_extension)


def functional_groups(vehicle: VehicleConfig, bus: str) -> list[list[EcuConfig]]:
    """The ECUs of ``bus`` per distinct functional address (each group hears one functional frame)."""
    if bus not in vehicle.buses:
        raise ConfigurationError(f"unknown bus {bus!r} (buses: {', '.join(vehicle.buses)})",
                                 source=vehicle.source, key="buses")
    groups: dict[tuple[object, ...], list[EcuConfig]] = {}
    for ecu in vehicle.ecus.values():
        key = _functional_key(ecu) if ecu.bus == bus else None
        if key is not None:
            groups.setdefault(key, []).append(ecu)
    if not groups:
        raise ConfigurationError(f"bus {bus!r}: no ECU on it has a functional address (isotp.functional_id)",
                                 source=vehicle.source, key="ecus")
    return list(groups.values())


def functional_targets(vehicle: VehicleConfig, bus: str) -> list[EcuConfig]:
    """One ECU per distinct functional address on ``bus`` (its encoder serves them all)."""
    return [group[0] for group in functional_groups(vehicle, bus)]


def functional_buses(vehicle: VehicleConfig) -> list[str]:
    """The buses with at least one functionally addressable ECU (what "every bus" means)."""
    buses = [bus for bus in vehicle.buses
             if any(e.bus == bus and _functional_key(e) is not None for e in vehicle.ecus.values())]
    if not buses:
        raise ConfigurationError("no ECU of the vehicle has a functional address (isotp.functional_id)",
                                 source=vehicle.source, key="ecus")
    return buses


def _open_link(bus: BusConfig, can_filters: list[dict[str, Any]] | None) -> FrameLink:
    from update_agent.uds.transport import CanLink

    return CanLink(bus, notifier_timeout=RECEIVE_POLL, can_filters=can_filters)  # type: ignore[arg-type]


class _Inbox:
    """A python-can listener putting every frame of one bus in the shared queue, tagged with the bus."""

    def __init__(self, bus: str, frames: queue.SimpleQueue[tuple[str, can.Message]]) -> None:
        self.bus = bus
        self.frames = frames

    def __call__(self, msg: can.Message) -> None:
        self.frames.put((self.bus, msg))


@dataclass
class _Bus:
    name: str
    link: FrameLink
    senders: list[FunctionalSender]
    #: (arbitration id, extended) -> the receivers of the ECUs answering on that id
    receivers: dict[tuple[int, bool], list[ResponseReceiver]]


def send_functional(vehicle: VehicleConfig, request: str, buses: Iterable[str], *,
                    link_factory: LinkFactory | None = None,
                    clock: Callable[[], float] = time.monotonic) -> FunctionalResult:
    """Send ``request`` functionally on every bus at once and collect the answers (see the module doc).

    Each payload goes out on every bus; the next one leaves when every expected ECU of every bus
    has answered the previous one or has passed its deadline. ``link_factory``: a
    :class:`~update_agent.uds.transport.CanLink` per bus unless given.
    """
    from update_agent.uds.transport import FunctionalSender, ResponseReceiver, response_key

    plan = [(bus, functional_groups(vehicle, bus)) for bus in buses]  # refuse bad input before any I/O
    wanted = payloads(request)
    listen = any(answered(p) for p in wanted)
    result = FunctionalResult(request)
    frames: queue.SimpleQueue[tuple[str, can.Message]] = queue.SimpleQueue()
    with contextlib.ExitStack() as stack:
        opened: list[_Bus] = []
        for bus, groups in plan:
            cfg = vehicle.buses[bus]
            ecus = [ecu for group in groups for ecu in group]
            receivers: dict[tuple[int, bool], list[ResponseReceiver]] = {}
            filters: list[dict[str, Any]] | None = None
            if listen:  # the hub (or the CAN controller) passes only the awaited answers
                keys = dict.fromkeys(response_key(ecu.isotp) for ecu in ecus)
                filters = [{"can_id": can_id, "can_mask": 0x1FFFFFFF if ext else 0x7FF, "extended": ext}
                           for can_id, ext in keys]
            link = stack.enter_context((link_factory or _open_link)(cfg, filters))
            if listen:
                for ecu in ecus:
                    receiver = ResponseReceiver(ecu, link.send, cfg)
                    receivers.setdefault(receiver.rx_key, []).append(receiver)
                link.notifier.add_listener(_Inbox(bus, frames))
            opened.append(_Bus(bus, link, [FunctionalSender(g[0], link.send, cfg) for g in groups], receivers))
        for payload in wanted:
            for b in opened:
                for sender in b.senders:
                    sender.send(payload)
                result.sent.append(payload.hex())
            if answered(payload):
                result.answers += _collect(payload, opened, frames, clock)
    for answer in result.problems:
        log.warning("functional %s: %s", request, answer.describe())
    for bus, groups in plan:
        log.info("bus %s: functional %s sent to %d address(es)", bus, request, len(groups))
    return result


def _collect(payload: bytes, buses: list[_Bus], frames: queue.SimpleQueue[tuple[str, can.Message]],
             clock: Callable[[], float]) -> list[EcuAnswer]:
    """Await every expected ECU's final answer to ``payload`` (or its deadline); in ECU order."""
    sent_at = clock()
    waiting = {(b.name, r.ecu.name): Awaited(b.name, r.ecu, payload, sent_at)
               for b in buses for on_id in b.receivers.values() for r in on_id}
    order = list(waiting)
    routes = {b.name: b.receivers for b in buses}
    answers: dict[tuple[str, str], EcuAnswer] = {}
    item: tuple[str, can.Message] | None = None
    while waiting:
        while item is not None:  # every frame already received counts before a deadline is checked
            bus, msg = item
            for receiver in routes[bus].get((msg.arbitration_id, msg.is_extended_id), ()):
                key = (bus, receiver.ecu.name)
                for response in receiver.feed(msg):
                    awaited = waiting.get(key)
                    final = awaited.take(response, clock()) if awaited is not None else None
                    if final is not None:
                        answers[key] = final
                        del waiting[key]
            try:
                item = frames.get_nowait()
            except queue.Empty:
                item = None
        now = clock()
        for key, awaited in list(waiting.items()):
            final = awaited.expire(now)
            if final is not None:
                answers[key] = final
                del waiting[key]
        if waiting:  # sleep until the next frame, or the nearest deadline
            with contextlib.suppress(queue.Empty):
                item = frames.get(timeout=max(0.0, min(a.deadline for a in waiting.values()) - now))
    return [answers[key] for key in order]
