"""A SOME/IP service consumer (asyncio): finds one service instance, calls its methods, subscribes to
its eventgroups and receives its events and field notifications, over UDP and TCP.

    consumer = ServiceConsumer(DOWNLOAD_SERVICE, sd, address="127.0.0.3", client_id=0x0101)
    await consumer.start(timeout=5)                   # SD find, waits for the offer
    result = await consumer.call("start", {...}, timeout=2)
    await consumer.subscribe(0x0001, timeout=2)
    event = await consumer.next_event("progress", timeout=5)

Calls carry the consumer's client id and a session id counting 1..0xFFFF (wrapping to 1); the
answer is matched on (method id, session id). An ERROR answer raises :class:`SomeIpError` with the
provider's return code; no answer in time raises :class:`OtaTimeoutError`. A method or event
declared ``reliable`` uses the one TCP connection to the provider (opened on first use).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from typing import Any

from agent.errors import OtaTimeoutError, SomeIpError, TransportError
from agent.someip.discovery import ServiceDiscovery
from agent.someip.interface import ServiceInterface
from agent.someip.message import Message, MessageType, ReturnCode, return_code_name
from agent.someip.sd_message import IPv4EndpointOption, L4Protocol
from agent.someip.sd_registry import Address, RemoteOffer
from agent.someip.sd_session import SessionCounter
from agent.someip.serialization import VOID, DataType
from agent.someip.transport import TCP_MAX_MESSAGE, Tap, TcpConnection, UdpEndpoint, bind_udp

log = logging.getLogger(__name__)


class ServiceConsumer:
    def __init__(self, interface: ServiceInterface, sd: ServiceDiscovery, *, address: str, client_id: int,
                 tap: Tap | None = None, max_message: int = TCP_MAX_MESSAGE) -> None:
        if not 0 <= client_id <= 0xFFFF:
            raise ValueError(f"client id {client_id} out of 0..0xFFFF")
        self.interface = interface
        self.sd = sd
        self.address = address
        self.client_id = client_id
        self.tap = tap
        self.max_message = max_message
        self.offer: RemoteOffer | None = None
        self.udp: UdpEndpoint | None = None
        self.tcp: TcpConnection | None = None
        self._tcp_task: asyncio.Task[None] | None = None
        self._sessions = SessionCounter()
        self._pending: dict[tuple[int, int], asyncio.Future[Message]] = {}
        self._events: dict[str, asyncio.Queue[Any]] = defaultdict(asyncio.Queue)
        self._subscribed: set[int] = set()

    async def start(self, *, timeout: float) -> RemoteOffer:
        spec = self.interface
        self.offer = await self.sd.find(spec.service_id, spec.instance_id, spec.major_version, timeout=timeout)
        self.udp = await UdpEndpoint.open(bind_udp((self.address, 0)), self._on_message, tap=self.tap,
                                          name=f"{spec.name}-client-udp")
        return self.offer

    async def close(self) -> None:
        if self.offer is not None:
            for group in list(self._subscribed):
                self.sd.unsubscribe(self.offer, group)
        if self.tcp is not None:
            self.tcp.close()
        if self._tcp_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._tcp_task
        if self.udp is not None:
            self.udp.close()
        for future in self._pending.values():
            future.cancel()

    # ----------------------------------------------------------------- transports
    def _remote(self, protocol: L4Protocol) -> Address:
        if self.offer is None:
            raise SomeIpError(f"{self.interface.name}: not started (no offer)")
        address = self.offer.endpoint(protocol)
        if address is None:
            raise SomeIpError(f"{self.interface.name}: the offer has no {protocol.name} endpoint")
        return address

    async def connect_tcp(self, *, timeout: float = 5.0) -> TcpConnection:
        if self.tcp is None or self.tcp.closed.is_set():
            self.tcp = await TcpConnection.connect(self._remote(L4Protocol.TCP), self._on_message,
                                                   local_host=self.address, tap=self.tap,
                                                   max_message=self.max_message, timeout=timeout)
            self._tcp_task = asyncio.create_task(self.tcp.run(), name=f"{self.interface.name}-client-tcp")
        return self.tcp

    def _on_message(self, message: Message, _peer: Address) -> None:
        if message.service_id != self.interface.service_id:
            return
        if message.message_type in (MessageType.RESPONSE, MessageType.ERROR):
            future = self._pending.pop((message.method_id, message.session_id), None)
            if future is not None and not future.done() and message.client_id == self.client_id:
                future.set_result(message)
        elif message.message_type == MessageType.NOTIFICATION:
            found = self.interface.event_by_id(message.method_id)
            if found is None:
                log.debug("%s: unknown event 0x%04x", self.interface.name, message.method_id)
                return
            name, kind = found
            self._events[name].put_nowait(kind.decode(message.payload))

    # ----------------------------------------------------------------- methods and fields
    async def call(self, name: str, value: Any = None, *, timeout: float) -> Any:
        spec = self.interface.methods.get(name)
        if spec is None:
            raise KeyError(f"{self.interface.name} has no method {name!r}")
        if spec.fire_and_forget:
            raise SomeIpError(f"{name} is fire-and-forget: use send()")
        return await self._request(spec.method_id, spec.request, spec.response, value, spec.reliable, timeout)

    async def send(self, name: str, value: Any = None) -> None:
        """A REQUEST_NO_RETURN (fire-and-forget method)."""
        spec = self.interface.methods[name]
        message = self._message(spec.method_id, MessageType.REQUEST_NO_RETURN, spec.request.encode(value))
        await self._transmit(message, spec.reliable)

    async def get_field(self, name: str, *, timeout: float) -> Any:
        spec = self.interface.fields[name]
        if spec.getter is None:
            raise SomeIpError(f"field {name} has no getter")
        return await self._request(spec.getter, VOID, spec.type, None, spec.reliable, timeout)

    async def set_field(self, name: str, value: Any, *, timeout: float) -> Any:
        spec = self.interface.fields[name]
        if spec.setter is None:
            raise SomeIpError(f"field {name} has no setter")
        return await self._request(spec.setter, spec.type, spec.type, value, spec.reliable, timeout)

    def _message(self, method_id: int, kind: MessageType, payload: bytes) -> Message:
        session, _ = self._sessions.take()
        return Message(self.interface.service_id, method_id, self.client_id, session, self.interface.major_version,
                       kind, ReturnCode.E_OK, payload)

    async def _transmit(self, message: Message, reliable: bool) -> None:
        if reliable:
            connection = await self.connect_tcp()
            connection.send(message)
            await connection.drain()
        else:
            if self.udp is None:
                raise SomeIpError(f"{self.interface.name}: not started")
            self.udp.send(message, self._remote(L4Protocol.UDP))

    async def _request(self, method_id: int, request: DataType, response: DataType, value: Any, reliable: bool,
                       timeout: float) -> Any:
        message = self._message(method_id, MessageType.REQUEST, request.encode(value))
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        key = (method_id, message.session_id)
        self._pending[key] = future
        try:
            await self._transmit(message, reliable)
            answer = await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise OtaTimeoutError(f"{self.interface.name}: no answer to method 0x{method_id:04x} "
                                  f"within {timeout:g} s") from None
        finally:
            self._pending.pop(key, None)
        if answer.message_type == MessageType.ERROR or answer.return_code != ReturnCode.E_OK:
            raise SomeIpError(f"{self.interface.name}: method 0x{method_id:04x} answered "
                              f"{return_code_name(answer.return_code)}", return_code=answer.return_code)
        return response.decode(answer.payload)

    # ----------------------------------------------------------------- events
    async def subscribe(self, eventgroup_id: int, *, timeout: float) -> None:
        if self.offer is None or self.udp is None:
            raise SomeIpError(f"{self.interface.name}: not started")
        if eventgroup_id not in self.interface.eventgroups:
            raise SomeIpError(f"{self.interface.name} has no eventgroup 0x{eventgroup_id:04x}")
        options = [IPv4EndpointOption(self.address, L4Protocol.UDP, self.udp.local[1])]
        if self.interface.group_is_reliable(eventgroup_id):
            connection = await self.connect_tcp(timeout=timeout)
            options.append(IPv4EndpointOption(self.address, L4Protocol.TCP, connection.local[1]))
        await self.sd.subscribe(self.offer, eventgroup_id, tuple(options), timeout=timeout)
        self._subscribed.add(eventgroup_id)

    def unsubscribe(self, eventgroup_id: int) -> None:
        if self.offer is not None and eventgroup_id in self._subscribed:
            self._subscribed.discard(eventgroup_id)
            self.sd.unsubscribe(self.offer, eventgroup_id)

    async def next_event(self, name: str, *, timeout: float) -> Any:
        """The next notification of event or field ``name`` (queued from the moment it arrived)."""
        try:
            return await asyncio.wait_for(self._events[name].get(), timeout)
        except asyncio.TimeoutError:
            if self.tcp is not None and self.tcp.error is not None:
                raise TransportError(f"{self.interface.name}: TCP connection failed: {self.tcp.error}") from None
            raise OtaTimeoutError(f"{self.interface.name}: no {name} event within {timeout:g} s") from None

    def pending_events(self, name: str) -> int:
        return self._events[name].qsize()
