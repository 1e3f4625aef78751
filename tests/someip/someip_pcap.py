"""Write what the SOME/IP stack sent and received (its socket-edge captures) as a pcap, with scapy.

UDP captures become one IPv4/UDP packet each. A TCP connection becomes a three-way handshake and
then data segments (at most ``SEGMENT`` bytes each) whose sequence and acknowledgement numbers
follow the bytes, so Wireshark reassembles the SOME/IP messages exactly as on the wire.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from agent.someip.transport import Address, Capture

SEGMENT = 16000


def write_pcap(captures: Iterable[Capture], path: Path) -> int:
    """Write the captures in order; returns the number of packets written."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.packet import Raw
    from scapy.utils import wrpcap

    packets: list[Any] = []
    seq: dict[Address, int] = {}
    opened: set[frozenset[Address]] = set()

    def add(packet: Any) -> None:
        packet.time = 1_700_000_000 + len(packets) / 1000
        packets.append(packet)

    for capture in captures:
        ip = IP(src=capture.src[0], dst=capture.dst[0])
        if capture.protocol == "udp":
            add(ip / UDP(sport=capture.src[1], dport=capture.dst[1]) / Raw(capture.data))
            continue
        link = frozenset((capture.src, capture.dst))
        if link not in opened:  # the first sender on a connection is its client
            opened.add(link)
            client, server = capture.src, capture.dst
            seq[client], seq[server] = 1000, 50000
            add(IP(src=client[0], dst=server[0]) / TCP(sport=client[1], dport=server[1], flags="S", seq=999))
            add(IP(src=server[0], dst=client[0]) / TCP(sport=server[1], dport=client[1], flags="SA", seq=49999,
                                                      ack=1000))
            add(IP(src=client[0], dst=server[0]) / TCP(sport=client[1], dport=server[1], flags="A", seq=1000,
                                                      ack=50000))
        for start in range(0, len(capture.data), SEGMENT):
            chunk = capture.data[start:start + SEGMENT]
            add(ip / TCP(sport=capture.src[1], dport=capture.dst[1], flags="PA", seq=seq[capture.src],
                         ack=seq[capture.dst]) / Raw(chunk))
            seq[capture.src] += len(chunk)
    wrpcap(str(path), packets)
    return len(packets)


def own_echoes_removed(captures: Sequence[Capture], own: Address) -> list[Capture]:
    """Drop the copies of our own multicast SD messages that loop back to our group socket."""
    return [c for c in captures if c.outgoing or c.src != own]
