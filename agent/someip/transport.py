"""SOME/IP over UDP and TCP with asyncio: datagram endpoints, stream framing, and a tap for captures.

UDP: one datagram may carry several messages back to back; a message over UDP is limited to
:data:`~agent.someip.message.UDP_MAX_MESSAGE` bytes (no SOME/IP-TP here; large data goes over TCP).
TCP: messages are framed by the SOME/IP length field; ``max_message`` caps what a peer may
announce (checked before reading the payload). A malformed stream cannot be resynchronised, so the
connection is closed (PRS). Every datagram and stream chunk sent or received goes to the optional
``tap`` with its addresses, which is how tests write a pcap of what the stack really sent.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from agent.errors import SomeIpError, TransportError
from agent.someip.message import (
    HEADER_SIZE,
    LENGTH_OFFSET,
    UDP_MAX_MESSAGE,
    Message,
    decode_message,
    message_length,
    split_datagram,
)

log = logging.getLogger(__name__)

Address = tuple[str, int]
#: default cap for one SOME/IP message over TCP (bulk transfers go in chunks below it)
TCP_MAX_MESSAGE = 16 * 1024 * 1024


@dataclass(frozen=True)
class Capture:
    """One datagram or TCP chunk as it crossed a socket."""

    protocol: str  # "udp" or "tcp"
    src: Address
    dst: Address
    data: bytes
    outgoing: bool


Tap = Callable[[Capture], None]
MessageHandler = Callable[[Message, Address], None]


class UdpEndpoint(asyncio.DatagramProtocol):
    """A bound UDP socket that sends and receives SOME/IP messages."""

    def __init__(self, on_message: MessageHandler, *, tap: Tap | None = None, name: str = "udp") -> None:
        self.on_message = on_message
        self.tap = tap
        self.name = name
        self.transport: asyncio.DatagramTransport | None = None
        self.local: Address = ("0.0.0.0", 0)
        #: datagrams dropped because they did not decode
        self.malformed = 0

    @classmethod
    async def open(cls, sock: socket.socket, on_message: MessageHandler, *, tap: Tap | None = None,
                   name: str = "udp", local: Address | None = None) -> UdpEndpoint:
        """Wrap an already bound socket; ``local`` overrides the address the tap records as ours."""
        loop = asyncio.get_running_loop()
        endpoint = cls(on_message, tap=tap, name=name)
        await loop.create_datagram_endpoint(lambda: endpoint, sock=sock)
        host, port = sock.getsockname()[:2]
        endpoint.local = local or (host, port)
        return endpoint

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        peer = (str(addr[0]), int(addr[1]))
        if self.tap is not None:
            self.tap(Capture("udp", peer, self.local, bytes(data), False))
        try:
            messages = split_datagram(data, max_size=UDP_MAX_MESSAGE)
        except SomeIpError as e:
            self.malformed += 1
            log.warning("%s: dropped malformed datagram from %s:%d: %s", self.name, peer[0], peer[1], e)
            return
        for message in messages:
            try:
                self.on_message(message, peer)
            except SomeIpError as e:
                self.malformed += 1
                log.warning("%s: dropped message from %s:%d: %s", self.name, peer[0], peer[1], e)

    def send(self, message: Message, destination: Address) -> None:
        data = message.encode()
        if len(data) > UDP_MAX_MESSAGE:
            raise SomeIpError(f"{message} is {len(data)} bytes, over the UDP limit of {UDP_MAX_MESSAGE}: "
                              "declare the method or event reliable (TCP)")
        if self.transport is None or self.transport.is_closing():
            raise TransportError(f"{self.name}: socket closed")
        self.transport.sendto(data, destination)
        if self.tap is not None:
            self.tap(Capture("udp", self.local, destination, data, True))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def bind_udp(address: Address, *, reuse: bool = False) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if reuse:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise TransportError(f"cannot bind UDP {address[0]}:{address[1]}: {e}") from e
    sock.setblocking(False)
    return sock


async def read_message(reader: asyncio.StreamReader, max_size: int) -> tuple[Message, bytes] | None:
    """The next framed message and its bytes, or None at a clean end of stream (EOF between messages)."""
    try:
        head = await reader.readexactly(LENGTH_OFFSET)
    except asyncio.IncompleteReadError as e:
        if e.partial:
            raise SomeIpError(f"TCP stream ended inside a SOME/IP header ({len(e.partial)} bytes)") from None
        return None
    total = message_length(head)
    if total > max_size:
        raise SomeIpError(f"peer announced a SOME/IP message of {total} bytes, over the limit of {max_size}")
    if total < HEADER_SIZE:
        raise SomeIpError(f"SOME/IP length field announces {total} bytes, shorter than the header")
    try:
        rest = await reader.readexactly(total - LENGTH_OFFSET)
    except asyncio.IncompleteReadError as e:
        raise SomeIpError(f"TCP stream ended inside a {total}-byte SOME/IP message") from e
    return decode_message(head + rest), head + rest


class TcpConnection:
    """One SOME/IP TCP connection; ``run()`` reads until the peer closes or sends garbage."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, on_message: MessageHandler, *,
                 tap: Tap | None = None, max_message: int = TCP_MAX_MESSAGE, name: str = "tcp") -> None:
        self.reader = reader
        self.writer = writer
        self.on_message = on_message
        self.tap = tap
        self.max_message = max_message
        self.name = name
        local = writer.get_extra_info("sockname")
        peer = writer.get_extra_info("peername")
        self.local: Address = (str(local[0]), int(local[1]))
        self.peer: Address = (str(peer[0]), int(peer[1]))
        self.closed = asyncio.Event()
        self.error: Exception | None = None

    @classmethod
    async def connect(cls, address: Address, on_message: MessageHandler, *, local_host: str | None = None,
                      tap: Tap | None = None, max_message: int = TCP_MAX_MESSAGE,
                      timeout: float = 5.0) -> TcpConnection:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(
                address[0], address[1], local_addr=(local_host, 0) if local_host else None, limit=1 << 20), timeout)
        except (OSError, asyncio.TimeoutError) as e:
            raise TransportError(f"cannot connect SOME/IP TCP to {address[0]}:{address[1]}: {e!r}") from e
        return cls(reader, writer, on_message, tap=tap, max_message=max_message, name=f"tcp->{address[1]}")

    async def run(self) -> None:
        try:
            while True:
                framed = await read_message(self.reader, self.max_message)
                if framed is None:
                    break
                message, raw = framed
                if self.tap is not None:
                    self.tap(Capture("tcp", self.peer, self.local, raw, False))
                self.on_message(message, self.peer)
        except SomeIpError as e:
            self.error = e
            log.warning("%s: closing connection from %s:%d: %s", self.name, self.peer[0], self.peer[1], e)
        except (ConnectionError, OSError) as e:
            self.error = e
        finally:
            self.close()

    def send(self, message: Message) -> None:
        data = message.encode()
        if len(data) > self.max_message:
            raise SomeIpError(f"{message} is {len(data)} bytes, over the TCP limit of {self.max_message}")
        if self.closed.is_set() or self.writer.is_closing():
            raise TransportError(f"{self.name}: connection to {self.peer[0]}:{self.peer[1]} is closed")
        self.writer.write(data)
        if self.tap is not None:
            self.tap(Capture("tcp", self.local, self.peer, data, True))

    async def drain(self) -> None:
        try:
            await self.writer.drain()
        except (ConnectionError, OSError) as e:
            raise TransportError(f"{self.name}: {e}") from e

    def close(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            self.writer.close()
