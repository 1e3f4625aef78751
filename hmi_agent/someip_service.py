"""The head-unit HMI service: the HMI agent's offer, consent answers and progress over SOME/IP.

In a car the driver's display is the head unit's; it reaches the HMI agent over automotive
Ethernet with SOME/IP, not over the stack's Unix-socket IPC. The service, interface version 1.0
(major 1, minor 0), default service id 0x4F48 ("OH", OTA HMI), instance 0x0001 (both
configurable: ``hmi_agent.someip``). Element ids and payloads (:mod:`agent.someip.serialization`, big-endian)::

    method accept    0x0001                              ANSWER   -> DECISION
    method postpone  0x0002                              ANSWER   -> DECISION
    method schedule  0x0003                              SCHEDULE -> DECISION   (campaign, window)
    method decline   0x0004                              ANSWER   -> DECISION
    field  offer     getter 0x0010, notifier 0x8001      OFFER      eventgroup 0x0001 (consent)
    field  progress  getter 0x0011, notifier 0x8002      PROGRESS   eventgroup 0x0002 (campaign)
    event  result    0x8003                              RESULT     eventgroup 0x0002 (campaign)

Methods go over UDP (small payloads); the fields and the event over TCP (``reliable``: the
release notes exceed a UDP message, and progress must arrive complete and in order).
``campaign_id`` "" in an answer means the one offer waiting (as ``otactl consent``). The
``offer`` field is the newest open offer (pending, postponed, scheduled), else the offer
decided last; ``campaign_id`` "" means none yet. Times are seconds since the epoch, 0: none.

A refused answer is a SOME/IP ERROR with an application return code (PRS: 0x20..0x5E are
the service's own), see :data:`APP_ERRORS`: e.g. 0x22 postpone limit reached, 0x23 a mandatory
update cannot be declined. An accepted answer goes in the audit trail as ``someip:<client IP>``.

Provider side: :class:`HeadUnitService`, a display binding of
:class:`~hmi_agent.display.DisplayModel` and an answer source of the daemon. Client side:
:func:`offer_consent`, :func:`progress_view` turn payloads back into the display's view
(``bench/headunit``, ``otactl hmi --someip``).
"""

from __future__ import annotations

import asyncio
import contextvars
import ipaddress
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.config.node import Node
from agent.errors import SomeIpError
from agent.someip.discovery import SdConfig, ServiceDiscovery
from agent.someip.interface import EventSpec, FieldSpec, MethodSpec, ServiceInterface
from agent.someip.message import Message
from agent.someip.provider import Reply, ServiceProvider
from agent.someip.sd_message import SD_MULTICAST_GROUP, SD_PORT
from agent.someip.sd_registry import Address
from agent.someip.sd_timing import SdTiming
from agent.someip.serialization import BOOL, FLOAT32, FLOAT64, UINT8, UINT16, UINT32, UINT64, Array, String, Struct
from agent.someip.transport import TcpConnection
from hmi_agent.consent import OPEN, ConsentBook, ConsentError
from hmi_agent.display import KEEP_ENDED, DisplayBinding

log = logging.getLogger(__name__)

SERVICE_ID = 0x4F48
INSTANCE_ID = 0x0001
MAJOR_VERSION = 1
MINOR_VERSION = 0
EVENTGROUP_CONSENT = 0x0001
EVENTGROUP_CAMPAIGN = 0x0002

#: the decision as a uint8 on the wire (0: no offer)
DECISIONS = ("", "pending", "postponed", "scheduled", "accepted", "declined")
#: method name -> the consent decision it asks for
METHOD_DECISION = {"accept": "accepted", "postpone": "postponed", "schedule": "scheduled", "decline": "declined"}

ANSWER = Struct(("campaign_id", String()), name="Answer")
SCHEDULE = Struct(("campaign_id", String()), ("window", String(max_length=130)), name="Schedule")
DECISION = Struct(
    ("campaign_id", String()), ("decision", UINT8), ("source", String()), ("postponements", UINT16),
    ("window", String()), ("not_before", FLOAT64),
    length_field=4, name="Decision")
OFFER = Struct(
    ("campaign_id", String()), ("from_version", String()), ("to_version", String()), ("ecus", Array(String())),
    ("size_bytes", UINT64), ("est_install_s", UINT32), ("release_notes", String()),
    ("restrictions", Array(String())), ("mandatory", BOOL), ("deadline", FLOAT64),
    ("decision", UINT8), ("source", String()), ("postponements", UINT16), ("postpone_limit", UINT16),
    ("window", String()), ("not_before", FLOAT64),
    length_field=4, name="Offer")
ECU_PROGRESS = Struct(
    ("ecu", String()),  # "": the download of every image
    ("step", String()), ("has_bytes", BOOL), ("bytes_done", UINT64), ("bytes_total", UINT64), ("percent", FLOAT32),
    length_field=2, name="EcuProgress")
PROGRESS = Struct(("campaign_id", String()), ("phase", String()), ("text", String()),
                  ("ecus", Array(ECU_PROGRESS)), length_field=4, name="Progress")
RESULT = Struct(("campaign_id", String()), ("result", String()), ("detail", String()), length_field=4, name="Result")

#: application return codes (PRS: 0x20..0x5E service-specific) -> (name, what the driver is told)
APP_ERRORS: dict[int, tuple[str, str]] = {
    0x20: ("E_NO_OFFER", "no offer is waiting for an answer"),
    0x21: ("E_ALREADY_DECIDED", "the offer was already accepted or declined; that decision is final"),
    0x22: ("E_POSTPONE_LIMIT", "the offer cannot be postponed again: the postpone limit is reached"),
    0x23: ("E_NOT_DECLINABLE", "a mandatory update cannot be declined"),
    0x24: ("E_PAST_DEADLINE", "a mandatory update past its deadline cannot be postponed or scheduled"),
    0x25: ("E_BAD_WINDOW", "the window is invalid, has passed, or opens after the deadline"),
    0x26: ("E_SEVERAL_OFFERS", "several offers wait: name the campaign"),
    0x2F: ("E_REFUSED", "the answer was refused"),
}
E_NO_OFFER, E_ALREADY_DECIDED, E_POSTPONE_LIMIT, E_NOT_DECLINABLE = 0x20, 0x21, 0x22, 0x23
E_PAST_DEADLINE, E_BAD_WINDOW, E_SEVERAL_OFFERS, E_REFUSED = 0x24, 0x25, 0x26, 0x2F


def app_error_text(code: int) -> str:
    """``E_POSTPONE_LIMIT (0x22): the offer cannot be postponed again...`` (or the standard code name)."""
    name, text = APP_ERRORS.get(code, (f"return code 0x{code:02x}", ""))
    return f"{name} (0x{code:02x})" + (f": {text}" if text else "")


def hmi_interface(service_id: int = SERVICE_ID, instance_id: int = INSTANCE_ID) -> ServiceInterface:
    return ServiceInterface(
        name="hmi", service_id=service_id, instance_id=instance_id, major_version=MAJOR_VERSION,
        minor_version=MINOR_VERSION,
        methods={"accept": MethodSpec(0x0001, ANSWER, DECISION), "postpone": MethodSpec(0x0002, ANSWER, DECISION),
                 "schedule": MethodSpec(0x0003, SCHEDULE, DECISION), "decline": MethodSpec(0x0004, ANSWER, DECISION)},
        events={"result": EventSpec(0x8003, RESULT, (EVENTGROUP_CAMPAIGN,), reliable=True)},
        fields={"offer": FieldSpec(OFFER, getter=0x0010, notifier=0x8001, eventgroups=(EVENTGROUP_CONSENT,),
                                   reliable=True),
                "progress": FieldSpec(PROGRESS, getter=0x0011, notifier=0x8002, eventgroups=(EVENTGROUP_CAMPAIGN,),
                                      reliable=True)},
    )


# -- configuration --------------------------------------------------------------------------------
@dataclass(frozen=True)
class SomeIpSettings:
    """``hmi_agent.someip``: where the HMI agent offers the head-unit service (off by default)::

        someip:
          enabled: true
          address: 127.0.0.20          # this node's IPv4 address: service endpoints and SD unicast
          service_id: 0x4F48           # and instance_id: 1
          udp_port: 0                  # 0: any free port (SD announces it); tcp_port likewise
          sd: {group: 224.224.224.245, port: 30490, multicast_interface: 127.0.0.1,
               cyclic_offer_delay: 1.0, ttl: 3}
    """

    enabled: bool = False
    address: str = "127.0.0.1"
    service_id: int = SERVICE_ID
    instance_id: int = INSTANCE_ID
    udp_port: int = 0
    tcp_port: int = 0
    sd: SdConfig = field(default_factory=SdConfig)

    @property
    def interface(self) -> ServiceInterface:
        return hmi_interface(self.service_id, self.instance_id)

    def sd_for(self, address: str) -> SdConfig:
        """The same SD group, port and timing for another node (a head unit at ``address``)."""
        return SdConfig(local_address=address, group=self.sd.group, port=self.sd.port,
                        multicast_interface=self.sd.multicast_interface, timing=self.sd.timing)


def _ipv4(node: Node, key: str, default: str) -> str:
    value = node.get(key, str, default)
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise node.error(f"expected an IPv4 address, got {value!r}", key) from None
    return value


def parse_someip(node: Node) -> SomeIpSettings:
    """Validate the ``someip`` section (every error names file and key)."""
    enabled = node.get("enabled", bool, False)
    address = _ipv4(node, "address", "127.0.0.1")
    service_id = node.integer("service_id", SERVICE_ID, minimum=0x0001, maximum=0xFFFE)
    instance_id = node.integer("instance_id", INSTANCE_ID, minimum=0x0001, maximum=0xFFFE)
    udp_port = node.integer("udp_port", 0, minimum=0, maximum=65535)
    tcp_port = node.integer("tcp_port", 0, minimum=0, maximum=65535)
    sd = node.child("sd", {})
    group = _ipv4(sd, "group", SD_MULTICAST_GROUP)
    port = sd.integer("port", SD_PORT, minimum=1, maximum=65535)
    interface = _ipv4(sd, "multicast_interface", "127.0.0.1")
    cyclic = sd.number("cyclic_offer_delay", 1.0, minimum=0.01, maximum=3600.0)
    ttl = sd.integer("ttl", 3, minimum=1, maximum=0xFFFFFE)
    sd.done()
    node.done()
    if cyclic >= ttl:
        raise sd.error(f"cyclic_offer_delay {cyclic:g} must be shorter than the ttl {ttl}, or offers expire "
                       "between two", "cyclic_offer_delay")
    timing = SdTiming(cyclic_offer_delay=cyclic, ttl=ttl)
    return SomeIpSettings(enabled=enabled, address=address, service_id=service_id, instance_id=instance_id,
                          udp_port=udp_port, tcp_port=tcp_port,
                          sd=SdConfig(local_address=address, group=group, port=port, multicast_interface=interface,
                                      timing=timing))


# -- payloads from the display's views and back ---------------------------------------------------
def _time(t: Any) -> float:
    return float(t) if t else 0.0


def offer_payload(consent: Mapping[str, Any] | None, postpone_limit: int) -> dict[str, Any]:
    """The ``offer`` field for a consent (:meth:`~hmi_agent.consent.Consent.to_json`); None: no offer."""
    c = consent or {}
    o = c.get("offer") or {}
    return {"campaign_id": str(c.get("campaign_id", "")), "from_version": str(o.get("from_version", "")),
            "to_version": str(o.get("to_version", "")), "ecus": [str(e) for e in o.get("ecus", [])],
            "size_bytes": int(o.get("size_bytes", 0)), "est_install_s": math.ceil(float(o.get("est_install_s", 0))),
            "release_notes": str(o.get("release_notes") or ""),
            "restrictions": [str(r) for r in o.get("restrictions") or []],
            "mandatory": bool(c.get("mandatory", False)), "deadline": _time(c.get("deadline")),
            "decision": DECISIONS.index(c["decision"]) if c else 0, "source": str(c.get("source", "")),
            "postponements": int(c.get("postponements", 0)), "postpone_limit": min(postpone_limit, 0xFFFF),
            "window": str(c.get("window") or ""), "not_before": _time(c.get("not_before"))}


def offer_consent(offer: Mapping[str, Any]) -> dict[str, Any] | None:
    """The consent (as the display's view holds it) an ``offer`` field value stands for; None: no offer."""
    if not offer["campaign_id"]:
        return None
    o: dict[str, Any] = {k: offer[k] for k in ("from_version", "to_version", "ecus", "size_bytes", "est_install_s")}
    if offer["release_notes"]:
        o["release_notes"] = offer["release_notes"]
    if offer["restrictions"]:
        o["restrictions"] = list(offer["restrictions"])
    o["mandatory"] = offer["mandatory"]
    if offer["deadline"]:
        o["deadline"] = offer["deadline"]
    return {"campaign_id": offer["campaign_id"], "decision": DECISIONS[offer["decision"]], "source": offer["source"],
            "offer": o, "postponements": offer["postponements"], "window": offer["window"] or None,
            "not_before": offer["not_before"] or None, "mandatory": offer["mandatory"],
            "deadline": offer["deadline"] or None}


def decision_consent(decision: Mapping[str, Any]) -> dict[str, Any]:
    """A method's :data:`DECISION` answer as a consent (without the offer)."""
    return {"campaign_id": decision["campaign_id"], "decision": DECISIONS[decision["decision"]],
            "source": decision["source"], "postponements": decision["postponements"],
            "window": decision["window"] or None, "not_before": decision["not_before"] or None}


def progress_payload(view: Mapping[str, Any]) -> dict[str, Any]:
    """The ``progress`` field for a campaign's view (:meth:`~hmi_agent.display.DisplayModel.view`)."""
    ecus = []
    for ecu, p in view["progress"].items():
        has_bytes = "bytes_total" in p
        done, total = int(p.get("bytes_done", 0)), int(p.get("bytes_total", 0))
        percent = (100.0 * done / total if total else 0.0) if has_bytes else float(p.get("percent", 0.0))
        ecus.append({"ecu": ecu, "step": str(p.get("step") or ""), "has_bytes": has_bytes, "bytes_done": done,
                     "bytes_total": total, "percent": percent})
    return {"campaign_id": view["campaign_id"], "phase": str(view.get("phase") or ""),
            "text": str(view.get("text") or ""), "ecus": ecus}


def progress_view(progress: Mapping[str, Any]) -> dict[str, Any]:
    """The view's ``phase``, ``text`` and ``progress`` of a ``progress`` field value."""
    table: dict[str, dict[str, Any]] = {}
    for e in progress["ecus"]:
        entry: dict[str, Any] = {"step": e["step"] or None}
        if e["has_bytes"]:
            entry.update(bytes_done=e["bytes_done"], bytes_total=e["bytes_total"])
        else:
            entry["percent"] = e["percent"]
        table[e["ecu"]] = entry
    return {"phase": progress["phase"] or None, "text": progress["text"] or None, "progress": table}


def decision_payload(consent: Mapping[str, Any]) -> dict[str, Any]:
    return {"campaign_id": consent["campaign_id"], "decision": DECISIONS.index(consent["decision"]),
            "source": consent["source"], "postponements": int(consent["postponements"]),
            "window": str(consent.get("window") or ""), "not_before": _time(consent.get("not_before"))}


# -- refusals -------------------------------------------------------------------------------------
def refusal_code(book: ConsentBook, campaign_id: str | None, decision: str) -> int:
    """The application return code of an answer :class:`ConsentBook` refused (runs after the refusal).

    Reads the state that made the book refuse; the rules themselves stay in :mod:`hmi_agent.consent`.
    """
    if campaign_id is None:
        waiting = [c for c in book.consents() if c.decision in OPEN]
        if not waiting:
            return E_NO_OFFER
        if len(waiting) > 1:
            return E_SEVERAL_OFFERS
        campaign_id = waiting[0].campaign_id
    c = book.get(campaign_id)
    if c is None:
        return E_NO_OFFER
    if c.decision in ("accepted", "declined"):
        return E_ALREADY_DECIDED
    if decision == "declined" and c.mandatory:
        return E_NOT_DECLINABLE
    overdue = c.mandatory and c.deadline is not None and book.clock() >= c.deadline
    if decision in ("postponed", "scheduled") and overdue:
        return E_PAST_DEADLINE
    if decision == "postponed" and c.postponements >= book.rules.postpone_limit:
        return E_POSTPONE_LIMIT
    if decision == "scheduled":
        return E_BAD_WINDOW
    return E_REFUSED


# -- the provider ---------------------------------------------------------------------------------
#: the client address of the request being answered (set per request task)
_CALLER: contextvars.ContextVar[Address | None] = contextvars.ContextVar("hmi_someip_caller", default=None)


class _CallerAwareProvider(ServiceProvider):
    """A provider whose method handlers can read the caller's address (:data:`_CALLER`).

    Each request is answered in its own task, which copies the context at its creation:
    the variable is set around the dispatch that creates it.
    """

    def _on_udp(self, message: Message, peer: Address) -> None:
        token = _CALLER.set(peer)
        try:
            super()._on_udp(message, peer)
        finally:
            _CALLER.reset(token)

    def _dispatch(self, request: Message, reply: Reply) -> None:
        connection = getattr(reply, "__self__", None)  # TCP: the connection's bound send()
        token = _CALLER.set(connection.peer) if isinstance(connection, TcpConnection) else None
        try:
            super()._dispatch(request, reply)
        finally:
            if token is not None:
                _CALLER.reset(token)


Answer = Callable[[str | None, str, str, str | None], Awaitable[Mapping[str, Any]]]


class HeadUnitService(DisplayBinding):
    """Offers the head-unit service; shows the display's views on it and takes answers from it.

    ``answer(campaign_id, decision, source, window)`` records an answer the way the daemon's
    IPC handler does (and raises :class:`ConsentError` on a refusal); ``book`` gives the
    consent book for the postpone limit and to classify refusals.
    """

    def __init__(self, settings: SomeIpSettings, answer: Answer, book: Callable[[], ConsentBook]) -> None:
        self.settings = settings
        self._answer = answer
        self._book = book
        self.sd: ServiceDiscovery | None = None
        self.provider: ServiceProvider | None = None
        self._consents: dict[str, dict[str, Any]] = {}
        self._progress: dict[str, Any] | None = None
        self._results: set[str] = set()

    async def start(self) -> None:
        s = self.settings
        self.sd = ServiceDiscovery(s.sd)
        await self.sd.start()
        provider = _CallerAwareProvider(s.interface, self.sd, address=s.address, udp_port=s.udp_port,
                                        tcp_port=s.tcp_port)
        for method in METHOD_DECISION:
            provider.method(method, self._handler(method))
        provider.set_field("offer", offer_payload(self._current(), self._limit()))
        provider.set_field("progress", self._progress or progress_payload({"campaign_id": "", "progress": {}}))
        await provider.start()
        self.provider = provider
        log.info("hmi_agent: head-unit service 0x%04x.%d offered at %s (SD %s:%d)", s.service_id, s.instance_id,
                 s.address, s.sd.group, s.sd.port)

    async def stop(self) -> None:
        if self.provider is not None:
            await self.provider.stop()
        if self.sd is not None:
            await self.sd.close()

    def _limit(self) -> int:
        return self._book().rules.postpone_limit

    def _handler(self, method: str) -> Callable[[Mapping[str, Any]], Awaitable[dict[str, Any]]]:
        decision = METHOD_DECISION[method]

        async def handle(request: Mapping[str, Any]) -> dict[str, Any]:
            caller = _CALLER.get()
            source = f"someip:{caller[0] if caller else 'unknown'}"
            campaign_id = request["campaign_id"] or None
            try:
                consent = await self._answer(campaign_id, decision, source, request.get("window"))
            except ConsentError as e:
                code = await asyncio.to_thread(refusal_code, self._book(), campaign_id, decision)
                raise SomeIpError(f"{method} from {source}: {e}", return_code=code) from None
            return decision_payload(consent)

        return handle

    # -- the display binding ----------------------------------------------------------------------
    def _current(self) -> dict[str, Any] | None:
        """The newest open offer, else the one decided last."""
        ordered = list(self._consents.values())
        waiting = [c for c in ordered if c["decision"] in OPEN]
        chosen = waiting or ordered
        return chosen[-1] if chosen else None

    def show(self, view: Mapping[str, Any]) -> None:
        cid = str(view["campaign_id"])
        consent = view.get("consent")
        if consent is not None and self._consents.get(cid) != consent:
            self._consents.pop(cid, None)  # re-inserted: the order is the order of change
            self._consents[cid] = dict(consent)
            decided = [k for k, c in self._consents.items() if c["decision"] not in OPEN]
            for old in decided[:-KEEP_ENDED]:
                del self._consents[old]
            self._set("offer", offer_payload(self._current(), self._limit()))
        progress = progress_payload(view)
        if (progress["phase"] or progress["ecus"] or progress["text"]) and progress != self._progress:
            self._progress = progress
            self._set("progress", progress)
        if view.get("result") and cid not in self._results:
            self._results.add(cid)
            if self.provider is not None:
                self.provider.notify("result", {"campaign_id": cid, "result": str(view["result"]),
                                                "detail": str(view.get("detail") or view.get("text") or "")})

    def _set(self, name: str, value: Mapping[str, Any]) -> None:
        if self.provider is not None:
            self.provider.set_field(name, value)

