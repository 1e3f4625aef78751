"""SOME/IP-SD: entries and options on the wire, session counters and reboot detection, the
initial wait / repetition / main phases on an injected clock and RNG, TTL expiry."""

from __future__ import annotations

import contextlib
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import ConfigurationError, SomeIpError
from agent.someip.message import Message, MessageType, decode_message
from agent.someip.sd_message import (
    TTL_INFINITE,
    EntryType,
    EventgroupEntry,
    IPv4EndpointOption,
    L4Protocol,
    OptionType,
    OtherOption,
    SdMessage,
    ServiceEntry,
    decode_sd,
    encode_sd,
)
from agent.someip.sd_registry import OfferRegistry, RemoteOffer, Subscriber, SubscriberTable, expiry
from agent.someip.sd_session import MULTICAST, UNICAST, RebootDetector, SenderSessions, SessionCounter
from agent.someip.sd_timing import Announcer, Phase, SdTiming

UDP_EP = IPv4EndpointOption("192.168.10.2", L4Protocol.UDP, 30501)
TCP_EP = IPv4EndpointOption("192.168.10.2", L4Protocol.TCP, 30502)


def offer(ttl: int = 3, *options: IPv4EndpointOption) -> ServiceEntry:
    return ServiceEntry(EntryType.OFFER_SERVICE, 0x4F54, 1, 1, ttl, 3, options)


def test_offer_with_two_endpoints_exact_bytes() -> None:
    message = encode_sd(SdMessage((offer(3, UDP_EP, TCP_EP),), reboot=True), session_id=1)
    assert (message.service_id, message.method_id, message.client_id, message.message_type) == (
        0xFFFF, 0x8100, 0, MessageType.NOTIFICATION)
    assert message.payload == bytes.fromhex(
        "c0 000000 00000010"  # reboot + unicast flags, 16 bytes of entries
        "01 00 00 20 4f54 0001 01 000003 00000003"  # offer, run 1 = options 0..1
        "00000018"  # 24 bytes of options
        "0009 04 00 c0a80a02 00 11 7725"
        "0009 04 00 c0a80a02 00 06 7726")
    assert decode_sd(decode_message(message.encode())) == SdMessage((offer(3, UDP_EP, TCP_EP),), reboot=True)


def test_identical_options_are_stored_once_and_shared_by_run_index() -> None:
    subscribe = EventgroupEntry(EntryType.SUBSCRIBE_EVENTGROUP, 0x4F54, 1, 1, 3, 0x0002, 0, (TCP_EP,))
    sd = SdMessage((offer(3, UDP_EP, TCP_EP), subscribe))
    payload = encode_sd(sd, session_id=9).payload
    assert struct.unpack_from(">I", payload, 40)[0] == 2 * 12  # two options, not three
    assert payload[24:28] == bytes.fromhex("06 01 00 10")  # subscribe: run 1 starts at option 1, one option
    decoded = decode_sd(decode_message(encode_sd(sd, session_id=9).encode()))
    assert decoded == sd and decoded.session_id == 9


def test_stop_offer_stop_subscribe_and_nack_are_ttl_zero() -> None:
    stop = offer(0)
    nack = EventgroupEntry(EntryType.SUBSCRIBE_EVENTGROUP_ACK, 0x4F54, 1, 1, 0, 0x0001, 0)
    stop_sub = EventgroupEntry(EntryType.SUBSCRIBE_EVENTGROUP, 0x4F54, 1, 1, 0, 0x0001, 0, (UDP_EP,))
    decoded = decode_sd(encode_sd(SdMessage((stop, nack, stop_sub)), session_id=2))
    assert [entry.is_stop for entry in decoded.entries] == [True, True, True]
    assert not offer(TTL_INFINITE).is_stop


def test_unknown_options_survive_and_other_kinds_round_trip() -> None:
    config = OtherOption(OptionType.CONFIGURATION, b"\x05abc=1\x00", discardable=True)
    multicast = IPv4EndpointOption("239.0.0.1", L4Protocol.UDP, 30510, OptionType.IP4_MULTICAST)
    sd = SdMessage((ServiceEntry(EntryType.OFFER_SERVICE, 1, 2, 3, 4, 5, (config,), (multicast,)),))
    assert decode_sd(encode_sd(sd, session_id=3)) == sd


def sd_raw(entries: bytes, options: bytes, flags: int = 0xC0) -> Message:
    payload = bytes([flags, 0, 0, 0]) + struct.pack(">I", len(entries)) + entries + struct.pack(">I", len(options))
    return Message(0xFFFF, 0x8100, 0, 1, 1, MessageType.NOTIFICATION, 0, payload + options)


ENTRY = bytes.fromhex("01 00 00 10 4f54 0001 01 000003 00000003")
OPTION = bytes.fromhex("0009 04 00 c0a80a02 00 11 7725")


@pytest.mark.parametrize("message, reason", [
    (sd_raw(ENTRY[:15], b""), "not a multiple of 16"),
    (sd_raw(ENTRY, b""), "outside the 0 options"),
    (sd_raw(ENTRY, OPTION[:11]), "overruns the options array"),
    (sd_raw(ENTRY, OPTION[:1] + b"\x08" + OPTION[2:11]), "length 8, expected 9"),
    (sd_raw(ENTRY, OPTION[:9] + b"\x84" + OPTION[10:]), "unknown L4 protocol"),
    (sd_raw(b"\x02" + ENTRY[1:], OPTION), "unknown SD entry type 0x02"),
    (Message(0xFFFF, 0x8100, 0, 1, 1, MessageType.NOTIFICATION, 0, b"\x00" * 11), "truncated"),
    (Message(0xFFFF, 0x8100, 0, 1, 1, MessageType.REQUEST, 0, b"\x00" * 12), "must be a NOTIFICATION"),
    (Message(0xFFFF, 0x8100, 0, 0, 1, MessageType.NOTIFICATION, 0, b"\x00" * 12), "session id 0"),
    (Message(0x1234, 0x8100, 0, 1, 1, MessageType.NOTIFICATION, 0, b""), "not an SD message"),
])
def test_malformed_sd_is_refused_with_a_reason(message: Message, reason: str) -> None:
    with pytest.raises(SomeIpError, match=reason):
        decode_sd(message)


@given(st.binary(max_size=120))
@settings(max_examples=100, deadline=None)
def test_random_sd_payloads_never_crash(payload: bytes) -> None:
    with contextlib.suppress(SomeIpError):
        decode_sd(Message(0xFFFF, 0x8100, 0, 1, 1, MessageType.NOTIFICATION, 0, payload))


def test_encode_refuses_entries_that_do_not_fit() -> None:
    with pytest.raises(SomeIpError, match="TTL"):
        encode_sd(SdMessage((offer(0x1000000),)), session_id=1)
    with pytest.raises(SomeIpError, match="session id"):
        encode_sd(SdMessage((offer(),)), session_id=0)
    with pytest.raises(SomeIpError, match="at most 15"):
        encode_sd(SdMessage((offer(1, *[IPv4EndpointOption("10.0.0.1", L4Protocol.UDP, p) for p in range(16)]),)),
                  session_id=1)


# ----------------------------------------------------------------- session counters and reboot detection
def test_session_counter_wraps_to_one_and_clears_the_reboot_flag() -> None:
    counter = SessionCounter()
    assert counter.take() == (1, True)
    taken = [counter.take() for _ in range(0xFFFE)]
    assert taken[-1] == (0xFFFF, True)
    assert counter.take() == (1, False)
    assert counter.take() == (2, False)


def test_each_channel_has_its_own_counter() -> None:
    sessions = SenderSessions()
    assert sessions.take(MULTICAST) == (1, True)
    assert sessions.take(MULTICAST) == (2, True)
    assert sessions.take((UNICAST, ("10.0.0.2", 30490))) == (1, True)


def test_reboot_detection() -> None:
    peer = ("10.0.0.2", 30490)
    detector = RebootDetector()
    assert not detector.observe(peer, MULTICAST, 1, True)
    assert not detector.observe(peer, MULTICAST, 2, True)
    assert detector.observe(peer, MULTICAST, 1, True)  # flag still set, session went back: rebooted
    assert not detector.observe(peer, UNICAST, 1, True)  # other channel, own history
    assert not detector.observe(peer, MULTICAST, 0xFFFF, True)
    assert not detector.observe(peer, MULTICAST, 1, False)  # the wrap: flag cleared, not a reboot
    assert not detector.observe(peer, MULTICAST, 2, False)
    assert detector.observe(peer, MULTICAST, 1, True)  # flag 0 -> 1: rebooted
    detector.forget(peer)
    assert not detector.observe(peer, MULTICAST, 1, True)


# ----------------------------------------------------------------- phases
class FixedRng(random.Random):
    """uniform() returns the given fraction of the interval, so the test knows the drawn delay."""

    def __init__(self, fraction: float) -> None:
        super().__init__(0)
        self.fraction = fraction
        self.draws: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.draws.append((a, b))
        return a + (b - a) * self.fraction


TIMING = SdTiming(initial_delay_min=0.1, initial_delay_max=0.3, repetitions_base_delay=0.5, repetitions_max=3,
                  cyclic_offer_delay=2.0, ttl=5)


def run(announcer: Announcer, until: float, step: float = 0.05) -> list[tuple[float, Phase]]:
    """Drive the announcer on a fake clock; the times (and phase after) at which it sent."""
    sent: list[tuple[float, Phase]] = []
    now = 0.0
    while now <= until:
        if announcer.poll(now):
            sent.append((round(now, 2), announcer.phase))
        now = round(now + step, 2)
    return sent


def test_offer_phases_initial_wait_repetition_doubling_then_cyclic() -> None:
    rng = FixedRng(0.5)
    announcer = Announcer(TIMING, rng, cyclic=True)
    assert announcer.phase == Phase.DOWN and not announcer.poll(100.0)
    announcer.start(0.0)
    assert rng.draws == [(0.1, 0.3)] and announcer.phase == Phase.INITIAL_WAIT  # type: ignore[comparison-overlap]
    sent = run(announcer, 9.0)
    times = [t for t, _ in sent]
    assert times == [0.2, 0.7, 1.7, 3.7, 5.7, 7.7]  # 0.2 drawn; +0.5, +1.0, +2.0; then every 2.0
    assert [phase for _, phase in sent][:4] == [Phase.REPETITION, Phase.REPETITION, Phase.REPETITION, Phase.MAIN]


def test_find_stops_after_the_repetition_phase() -> None:
    announcer = Announcer(TIMING, FixedRng(0.0), cyclic=False)
    announcer.start(10.0)
    sent = run(announcer, 30.0)
    assert [t for t, _ in sent] == [10.1, 10.6, 11.6, 13.6]
    assert announcer.phase == Phase.DONE and announcer.deadline is None


def test_no_repetitions_goes_straight_to_main_and_stop_silences() -> None:
    timing = SdTiming(initial_delay_min=0.0, initial_delay_max=0.0, repetitions_max=0, cyclic_offer_delay=1.0, ttl=3)
    announcer = Announcer(timing, random.Random(1), cyclic=True)
    announcer.start(0.0)
    assert [t for t, _ in run(announcer, 2.0)] == [0.0, 1.0, 2.0]
    announcer.stop()
    assert not announcer.poll(50.0) and announcer.phase == Phase.DOWN


def test_initial_delay_is_drawn_in_range_from_the_injected_rng() -> None:
    delays = set()
    for seed in range(20):
        announcer = Announcer(TIMING, random.Random(seed), cyclic=True)
        announcer.start(0.0)
        assert announcer.deadline is not None and 0.1 <= announcer.deadline <= 0.3
        delays.add(announcer.deadline)
    assert len(delays) > 1


@pytest.mark.parametrize("kwargs, reason", [
    ({"initial_delay_min": 0.5, "initial_delay_max": 0.1}, "initial_delay_min"),
    ({"repetitions_base_delay": 0}, "must be > 0"),
    ({"ttl": 0}, "ttl"),
    ({"cyclic_offer_delay": 5.0, "ttl": 5}, "shorter than the ttl"),
])
def test_bad_timing_is_a_configuration_error(kwargs: dict[str, float], reason: str) -> None:
    with pytest.raises(ConfigurationError, match=reason):
        SdTiming(**kwargs)  # type: ignore[arg-type]


# ----------------------------------------------------------------- TTL expiry
def test_offers_expire_after_their_ttl_unless_refreshed() -> None:
    registry = OfferRegistry()
    sender = ("10.0.0.2", 30490)

    def remote(now: float, ttl: int, port: int = 30501) -> RemoteOffer:
        return RemoteOffer(0x4F54, 1, 1, 3, (IPv4EndpointOption("10.0.0.2", L4Protocol.UDP, port),), sender,
                           expiry(now, ttl))

    assert registry.update(remote(0.0, 3))
    assert not registry.update(remote(2.0, 3))  # refresh, same endpoints: not news
    assert registry.expire(4.9) == []
    assert registry.next_expiry() == 5.0
    assert [o.service_id for o in registry.expire(5.0)] == [0x4F54]
    assert registry.lookup(0x4F54, 1) is None
    registry.update(remote(0.0, TTL_INFINITE))
    assert registry.expire(1e12) == []
    assert registry.update(remote(1.0, 3, port=30600))  # moved endpoint: news
    assert registry.lookup(0x4F54, 1) is not None and registry.lookup(0x4F54, 1).endpoint(L4Protocol.UDP) == (  # type: ignore[union-attr]
        "10.0.0.2", 30600)
    assert [o.instance_id for o in registry.remove_sender(sender)] == [1]


def test_subscribers_expire_and_are_dropped_per_sender() -> None:
    table = SubscriberTable()
    a, b = ("10.0.0.3", 30490), ("10.0.0.4", 30490)
    assert table.add(Subscriber(1, a, ("10.0.0.3", 40000), None, 3.0))
    assert not table.add(Subscriber(1, a, ("10.0.0.3", 40000), None, 6.0))  # renewal
    table.add(Subscriber(2, b, None, ("10.0.0.4", 40001), 4.0))
    assert [s.sd_sender for s in table.expire(4.0)] == [b]
    assert [s.expires for s in table.of_group(1)] == [6.0]
    assert table.remove(1, a) and table.of_group(1) == []
