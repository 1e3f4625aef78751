"""A SOME/IP provider and consumer in separate processes on loopback: SD find / offer / subscribe
over real multicast, methods and events over UDP and TCP, bulk over TCP, errors, stop offer and
reboot detection (bench: ``someip_bench``)."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from someip_bench import CONSUMER_ADDRESS, PROVIDER_ADDRESS, Net, consumer, free_net, run, start_provider
from someip_demo import ECHO, REFUSED, SERVICE, pattern

from agent.errors import SomeIpError
from agent.someip.interface import EventSpec, MethodSpec
from agent.someip.message import Message, MessageType, ReturnCode, decode_message
from agent.someip.sd_message import L4Protocol
from agent.someip.sd_registry import RemoteOffer
from agent.someip.serialization import UINT8
from agent.someip.transport import Capture

pytestmark = pytest.mark.e2e

def test_methods_over_udp_with_errors(net: Net) -> None:
    extended = dataclasses.replace(SERVICE, methods={**SERVICE.methods, "missing": MethodSpec(0x0777)})

    async def scenario() -> None:
        async with consumer(net, interface=extended) as client:
            offer = client.offer
            assert offer is not None and offer.sd_sender == (PROVIDER_ADDRESS, net.port)
            assert offer.endpoint(L4Protocol.UDP) is not None and offer.endpoint(L4Protocol.TCP) is not None
            value = {"text": "Grüße", "count": 7, "tags": [1, 2, 3]}
            assert await client.call("echo", value, timeout=5) == value
            with pytest.raises(SomeIpError) as refused:
                await client.call("refuse", 1, timeout=5)
            assert refused.value.return_code == REFUSED
            with pytest.raises(SomeIpError) as unknown:
                await client.call("missing", timeout=5)
            assert unknown.value.return_code == ReturnCode.E_UNKNOWN_METHOD
            with pytest.raises(SomeIpError, match="over the UDP limit"):
                await client.call("echo", {"text": "x" * 1400, "count": 0, "tags": []}, timeout=5)
            await client.send("poke", 5)  # fire and forget: seen through the field's getter
            assert await client.get_field("status", timeout=5) == "poked 5"  # same socket, handled in order
    run(scenario())


def test_events_and_fields_over_udp_and_tcp(net: Net) -> None:
    async def scenario() -> None:
        async with consumer(net) as client:
            await client.subscribe(0x0001, timeout=5)
            await client.subscribe(0x0002, timeout=5)
            initial = await client.next_event("status", timeout=5)  # PRS initial event of the field
            assert initial == await client.get_field("status", timeout=5)
            await client.call("emit", 3, timeout=5)
            assert [await client.next_event("progress", timeout=5) for _ in range(3)] == [
                {"done": 1, "total": 3}, {"done": 2, "total": 3}, {"done": 3, "total": 3}]
            assert await client.next_event("chunk", timeout=5) == pattern(4096)  # reliable event: TCP
            assert await client.next_event("status", timeout=5) == "emitted 3"
            assert await client.set_field("status", "ready", timeout=5) == "READY"  # provider's setter rule
            assert await client.next_event("status", timeout=5) == "READY"
            client.unsubscribe(0x0001)
            # renew group 2 over the same SD socket: its ack proves the provider handled the stop before
            await client.subscribe(0x0002, timeout=5)
            await client.call("emit", 1, timeout=5)
            # the answer left the provider's UDP socket after any progress event would have: none came
            assert client.pending_events("progress") == 0 and client.pending_events("status") == 0
            assert await client.next_event("chunk", timeout=5) == pattern(4096)  # still subscribed to 2
    run(scenario())


def test_bulk_over_tcp_both_directions(net: Net) -> None:
    async def scenario() -> None:
        async with consumer(net) as client:
            size = 6 * 1024 * 1024
            assert await client.call("bulk", size, timeout=20) == pattern(size)
            upload = pattern(3 * 1024 * 1024)[::-1]
            assert await client.call("upload", upload, timeout=20) == {
                "length": len(upload), "sha256": hashlib.sha256(upload).digest()}
            assert client.tcp is not None and client.udp is not None
    run(scenario(), timeout=60)


def test_nack_for_an_eventgroup_the_provider_does_not_have(net: Net) -> None:
    extended = dataclasses.replace(SERVICE, events={**SERVICE.events, "other": EventSpec(0x8077, UINT8, (0x0009,))})

    async def scenario() -> None:
        async with consumer(net, interface=extended) as client:
            with pytest.raises(SomeIpError, match="refused"):
                await client.subscribe(0x0009, timeout=5)
            await client.subscribe(0x0001, timeout=5)  # the others still work
    run(scenario())


def test_stop_offer_and_reboot_are_seen_by_the_consumer(tmp_path: Path) -> None:
    own = free_net()
    changes: list[tuple[bool, RemoteOffer]] = []

    async def scenario() -> None:
        changed = asyncio.Event()
        multicast_seen = asyncio.Event()

        def listener(offer: RemoteOffer, available: bool) -> None:
            changes.append((available, offer))
            changed.set()

        def tap(capture: Capture) -> None:
            if capture.src == (PROVIDER_ADDRESS, own.port) and capture.dst[0] == own.group:
                multicast_seen.set()

        async def until(condition: Callable[[], bool], what: str) -> None:
            while not condition():
                changed.clear()
                try:
                    await asyncio.wait_for(changed.wait(), 10)
                except asyncio.TimeoutError:
                    pytest.fail(f"consumer never saw {what}; offer changes {[(a, o.endpoints) for a, o in changes]}")

        first = start_provider(own, tmp_path / "first.log")
        try:
            async with consumer(own, tap=tap) as client:
                client.sd.offer_listeners.append(listener)
                assert client.offer is not None
                old_udp = client.offer.endpoint(L4Protocol.UDP)
                # reboot detection is per channel: the consumer must know the provider's multicast counter
                await asyncio.wait_for(multicast_seen.wait(), 10)
                assert first.proc is not None
                first.proc.kill()  # no StopOffer: the consumer must detect the reboot
                first.proc.wait()
                second = start_provider(own, tmp_path / "second.log")
                try:
                    await until(lambda: any(a and o.endpoint(L4Protocol.UDP) != old_udp for a, o in changes),
                                "the rebooted provider's new offer")
                    lost = [i for i, (a, _) in enumerate(changes) if not a]
                    new = [i for i, (a, o) in enumerate(changes) if a and o.endpoint(L4Protocol.UDP) != old_udp]
                    assert lost and lost[0] < new[0], "the reboot must drop the old offer before the new one"
                    assert changes[lost[0]][1].endpoint(L4Protocol.UDP) == old_udp
                    count = len(changes)
                    second.stop()  # SIGTERM: the provider sends StopOffer (TTL 0)
                    await until(lambda: len(changes) > count and not changes[-1][0], "the StopOffer")
                    assert client.sd.registry.lookup(SERVICE.service_id, SERVICE.instance_id) is None
                finally:
                    second.stop()
        finally:
            first.stop()
    run(scenario(), timeout=60)


def test_provider_answers_bad_requests_with_prs_return_codes(net: Net) -> None:
    """Raw bytes from a plain socket: the provider's checks, in PRS order, and its TCP length cap."""
    async def offer_ports() -> tuple[int, int]:
        async with consumer(net) as client:
            assert client.offer is not None
            udp, tcp = client.offer.endpoint(L4Protocol.UDP), client.offer.endpoint(L4Protocol.TCP)
            assert udp is not None and tcp is not None
            return udp[1], tcp[1]

    udp_port, tcp_port = run(offer_ports())
    echo = SERVICE.methods["echo"]
    good = ECHO.encode({"text": "a", "count": 1, "tags": []})
    cases = [
        (Message(0x4F55, echo.method_id, 0x99, 1, 1, MessageType.REQUEST, 0, good), ReturnCode.E_UNKNOWN_SERVICE),
        (Message(SERVICE.service_id, echo.method_id, 0x99, 2, 2, MessageType.REQUEST, 0, good),
         ReturnCode.E_WRONG_INTERFACE_VERSION),
        (Message(SERVICE.service_id, 0x0777, 0x99, 3, 1, MessageType.REQUEST, 0, b""), ReturnCode.E_UNKNOWN_METHOD),
        (Message(SERVICE.service_id, SERVICE.methods["poke"].method_id, 0x99, 4, 1, MessageType.REQUEST, 0,
                 b"\x00\x00\x00\x01"), ReturnCode.E_WRONG_MESSAGE_TYPE),
        (Message(SERVICE.service_id, echo.method_id, 0x99, 5, 1, MessageType.REQUEST, 0, good[:-1]),
         ReturnCode.E_MALFORMED_MESSAGE),
        (Message(SERVICE.service_id, echo.method_id, 0x99, 6, 1, MessageType.REQUEST, 0, good), ReturnCode.E_OK),
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((CONSUMER_ADDRESS, 0))
        sock.settimeout(10)
        sock.sendto(b"\x00garbage that is no SOME/IP", (PROVIDER_ADDRESS, udp_port))  # dropped, not answered
        for request, expected in cases:
            sock.sendto(request.encode(), (PROVIDER_ADDRESS, udp_port))
            answer = decode_message(sock.recv(2048))
            assert (answer.session_id, answer.client_id, answer.return_code) == (
                request.session_id, 0x99, expected), f"{request} answered {answer}"
            assert answer.message_type == (MessageType.RESPONSE if expected == ReturnCode.E_OK else MessageType.ERROR)
    with socket.create_connection((PROVIDER_ADDRESS, tcp_port), timeout=10) as stream:
        # a header announcing 1 GiB: over the provider's cap, so it closes instead of waiting for it
        stream.sendall(Message(SERVICE.service_id, 0x0003, 0x99, 7, 1, MessageType.REQUEST, 0, b"").encode()[:4]
                       + (1 << 30).to_bytes(4, "big") + b"\x00\x99\x00\x07\x01\x01\x00\x00")
        assert stream.recv(100) == b""


def test_broadcast_fallback_for_hosts_without_multicast(tmp_path: Path) -> None:
    """``group`` set to a broadcast address: SD works the same, over SO_BROADCAST."""
    own = dataclasses.replace(free_net(), group="127.255.255.255")
    provider = start_provider(own, tmp_path / "provider.log")

    async def scenario() -> None:
        async with consumer(own) as client:
            assert client.offer is not None and client.offer.sd_sender == (PROVIDER_ADDRESS, own.port)
            await client.subscribe(0x0001, timeout=5)
            assert await client.next_event("status", timeout=5) == "idle"
    try:
        run(scenario())
    finally:
        provider.stop()
