"""A SOME/IP service provider (asyncio): offers one service instance, answers its methods, sends its
events and field notifications to subscribers, over UDP and TCP.

    provider = ServiceProvider(DOWNLOAD_SERVICE, sd, address="127.0.0.2")
    provider.method("start", start_download)          # async or plain callable: request value -> response value
    provider.set_field("status", {...})               # getter answered here, notifier sent to subscribers
    await provider.start()
    provider.notify("progress", {...})

Requests are checked in PRS order (service, interface version, method, message type, payload) and
answered with an ERROR of the matching return code; a handler may raise :class:`SomeIpError` with
its own ``return_code``, any other :class:`OtaError` becomes E_NOT_OK. REQUEST_NO_RETURN is never
answered. The answer goes back on the transport the request came on.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from agent.errors import OtaError, SomeIpError
from agent.someip.discovery import ServiceDiscovery
from agent.someip.interface import FieldSpec, ServiceInterface
from agent.someip.message import Message, MessageType, ReturnCode
from agent.someip.sd_message import IPv4EndpointOption, L4Protocol
from agent.someip.sd_registry import Address, Subscriber
from agent.someip.sd_session import SessionCounter
from agent.someip.serialization import DataType
from agent.someip.transport import TCP_MAX_MESSAGE, Tap, TcpConnection, UdpEndpoint, bind_udp

log = logging.getLogger(__name__)

Handler = Callable[[Any], Any | Awaitable[Any]]
Reply = Callable[[Message], None]


class ServiceProvider:
    def __init__(self, interface: ServiceInterface, sd: ServiceDiscovery, *, address: str, udp_port: int = 0,
                 tcp_port: int = 0, tap: Tap | None = None, max_message: int = TCP_MAX_MESSAGE) -> None:
        self.interface = interface
        self.sd = sd
        self.address = address
        self.udp_port = udp_port
        self.tcp_port = tcp_port
        self.tap = tap
        self.max_message = max_message
        self.handlers: dict[int, tuple[str, Handler]] = {}
        self.field_values: dict[str, Any] = {}
        self.field_setters: dict[str, Callable[[Any], Any]] = {}
        self.connections: dict[Address, TcpConnection] = {}
        self.udp: UdpEndpoint | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._event_sessions = SessionCounter()
        self.connected = asyncio.Condition()
        #: initial field values for a subscriber whose TCP connection the server has not registered yet
        #: (the kernel accepted it, but the SD subscribe was handled first): sent once it is
        self._initial_for: dict[Address, dict[int, Message]] = {}

    # ----------------------------------------------------------------- declaration
    def method(self, name: str, handler: Handler) -> None:
        spec = self.interface.methods.get(name)
        if spec is None:
            raise KeyError(f"{self.interface.name} has no method {name!r}")
        self.handlers[spec.method_id] = (name, handler)

    def on_set(self, name: str, validator: Callable[[Any], Any]) -> None:
        """``validator(value)`` runs on a remote setter call; it returns the value to keep or raises."""
        self._field(name)
        self.field_setters[name] = validator

    def set_field(self, name: str, value: Any) -> None:
        """Set a field's value; subscribers of its eventgroups get a notification."""
        spec = self._field(name)
        spec.type.encode(value)  # refuse a value that cannot go on the wire, here rather than per subscriber
        self.field_values[name] = value
        if spec.notifier is not None:
            self._send_event(spec.notifier, spec.type, value, spec.eventgroups, spec.reliable)

    def notify(self, name: str, value: Any) -> int:
        """Send event ``name`` to every subscriber of its eventgroups; returns how many got it."""
        spec = self.interface.events.get(name)
        if spec is None:
            raise KeyError(f"{self.interface.name} has no event {name!r}")
        return self._send_event(spec.event_id, spec.type, value, spec.eventgroups, spec.reliable)

    async def drain(self) -> None:
        """Wait until reliable (TCP) events and answers have been handed to the kernel."""
        for connection in list(self.connections.values()):
            await connection.drain()

    def _field(self, name: str) -> FieldSpec:
        spec = self.interface.fields.get(name)
        if spec is None:
            raise KeyError(f"{self.interface.name} has no field {name!r}")
        return spec

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        self.udp = await UdpEndpoint.open(bind_udp((self.address, self.udp_port)), self._on_udp, tap=self.tap,
                                          name=f"{self.interface.name}-udp")
        self._server = await asyncio.start_server(self._on_connection, self.address, self.tcp_port, limit=1 << 20)
        tcp_port = self._server.sockets[0].getsockname()[1]
        options = (IPv4EndpointOption(self.address, L4Protocol.UDP, self.udp.local[1]),
                   IPv4EndpointOption(self.address, L4Protocol.TCP, tcp_port))
        self.sd.offer(self.interface, options, accept=self._accept, subscribed=self._subscribed)

    async def stop(self) -> None:
        self.sd.stop_offer(self.interface.service_id, self.interface.instance_id)
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections.values()):
            connection.close()
        self._initial_for.clear()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            await self._server.wait_closed()
        if self.udp is not None:
            self.udp.close()

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = TcpConnection(reader, writer, lambda m, _a: self._dispatch(m, connection.send), tap=self.tap,
                                   max_message=self.max_message, name=f"{self.interface.name}-tcp")
        self.connections[connection.peer] = connection
        for message in self._initial_for.pop(connection.peer, {}).values():
            connection.send(message)
        async with self.connected:
            self.connected.notify_all()
        try:
            await connection.run()
        finally:
            self.connections.pop(connection.peer, None)

    # ----------------------------------------------------------------- subscriptions
    def _accept(self, subscriber: Subscriber) -> bool:
        needs_tcp = self.interface.group_is_reliable(subscriber.eventgroup_id)
        return subscriber.tcp is not None if needs_tcp else subscriber.udp is not None

    def _subscribed(self, subscriber: Subscriber) -> None:
        """PRS initial events: a new subscriber gets the current value of the group's fields."""
        for name, spec in self.interface.fields.items():
            if spec.notifier is not None and subscriber.eventgroup_id in spec.eventgroups and name in self.field_values:
                message = self._event_message(spec.notifier, spec.type, self.field_values[name])
                if spec.reliable and subscriber.tcp is not None and subscriber.tcp not in self.connections:
                    self._initial_for.setdefault(subscriber.tcp, {})[spec.notifier] = message
                    continue
                self._send_to(subscriber, message, spec.reliable)

    def _event_message(self, event_id: int, kind: DataType, value: Any) -> Message:
        session, _ = self._event_sessions.take()
        return Message(self.interface.service_id, event_id, 0, session, self.interface.major_version,
                       MessageType.NOTIFICATION, ReturnCode.E_OK, kind.encode(value))

    def _send_event(self, event_id: int, kind: DataType, value: Any, groups: tuple[int, ...], reliable: bool) -> int:
        local = self.sd.local_offers.get((self.interface.service_id, self.interface.instance_id))
        if local is None:
            return 0
        targets: dict[Address | None, Subscriber] = {}
        for group in groups:
            for subscriber in local.subscribers.of_group(group):
                targets.setdefault(subscriber.tcp if reliable else subscriber.udp, subscriber)
        message = self._event_message(event_id, kind, value)
        return sum(self._send_to(subscriber, message, reliable) for subscriber in targets.values())

    def _send_to(self, subscriber: Subscriber, message: Message, reliable: bool) -> bool:
        if reliable:
            connection = self.connections.get(subscriber.tcp) if subscriber.tcp else None
            if connection is None:
                log.warning("%s: no TCP connection from subscriber %s", self.interface.name, subscriber.tcp)
                return False
            connection.send(message)
            return True
        if subscriber.udp is None or self.udp is None:
            return False
        self.udp.send(message, subscriber.udp)
        return True

    # ----------------------------------------------------------------- requests
    def _on_udp(self, message: Message, peer: Address) -> None:
        assert self.udp is not None
        udp = self.udp
        self._dispatch(message, lambda reply: udp.send(reply, peer))

    def _dispatch(self, request: Message, reply: Reply) -> None:
        if request.message_type not in (MessageType.REQUEST, MessageType.REQUEST_NO_RETURN):
            log.debug("%s: ignoring %s", self.interface.name, request)
            return
        task = asyncio.get_running_loop().create_task(self._answer(request, reply))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, request: Message, reply: Reply) -> None:
        wants_answer = request.message_type == MessageType.REQUEST
        try:
            payload = await self._invoke(request)
            answer = request.reply(payload)
        except SomeIpError as e:
            log.info("%s: %s answered 0x%02x: %s", self.interface.name, request, e.return_code, e)
            answer = request.reply(return_code=e.return_code or ReturnCode.E_NOT_OK)
        except OtaError as e:
            log.info("%s: %s failed: %s", self.interface.name, request, e)
            answer = request.reply(return_code=ReturnCode.E_NOT_OK)
        if wants_answer:
            try:
                reply(answer)
            except OtaError as e:
                log.warning("%s: cannot answer %s: %s", self.interface.name, request, e)

    async def _invoke(self, request: Message) -> bytes:
        spec = self.interface
        if request.service_id != spec.service_id:
            raise SomeIpError(f"unknown service 0x{request.service_id:04x}", return_code=ReturnCode.E_UNKNOWN_SERVICE)
        if request.interface_version != spec.major_version:
            raise SomeIpError(f"interface version {request.interface_version}, offered {spec.major_version}",
                              return_code=ReturnCode.E_WRONG_INTERFACE_VERSION)
        for name, field_spec in spec.fields.items():
            if request.method_id == field_spec.getter:
                self._check_type(request, MessageType.REQUEST)
                if name not in self.field_values:
                    raise SomeIpError(f"field {name} has no value yet", return_code=ReturnCode.E_NOT_READY)
                return field_spec.type.encode(self.field_values[name])
            if request.method_id == field_spec.setter:
                self._check_type(request, MessageType.REQUEST)
                value = self._decode(field_spec.type, request.payload)
                validator = self.field_setters.get(name)
                if validator is not None:
                    value = validator(value)
                self.set_field(name, value)
                return field_spec.type.encode(value)
        method = next((m for m in spec.methods.values() if m.method_id == request.method_id), None)
        if method is None or request.method_id not in self.handlers:
            raise SomeIpError(f"unknown method 0x{request.method_id:04x}", return_code=ReturnCode.E_UNKNOWN_METHOD)
        self._check_type(request, MessageType.REQUEST_NO_RETURN if method.fire_and_forget else MessageType.REQUEST)
        name, handler = self.handlers[request.method_id]
        result = handler(self._decode(method.request, request.payload))
        if inspect.isawaitable(result):
            result = await result
        return method.response.encode(result)

    @staticmethod
    def _check_type(request: Message, expected: MessageType) -> None:
        if request.message_type != expected:
            raise SomeIpError(f"{request.message_type.name} where {expected.name} was expected",
                              return_code=ReturnCode.E_WRONG_MESSAGE_TYPE)

    @staticmethod
    def _decode(kind: DataType, payload: bytes) -> Any:
        try:
            return kind.decode(payload)
        except SomeIpError as e:
            raise SomeIpError(str(e), return_code=ReturnCode.E_MALFORMED_MESSAGE) from None
