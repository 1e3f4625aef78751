"""The project's SOME/IP traffic checked by independent decoders.

A consumer talks to the provider process (SD find / offer / subscribe / ack, UDP methods and an
error, UDP and TCP events, a bulk answer over TCP, stop subscribe); every datagram and TCP message
it sent or received is recorded at the socket edge and written to a pcap (scapy). Then:

* tshark's SOME/IP and SOME/IP-SD dissectors decode the pcap with no expert info above "chat"
  (the TCP handshake) and the same header, entry and option values as our own decoder;
* scapy's ``scapy.contrib.automotive.someip`` classes parse the same bytes to the same fields.

tshark comes from ``.ci/run`` (Debian package), scapy from the ``test`` extra; without them the
test is skipped with the reason.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from someip_bench import CLIENT_ID, CONSUMER_ADDRESS, PROVIDER_ADDRESS, Net, consumer, run
from someip_demo import REFUSED, SERVICE, pattern
from someip_pcap import own_echoes_removed, write_pcap

from agent.errors import SomeIpError
from agent.someip.message import Message, MessageType, split_datagram
from agent.someip.sd_message import (
    EntryType,
    EventgroupEntry,
    IPv4EndpointOption,
    L4Protocol,
    SdMessage,
    decode_sd,
    is_sd,
)
from agent.someip.transport import Capture

pytestmark = pytest.mark.e2e

BULK = 300_000
#: tshark expert severities (epan/proto.h): only "chat" (the TCP handshake) is allowed
PI_CHAT = 0x00200000


@pytest.fixture(scope="module")
def traffic(net: Net, tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Capture], Path, dict[str, int]]:
    captures: list[Capture] = []

    unicast_offer = asyncio.Event()

    def tap(capture: Capture) -> None:
        captures.append(capture)
        if capture.dst == (CONSUMER_ADDRESS, net.port) and offers_in(capture):
            unicast_offer.set()

    async def scenario() -> dict[str, int]:
        async with consumer(net, tap=tap) as client:
            assert client.offer is not None
            # the service may have been found from a multicast offer before any Find went out: send one
            # now; the provider, past its initial wait since it offered, answers with a unicast offer
            client.sd.send_find(SERVICE.service_id, SERVICE.instance_id, SERVICE.major_version)
            await asyncio.wait_for(unicast_offer.wait(), 10)
            ports = {"udp": client.offer.endpoint(L4Protocol.UDP)[1],  # type: ignore[index]
                     "tcp": client.offer.endpoint(L4Protocol.TCP)[1]}  # type: ignore[index]
            await client.call("echo", {"text": "ota", "count": 1, "tags": [9]}, timeout=5)
            with pytest.raises(SomeIpError):
                await client.call("refuse", 2, timeout=5)
            await client.subscribe(0x0001, timeout=5)
            await client.subscribe(0x0002, timeout=5)
            await client.next_event("status", timeout=5)
            await client.call("emit", 2, timeout=5)
            for _ in range(2):
                await client.next_event("progress", timeout=5)
            await client.next_event("chunk", timeout=5)
            assert await client.call("bulk", BULK, timeout=10) == pattern(BULK)
        return ports

    ports = run(scenario())
    mine = own_echoes_removed(captures, (CONSUMER_ADDRESS, net.port))
    pcap = tmp_path_factory.mktemp("someip-capture") / "someip.pcap"
    write_pcap(mine, pcap)
    return mine, pcap, {**ports, "sd": net.port}


def offers_in(capture: Capture) -> bool:
    return any(e.type == EntryType.OFFER_SERVICE for m in split_datagram(capture.data) if is_sd(m)
               for e in decode_sd(m).entries)


def messages_of(captures: list[Capture]) -> list[Message]:
    return [message for capture in captures for message in split_datagram(capture.data, max_size=None)]


def test_the_capture_holds_every_kind_of_traffic(traffic: tuple[list[Capture], Path, dict[str, int]]) -> None:
    captures, _, ports = traffic
    messages = messages_of(captures)
    kinds = {(m.message_type, m.is_event) for m in messages if not is_sd(m)}
    assert kinds >= {(MessageType.REQUEST, False), (MessageType.RESPONSE, False), (MessageType.ERROR, False),
                     (MessageType.NOTIFICATION, True)}
    entry_types = {e.type.name for m in messages if is_sd(m) for e in decode_sd(m).entries}
    assert entry_types >= {"FIND_SERVICE", "OFFER_SERVICE", "SUBSCRIBE_EVENTGROUP", "SUBSCRIBE_EVENTGROUP_ACK"}
    assert [c for c in captures if c.dst == (CONSUMER_ADDRESS, ports["sd"]) and offers_in(c)]
    stops = [e for m in messages if is_sd(m) for e in decode_sd(m).entries
             if isinstance(e, EventgroupEntry) and e.is_stop]
    assert {e.eventgroup_id for e in stops} == {0x0001, 0x0002}  # close() unsubscribed both groups
    assert {c.protocol for c in captures if ports["tcp"] in (c.src[1], c.dst[1])} == {"tcp"}


# ----------------------------------------------------------------- tshark
def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def expert_infos(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "_ws.expert":
                found.extend(as_list(value))
            elif key.startswith("_ws.malformed"):
                found.append({"_ws.expert.message": "malformed", "_ws.expert.severity": str(0x00800000)})
            else:
                found.extend(expert_infos(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(expert_infos(item))
    return found


def header_of(message: Message) -> dict[str, str]:
    return {"someip.serviceid": f"0x{message.service_id:04x}", "someip.methodid": f"0x{message.method_id:04x}",
            "someip.length": str(8 + len(message.payload)), "someip.clientid": f"0x{message.client_id:04x}",
            "someip.sessionid": f"0x{message.session_id:04x}", "someip.protoversion": "0x01",
            "someip.interfaceversion": f"0x{message.interface_version:02x}",
            "someip.messagetype": f"0x{int(message.message_type):02x}",
            "someip.returncode": f"0x{message.return_code:02x}"}


def sd_of(sd: SdMessage) -> dict[str, Any]:
    entries = []
    for entry in sd.entries:
        fields = {"someipsd.entry.type": f"0x{int(entry.type):02x}",
                  "someipsd.entry.serviceid": f"0x{entry.service_id:04x}",
                  "someipsd.entry.instanceid": f"0x{entry.instance_id:04x}",
                  "someipsd.entry.majorver": str(entry.major_version), "someipsd.entry.ttl": str(entry.ttl),
                  "someipsd.entry.numopt1": f"0x{len(entry.options_1):02x}",
                  "someipsd.entry.numopt2": f"0x{len(entry.options_2):02x}"}
        if isinstance(entry, EventgroupEntry):
            fields["someipsd.entry.eventgroupid"] = f"0x{entry.eventgroup_id:04x}"
            fields["someipsd.entry.counter"] = f"0x{entry.counter:02x}"
        else:
            fields["someipsd.entry.minorver"] = str(entry.minor_version)
        entries.append(fields)
    options = sorted({(o.address, str(int(o.protocol)), str(o.port)) for e in sd.entries
                      for o in (*e.options_1, *e.options_2) if isinstance(o, IPv4EndpointOption)})
    return {"reboot": str(int(sd.reboot)), "unicast": str(int(sd.unicast)), "entries": entries, "options": options}


def tshark_sd(layer: dict[str, Any]) -> dict[str, Any]:
    keep = ("type", "serviceid", "instanceid", "majorver", "ttl", "numopt1", "numopt2", "eventgroupid", "counter",
            "minorver")
    entries = [{k: v for k, v in entry.items() if k.rsplit(".", 1)[-1] in keep}
               for entry in as_list(layer.get("someipsd.entries", {}).get("someipsd.entry"))]
    options = sorted({(o["someipsd.option.ipv4address"], o["someipsd.option.proto"], o["someipsd.option.port"])
                      for o in layer.get("someipsd.options", {}).values()})
    flags = layer["someipsd.flags_tree"]
    return {"reboot": flags["someipsd.flags.reboot"], "unicast": flags["someipsd.flags.unicast"],
            "entries": entries, "options": options}


def test_tshark_decodes_the_capture_without_warnings(traffic: tuple[list[Capture], Path, dict[str, int]]) -> None:
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark not installed (.ci/run installs the Debian package; no network for apt here?)")
    captures, pcap, ports = traffic
    result = subprocess.run(
        [tshark, "-r", str(pcap), "-T", "json", "-V", "--no-duplicate-keys",
         "-d", f"udp.port=={ports['sd']},someip", "-d", f"udp.port=={ports['udp']},someip",
         "-d", f"tcp.port=={ports['tcp']},someip"], capture_output=True, text=True, timeout=60, check=True)
    frames = [frame["_source"]["layers"] for frame in json.loads(result.stdout)]
    problems = [info for info in expert_infos(frames) if int(info.get("_ws.expert.severity", "0")) > PI_CHAT]
    assert problems == []

    theirs = [header for frame in frames for header in as_list(frame.get("someip"))]
    ours = messages_of(captures)
    assert len(theirs) == len(ours) > 20
    assert [{k: h[k] for k in header_of(m)} for h, m in zip(theirs, ours, strict=True)] == [header_of(m) for m in ours]

    their_sd = [tshark_sd(layer) for frame in frames for layer in as_list(frame.get("someipsd"))]
    assert len(their_sd) >= 6
    assert their_sd == [sd_of(decode_sd(m)) for m in ours if is_sd(m)]

    # values a reader of the trace looks for, spelled out
    offer = next(sd for sd in their_sd if sd["entries"][0]["someipsd.entry.type"] == "0x01")
    assert offer["entries"][0]["someipsd.entry.serviceid"] == f"0x{SERVICE.service_id:04x}"
    assert offer["options"] == sorted([(PROVIDER_ADDRESS, "17", str(ports["udp"])),
                                       (PROVIDER_ADDRESS, "6", str(ports["tcp"]))])
    error = next(h for h in theirs if h["someip.messagetype"] == "0x81")
    assert error["someip.returncode"] == f"0x{REFUSED:02x}" and error["someip.clientid"] == f"0x{CLIENT_ID:04x}"
    bulk = next(h for h in theirs if h["someip.methodid"] == "0x0003" and h["someip.messagetype"] == "0x80")
    assert bulk["someip.length"] == str(8 + 4 + BULK)
    assert {h["someip.methodid"] for h in theirs if h["someip.messagetype"] == "0x02"
            and h["someip.serviceid"] != "0xffff"} == {"0x8001", "0x8002", "0x8010"}


# ----------------------------------------------------------------- scapy
def test_scapy_parses_the_same_bytes(traffic: tuple[list[Capture], Path, dict[str, int]]) -> None:
    someip = pytest.importorskip("scapy.contrib.automotive.someip", reason="scapy not installed (pip '.[test]')")
    captures, _, _ = traffic
    checked = 0
    for capture in captures:
        for ours in split_datagram(capture.data, max_size=None):
            raw = ours.encode()
            theirs = someip.SOMEIP(raw)
            assert (theirs.srv_id, theirs.sub_id, theirs.len, theirs.client_id, theirs.session_id, theirs.proto_ver,
                    theirs.iface_ver, theirs.msg_type, theirs.retcode) == (
                ours.service_id, ours.method_id, 8 + len(ours.payload), ours.client_id, ours.session_id, 1,
                ours.interface_version, int(ours.message_type), ours.return_code)
            assert b"".join(bytes(part) for part in theirs.data) == ours.payload
            if is_sd(ours):
                check_sd_with_scapy(someip, ours)
            checked += 1
    assert checked == len(messages_of(captures))


def check_sd_with_scapy(someip: Any, message: Message) -> None:
    ours = decode_sd(message)
    theirs = someip.SD(message.payload)
    assert bytes(theirs) == message.payload  # scapy's field model rebuilds exactly our bytes
    assert bool(theirs.flags.REBOOT) == ours.reboot and bool(theirs.flags.UNICAST) == ours.unicast
    assert len(theirs.entry_array) == len(ours.entries)
    for their_entry, our_entry in zip(theirs.entry_array, ours.entries, strict=True):
        assert (their_entry.type, their_entry.srv_id, their_entry.inst_id, their_entry.major_ver, their_entry.ttl,
                their_entry.n_opt_1, their_entry.n_opt_2) == (
            int(our_entry.type), our_entry.service_id, our_entry.instance_id, our_entry.major_version, our_entry.ttl,
            len(our_entry.options_1), len(our_entry.options_2))
        if isinstance(our_entry, EventgroupEntry):
            assert (their_entry.eventgroup_id, their_entry.cnt) == (our_entry.eventgroup_id, our_entry.counter)
        else:
            assert their_entry.minor_ver == our_entry.minor_version
        run1 = theirs.option_array[their_entry.index_1:their_entry.index_1 + their_entry.n_opt_1]
        assert [(o.addr, o.l4_proto, o.port) for o in run1] == [
            (o.address, int(o.protocol), o.port) for o in our_entry.options_1 if isinstance(o, IPv4EndpointOption)]
