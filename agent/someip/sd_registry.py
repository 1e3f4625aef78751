"""What SOME/IP-SD has learnt, with TTL expiry: remote offers (client side), subscribers (server side).

Pure tables keyed by the caller's clock: ``now`` is passed in, entries expire at ``now + ttl``
(TTL 0xFFFFFF never expires), ``expire(now)`` removes and returns what has run out.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from agent.someip.sd_message import TTL_INFINITE, IPv4EndpointOption, L4Protocol

Address = tuple[str, int]


def expiry(now: float, ttl: int) -> float:
    return float("inf") if ttl == TTL_INFINITE else now + ttl


@dataclass
class RemoteOffer:
    service_id: int
    instance_id: int
    major_version: int
    minor_version: int
    endpoints: tuple[IPv4EndpointOption, ...]
    sd_sender: Address
    expires: float

    def endpoint(self, protocol: L4Protocol) -> Address | None:
        for option in self.endpoints:
            if option.protocol == protocol:
                return option.address, option.port
        return None


class OfferRegistry:
    """Offers seen from other nodes, by (service id, instance id)."""

    def __init__(self) -> None:
        self.offers: dict[tuple[int, int], RemoteOffer] = {}

    def update(self, offer: RemoteOffer) -> bool:
        """Store or refresh an offer; True if it is new (or its endpoints changed)."""
        key = (offer.service_id, offer.instance_id)
        previous = self.offers.get(key)
        self.offers[key] = offer
        return previous is None or previous.endpoints != offer.endpoints

    def remove(self, service_id: int, instance_id: int) -> RemoteOffer | None:
        return self.offers.pop((service_id, instance_id), None)

    def remove_sender(self, sender: Address) -> list[RemoteOffer]:
        gone = [offer for offer in self.offers.values() if offer.sd_sender == sender]
        for offer in gone:
            del self.offers[(offer.service_id, offer.instance_id)]
        return gone

    def lookup(self, service_id: int, instance_id: int) -> RemoteOffer | None:
        return self.offers.get((service_id, instance_id))

    def expire(self, now: float) -> list[RemoteOffer]:
        gone = [offer for offer in self.offers.values() if offer.expires <= now]
        for offer in gone:
            del self.offers[(offer.service_id, offer.instance_id)]
        return gone

    def next_expiry(self) -> float | None:
        return min((offer.expires for offer in self.offers.values()), default=None)


@dataclass
class Subscriber:
    eventgroup_id: int
    sd_sender: Address
    udp: Address | None
    tcp: Address | None
    expires: float

    @property
    def key(self) -> Hashable:
        return (self.eventgroup_id, self.sd_sender, self.udp, self.tcp)


class SubscriberTable:
    """Subscriptions to one service instance's eventgroups."""

    def __init__(self) -> None:
        self.subscribers: dict[Hashable, Subscriber] = {}

    def add(self, subscriber: Subscriber) -> bool:
        """Store or renew; True if new."""
        new = subscriber.key not in self.subscribers
        self.subscribers[subscriber.key] = subscriber
        return new

    def remove(self, eventgroup_id: int, sd_sender: Address) -> list[Subscriber]:
        gone = [s for s in self.subscribers.values() if s.eventgroup_id == eventgroup_id and s.sd_sender == sd_sender]
        for subscriber in gone:
            del self.subscribers[subscriber.key]
        return gone

    def remove_sender(self, sd_sender: Address) -> list[Subscriber]:
        gone = [s for s in self.subscribers.values() if s.sd_sender == sd_sender]
        for subscriber in gone:
            del self.subscribers[subscriber.key]
        return gone

    def of_group(self, eventgroup_id: int) -> list[Subscriber]:
        return [s for s in self.subscribers.values() if s.eventgroup_id == eventgroup_id]

    def expire(self, now: float) -> list[Subscriber]:
        gone = [s for s in self.subscribers.values() if s.expires <= now]
        for subscriber in gone:
            del self.subscribers[subscriber.key]
        return gone
