"""SOME/IP-SD at run time (asyncio): the SD sockets, offers, finds, subscriptions and their timers.

One :class:`ServiceDiscovery` per node. It sends its SD messages from ``local_address:port`` and
listens there (unicast) and on the SD group (multicast, PRS default 224.224.224.245:30490). The
pure parts are elsewhere: wire format in :mod:`sd_message`, phases in :mod:`sd_timing`, counters
and reboot detection in :mod:`sd_session`, TTL tables in :mod:`sd_registry`; this class wires
them to sockets and an injected clock.

Loopback: multicast works on ``lo`` (join with the interface address, ``IP_MULTICAST_IF`` =
``multicast_interface``, loop on), so each bench process takes its own 127.0.0.x address. Where a
host cannot do that, ``group`` may be a broadcast address (e.g. 127.255.255.255) instead: the SD
socket then binds it and sends with SO_BROADCAST. On a board ``group`` is the real multicast group.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.errors import OtaTimeoutError, SomeIpError, TransportError
from agent.someip.interface import ServiceInterface
from agent.someip.message import Message
from agent.someip.sd_message import (
    ANY_INSTANCE,
    ANY_MAJOR,
    ANY_MINOR,
    SD_MULTICAST_GROUP,
    SD_PORT,
    EntryType,
    EventgroupEntry,
    IPv4EndpointOption,
    L4Protocol,
    SdMessage,
    ServiceEntry,
    decode_sd,
    encode_sd,
    endpoints,
    is_sd,
)
from agent.someip.sd_registry import (
    Address,
    OfferRegistry,
    RemoteOffer,
    Subscriber,
    SubscriberTable,
    expiry,
)
from agent.someip.sd_session import MULTICAST, UNICAST, RebootDetector, SenderSessions
from agent.someip.sd_timing import Announcer, Phase, SdTiming
from agent.someip.transport import Tap, UdpEndpoint, bind_udp

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SdConfig:
    local_address: str = "127.0.0.1"
    group: str = SD_MULTICAST_GROUP
    port: int = SD_PORT
    multicast_interface: str = "127.0.0.1"
    timing: SdTiming = field(default_factory=SdTiming)


@dataclass
class LocalOffer:
    """A service instance this node offers."""

    interface: ServiceInterface
    endpoints: tuple[IPv4EndpointOption, ...]
    announcer: Announcer
    #: decides on a new subscription (True: ack, False: nack)
    accept: Callable[[Subscriber], bool]
    #: called after the ack went out (initial field values)
    subscribed: Callable[[Subscriber], None]
    subscribers: SubscriberTable = field(default_factory=SubscriberTable)

    def entry(self, ttl: int) -> ServiceEntry:
        spec = self.interface
        return ServiceEntry(EntryType.OFFER_SERVICE, spec.service_id, spec.instance_id, spec.major_version, ttl,
                            spec.minor_version, self.endpoints)


@dataclass
class ClientSubscription:
    service_id: int
    instance_id: int
    major_version: int
    eventgroup_id: int
    options: tuple[IPv4EndpointOption, ...]
    answer: asyncio.Future[bool] | None = None


class ServiceDiscovery:
    def __init__(self, config: SdConfig, *, rng: random.Random | None = None,
                 clock: Callable[[], float] = time.monotonic, tap: Tap | None = None) -> None:
        self.config = config
        self.timing = config.timing
        self.rng = rng or random.Random()
        self.clock = clock
        self.tap = tap
        self.sessions = SenderSessions()
        self.reboots = RebootDetector()
        self.registry = OfferRegistry()
        self.local_offers: dict[tuple[int, int], LocalOffer] = {}
        self.finds: dict[tuple[int, int], tuple[int, Announcer]] = {}
        self.subscriptions: dict[tuple[int, int, int], ClientSubscription] = {}
        self.offer_listeners: list[Callable[[RemoteOffer, bool], None]] = []
        self.address: Address = (config.local_address, config.port)
        self._unicast: UdpEndpoint | None = None
        self._group: UdpEndpoint | None = None
        self._wakeup = asyncio.Event()
        self._offer_seen = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    # ----------------------------------------------------------------- sockets and timer loop
    async def start(self) -> None:
        config = self.config
        uni = bind_udp((config.local_address, config.port), reuse=True)
        group_is_multicast = ipaddress.IPv4Address(config.group).is_multicast
        if group_is_multicast:
            uni.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(config.multicast_interface))
            uni.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            uni.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        else:
            uni.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        grp = bind_udp((config.group, config.port), reuse=True)
        if group_is_multicast:
            grp.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                           socket.inet_aton(config.group) + socket.inet_aton(config.multicast_interface))
        self._unicast = await UdpEndpoint.open(uni, lambda m, a: self._received(m, a, UNICAST), tap=self.tap,
                                               name="sd-unicast")
        self._group = await UdpEndpoint.open(grp, lambda m, a: self._received(m, a, MULTICAST), tap=self.tap,
                                             name="sd-multicast")
        self._task = asyncio.create_task(self._timers(), name="someip-sd-timers")

    async def close(self) -> None:
        for key in list(self.local_offers):
            self.stop_offer(*key)
        if self._task is not None:
            # a flag, not cancel(): wait_for() in 3.11 may swallow a cancel that races the wakeup
            self._closing = True
            self._wakeup.set()
            await self._task
        for endpoint in (self._unicast, self._group):
            if endpoint is not None:
                endpoint.close()

    async def _timers(self) -> None:
        while not self._closing:
            try:
                delay = self._run_timers()
            except Exception:  # the SD task must outlive one bad step; say so loudly
                log.exception("SD: timer step failed")
                delay = self.timing.cyclic_offer_delay
            if self._closing:
                break
            self._wakeup.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), delay)

    def _run_timers(self) -> float | None:
        """Send what is due, expire what ran out; the delay until the next deadline (None: none)."""
        now = self.clock()
        for offer in list(self.local_offers.values()):
            if offer.announcer.poll(now):
                self._send_multicast(offer.entry(self.timing.ttl))
        for (service, instance), (major, announcer) in list(self.finds.items()):
            if announcer.poll(now):
                self.send_find(service, instance, major)
        for gone in self.registry.expire(now):
            log.info("SD: offer of 0x%04x.%d expired", gone.service_id, gone.instance_id)
            self._announce_offer(gone, False)
        for offer in self.local_offers.values():
            for subscriber in offer.subscribers.expire(now):
                log.info("SD: subscription of %s to eventgroup 0x%04x expired", subscriber.sd_sender,
                         subscriber.eventgroup_id)
        deadlines = [a.deadline for a in (*(o.announcer for o in self.local_offers.values()),
                                         *(f[1] for f in self.finds.values())) if a.deadline is not None]
        deadlines += [offer.expires for offer in self.registry.offers.values()]
        deadlines += [s.expires for o in self.local_offers.values() for s in o.subscribers.subscribers.values()]
        finite = [deadline for deadline in deadlines if deadline != float("inf")]
        return max(0.0, min(finite) - self.clock()) if finite else None

    # ----------------------------------------------------------------- sending
    def _send_multicast(self, *entries: ServiceEntry | EventgroupEntry) -> None:
        session, reboot = self.sessions.take(MULTICAST)
        self._send(encode_sd(SdMessage(entries, reboot=reboot), session_id=session), (self.config.group,
                                                                                     self.config.port))

    def _send_unicast(self, destination: Address, *entries: ServiceEntry | EventgroupEntry) -> None:
        session, reboot = self.sessions.take((UNICAST, destination))
        self._send(encode_sd(SdMessage(entries, reboot=reboot), session_id=session), destination)

    def _send(self, message: Message, destination: Address) -> None:
        if self._unicast is None:
            raise SomeIpError("service discovery not started")
        try:
            self._unicast.send(message, destination)
        except (OSError, TransportError) as e:
            log.warning("SD: cannot send to %s: %s", destination, e)

    # ----------------------------------------------------------------- server side
    def offer(self, interface: ServiceInterface, options: tuple[IPv4EndpointOption, ...], *,
              accept: Callable[[Subscriber], bool], subscribed: Callable[[Subscriber], None]) -> LocalOffer:
        key = (interface.service_id, interface.instance_id)
        if key in self.local_offers:
            raise SomeIpError(f"service 0x{key[0]:04x} instance {key[1]} is already offered")
        local = LocalOffer(interface, options, Announcer(self.timing, self.rng, cyclic=True), accept, subscribed)
        local.announcer.start(self.clock())
        self.local_offers[key] = local
        self._wakeup.set()
        return local

    def stop_offer(self, service_id: int, instance_id: int) -> None:
        local = self.local_offers.pop((service_id, instance_id), None)
        if local is None:
            return
        if local.announcer.phase != Phase.INITIAL_WAIT:  # nothing was announced yet: nothing to withdraw
            self._send_multicast(local.entry(0))
        local.announcer.stop()

    # ----------------------------------------------------------------- client side
    async def find(self, service_id: int, instance_id: int = ANY_INSTANCE, major_version: int = ANY_MAJOR, *,
                   timeout: float) -> RemoteOffer:
        """Wait until the service is offered (sends Finds through the initial wait and repetition phases)."""
        found = self._lookup(service_id, instance_id, major_version)
        if found is not None:
            return found
        key = (service_id, instance_id)
        if key not in self.finds:
            announcer = Announcer(self.timing, self.rng, cyclic=False)
            announcer.start(self.clock())
            self.finds[key] = (major_version, announcer)
            self._wakeup.set()
        try:
            async with self._offer_seen:
                await asyncio.wait_for(self._offer_seen.wait_for(
                    lambda: self._lookup(service_id, instance_id, major_version)), timeout)
        except asyncio.TimeoutError:
            raise OtaTimeoutError(f"service 0x{service_id:04x} instance 0x{instance_id:04x} not offered "
                                  f"within {timeout:g} s") from None
        finally:
            self.finds.pop(key, None)
        found = self._lookup(service_id, instance_id, major_version)
        assert found is not None
        return found

    def send_find(self, service_id: int, instance_id: int = ANY_INSTANCE, major_version: int = ANY_MAJOR) -> None:
        """One FindService now, outside the find phases (a provider past its initial wait answers it)."""
        self._send_multicast(ServiceEntry(EntryType.FIND_SERVICE, service_id, instance_id, major_version,
                                          self.timing.ttl, ANY_MINOR))

    def _lookup(self, service_id: int, instance_id: int, major_version: int) -> RemoteOffer | None:
        for offer in self.registry.offers.values():
            if (offer.service_id == service_id and instance_id in (ANY_INSTANCE, offer.instance_id)
                    and major_version in (ANY_MAJOR, offer.major_version)):
                return offer
        return None

    async def subscribe(self, offer: RemoteOffer, eventgroup_id: int, options: tuple[IPv4EndpointOption, ...], *,
                        timeout: float) -> None:
        """Subscribe to an eventgroup; returns on Ack, raises :class:`SomeIpError` on Nack."""
        key = (offer.service_id, offer.instance_id, eventgroup_id)
        subscription = ClientSubscription(offer.service_id, offer.instance_id, offer.major_version, eventgroup_id,
                                          options, asyncio.get_running_loop().create_future())
        self.subscriptions[key] = subscription
        self._send_subscribe(subscription, offer.sd_sender)
        assert subscription.answer is not None
        try:
            acked = await asyncio.wait_for(asyncio.shield(subscription.answer), timeout)
        except asyncio.TimeoutError:
            self.subscriptions.pop(key, None)
            raise OtaTimeoutError(f"no answer to subscribe 0x{offer.service_id:04x} eventgroup "
                                  f"0x{eventgroup_id:04x} within {timeout:g} s") from None
        if not acked:
            self.subscriptions.pop(key, None)
            raise SomeIpError(f"subscription to 0x{offer.service_id:04x} eventgroup 0x{eventgroup_id:04x} refused "
                              "(SubscribeEventgroupNack)")

    def unsubscribe(self, offer: RemoteOffer, eventgroup_id: int) -> None:
        subscription = self.subscriptions.pop((offer.service_id, offer.instance_id, eventgroup_id), None)
        if subscription is not None:
            self._send_unicast(offer.sd_sender, self._subscribe_entry(subscription, 0))

    def _subscribe_entry(self, subscription: ClientSubscription, ttl: int) -> EventgroupEntry:
        return EventgroupEntry(EntryType.SUBSCRIBE_EVENTGROUP, subscription.service_id, subscription.instance_id,
                               subscription.major_version, ttl, subscription.eventgroup_id, 0, subscription.options)

    def _send_subscribe(self, subscription: ClientSubscription, destination: Address) -> None:
        self._send_unicast(destination, self._subscribe_entry(subscription, self.timing.ttl))

    # ----------------------------------------------------------------- receiving
    def _received(self, message: Message, sender: Address, channel: str) -> None:
        if sender == self.address or not is_sd(message):
            return
        sd = decode_sd(message)
        if self.reboots.observe(sender, channel, sd.session_id, sd.reboot):
            self._peer_rebooted(sender)
        now = self.clock()
        for entry in sd.entries:
            if isinstance(entry, ServiceEntry):
                if entry.type == EntryType.FIND_SERVICE:
                    self._on_find(entry, sender, sd.unicast)
                else:
                    self._on_offer(entry, sender, now)
            elif entry.type == EntryType.SUBSCRIBE_EVENTGROUP:
                self._on_subscribe(entry, sender, now)
            else:
                self._on_subscribe_answer(entry)

    def _peer_rebooted(self, sender: Address) -> None:
        log.info("SD: %s:%d rebooted: dropping its offers and subscriptions", *sender)
        for offer in self.registry.remove_sender(sender):
            self._announce_offer(offer, False)
        for local in self.local_offers.values():
            local.subscribers.remove_sender(sender)

    def _on_find(self, entry: ServiceEntry, sender: Address, unicast_ok: bool) -> None:
        for local in self.local_offers.values():
            spec = local.interface
            if (entry.service_id == spec.service_id and entry.instance_id in (ANY_INSTANCE, spec.instance_id)
                    and entry.major_version in (ANY_MAJOR, spec.major_version)
                    and entry.minor_version in (ANY_MINOR, spec.minor_version)
                    and local.announcer.phase in (Phase.REPETITION, Phase.MAIN)):
                offer = local.entry(self.timing.ttl)
                if unicast_ok:
                    self._send_unicast(sender, offer)
                else:
                    self._send_multicast(offer)

    def _on_offer(self, entry: ServiceEntry, sender: Address, now: float) -> None:
        if entry.is_stop:
            gone = self.registry.remove(entry.service_id, entry.instance_id)
            if gone is not None:
                self._announce_offer(gone, False)
            return
        offer = RemoteOffer(entry.service_id, entry.instance_id, entry.major_version, entry.minor_version,
                            tuple(endpoints(entry)), sender, expiry(now, entry.ttl))
        if self.registry.update(offer):
            self._announce_offer(offer, True)
        for subscription in self.subscriptions.values():  # PRS: an offer triggers (re)subscription
            if (subscription.service_id, subscription.instance_id) == (entry.service_id, entry.instance_id):
                self._send_subscribe(subscription, sender)
        self._wakeup.set()

    def _announce_offer(self, offer: RemoteOffer, available: bool) -> None:
        for listener in list(self.offer_listeners):
            listener(offer, available)
        asyncio.get_running_loop().create_task(self._notify_offer_seen())

    async def _notify_offer_seen(self) -> None:
        async with self._offer_seen:
            self._offer_seen.notify_all()

    def _on_subscribe(self, entry: EventgroupEntry, sender: Address, now: float) -> None:
        local = self.local_offers.get((entry.service_id, entry.instance_id))
        udp = next(((o.address, o.port) for o in endpoints(entry) if o.protocol == L4Protocol.UDP), None)
        tcp = next(((o.address, o.port) for o in endpoints(entry) if o.protocol == L4Protocol.TCP), None)
        if entry.is_stop:
            if local is not None:
                local.subscribers.remove(entry.eventgroup_id, sender)
            return
        subscriber = Subscriber(entry.eventgroup_id, sender, udp, tcp, expiry(now, entry.ttl))
        ok = (local is not None and entry.major_version in (ANY_MAJOR, local.interface.major_version)
              and entry.eventgroup_id in local.interface.eventgroups and (udp or tcp) is not None
              and local.accept(subscriber))
        ack = EventgroupEntry(EntryType.SUBSCRIBE_EVENTGROUP_ACK, entry.service_id, entry.instance_id,
                              entry.major_version, entry.ttl if ok else 0, entry.eventgroup_id, entry.counter)
        if ok and local is not None:
            new = local.subscribers.add(subscriber)
            self._send_unicast(sender, ack)
            if new:
                local.subscribed(subscriber)
            self._wakeup.set()
        else:
            log.info("SD: refusing subscription of %s:%d to 0x%04x eventgroup 0x%04x", sender[0], sender[1],
                     entry.service_id, entry.eventgroup_id)
            self._send_unicast(sender, ack)

    def _on_subscribe_answer(self, entry: EventgroupEntry) -> None:
        subscription = self.subscriptions.get((entry.service_id, entry.instance_id, entry.eventgroup_id))
        if subscription is None or subscription.answer is None:
            return
        if not subscription.answer.done():
            subscription.answer.set_result(not entry.is_stop)
        elif entry.is_stop:  # a later renewal was refused
            log.warning("SD: subscription to 0x%04x eventgroup 0x%04x refused on renewal", entry.service_id,
                        entry.eventgroup_id)
