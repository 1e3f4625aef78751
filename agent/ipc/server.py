"""The daemon side of the IPC: JSON-RPC 2.0 over a Unix socket, asyncio.

Usage (a daemon built on :class:`agent.runtime.daemon.Daemon` gets all this
wired; this is the server on its own)::

    async def start_download(call: Call) -> dict[str, Any]:
        order = await manager.start(call.params["targets"])   # params already validated
        return {"order": order.id}                            # result validated before sending

    server = IpcServer(
        "/run/ota-agent/dmclient.sock",
        {"dmclient.download.start": start_download},
        PROTOCOL.for_daemon("dmclient"),
    )
    await server.start()
    server.publish("dmclient.download.state", {"target": {...}})   # to its subscribers only
    ...
    await server.close()

What the server guarantees:

* Every connection is checked with SO_PEERCRED against the access policy
  before anything is read; a refused peer gets one -32001 error and is
  disconnected. An accepted peer first receives ``daemon.hello``.
* Every request is validated against the protocol: unknown method -> -32601,
  invalid params -> -32602, before the handler runs. Results and events are
  validated before they are sent; a handler returning an invalid result is a
  daemon bug, answered -32603 and logged.
* Bytes that are not JSON (-32700), JSON that is not JSON-RPC (-32600), a
  batch (-32600), a message over ``max_message_bytes`` (-32600; its tail is
  skipped up to the next newline): each gets an error response and the
  connection keeps serving the next message. The daemon keeps running.
* A handler raising an :class:`~agent.errors.OtaError` answers the
  application error code of its branch (see :mod:`agent.ipc.error_codes`);
  any other exception answers -32603 and is logged with its traceback.
* Requests on one connection run concurrently (at most ``max_inflight`` at a
  time; reading pauses beyond that). Notifications from clients run the
  handler and answer nothing.
* Subscriptions are per connection. A subscriber that stops reading is
  disconnected once ``max_backlog`` bytes wait for it: publishing never
  blocks the daemon.
* ``close()`` stops accepting, answers new requests with -32002, lets
  in-flight requests finish (up to a timeout), then closes the connections
  and removes the socket file.

Handlers are ``async def handler(call: Call) -> result``. Handlers of the
common methods (``daemon.ping``, ``daemon.status``, ``subscribe``,
``unsubscribe``) are built in; a daemon may replace ``daemon.status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent import __version__
from agent.errors import ConfigurationError, OtaError
from agent.ipc.error_codes import (
    ACCESS_DENIED,
    INTERNAL_ERROR,
    INVALID_REQUEST,
    SHUTTING_DOWN,
    MethodNotFoundError,
    SchemaError,
    error_to_wire,
)
from agent.ipc.framing import Oversized
from agent.ipc.jsonrpc import (
    DecodeError,
    ErrorResponse,
    JsonId,
    Notification,
    Request,
    Response,
    encode,
)
from agent.ipc.listener import Listener, bind_listener
from agent.ipc.peercred import AccessPolicy, PeerCred, peer_credentials
from agent.ipc.registry import Protocol
from agent.ipc.stream import MessageStream

log = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE = 1 << 20
_LOUD_ERRORS = 5  # bad messages per connection logged at WARNING; the rest at DEBUG

BUILTIN_METHODS = frozenset({"daemon.ping", "daemon.status", "subscribe", "unsubscribe"})


@dataclass(frozen=True)
class Call:
    """One validated request (or client notification) as a handler sees it."""

    method: str
    params: dict[str, Any]
    peer: PeerCred
    #: true for a JSON-RPC notification: the result is discarded, nothing is answered
    notification: bool = False
    connection_id: int = 0


Handler = Callable[[Call], Awaitable[Any]]
StatusProvider = Callable[[], Mapping[str, Any]]


@dataclass
class _Connection:
    id: int
    stream: MessageStream
    peer: PeerCred
    subscriptions: set[str] = field(default_factory=set)
    bad_messages: int = 0


class IpcServer:
    """A JSON-RPC 2.0 server on a Unix socket; see the module docstring for what it guarantees."""

    def __init__(
        self,
        socket_path: str | os.PathLike[str],
        handlers: Mapping[str, Handler],
        protocol: Protocol,
        *,
        name: str | None = None,
        version: str = __version__,
        mode: int = 0o660,
        group: int | None = None,
        policy: AccessPolicy | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE,
        max_inflight: int = 32,
        max_backlog: int = 4 << 20,
        status: StatusProvider | None = None,
    ) -> None:
        self.path = Path(socket_path)
        self.protocol = protocol
        self.name = name or protocol.daemon or self.path.stem
        self.version = version
        self.mode = mode
        self.group = group
        self.policy = policy or AccessPolicy.default()
        self.max_message_bytes = max_message_bytes
        self.max_inflight = max_inflight
        self.max_backlog = max_backlog
        self._status = status
        self._handlers = self._check_handlers(handlers)
        self._listener: Listener | None = None
        self._server: asyncio.AbstractServer | None = None
        self._connections: dict[int, _Connection] = {}
        self._readers: set[asyncio.Task[Any]] = set()
        self._requests: set[asyncio.Task[None]] = set()
        self._next_id = 0
        self._closing = False
        self._started = time.monotonic()

    def _check_handlers(self, handlers: Mapping[str, Handler]) -> dict[str, Handler]:
        builtin: dict[str, Handler] = {
            "daemon.ping": self._ping,
            "daemon.status": self._basic_status,
            "subscribe": self._subscription,
            "unsubscribe": self._subscription,
        }
        fixed = sorted({"subscribe", "unsubscribe"} & set(handlers))
        if fixed:
            raise ConfigurationError(f"{self.name}: {', '.join(fixed)} are served by IpcServer itself")
        undeclared = sorted(set(handlers) - set(self.protocol.methods))
        if undeclared:
            raise ConfigurationError(
                f"{self.name}: handlers for undeclared methods: {', '.join(undeclared)} "
                "(declare them in agent/ipc/declarations/)")
        served = {**{k: v for k, v in builtin.items() if k in self.protocol.methods}, **handlers}
        missing = sorted(set(self.protocol.methods) - set(served))
        if missing:
            raise ConfigurationError(f"{self.name}: no handler for declared methods: {', '.join(missing)}")
        return served

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind the socket (stale one removed, mode and group set) and start accepting."""
        if self._server is not None:
            raise RuntimeError("server already started")
        self._listener = bind_listener(self.path, mode=self.mode, group=self.group)
        try:
            self._server = await asyncio.start_unix_server(self._accept, sock=self._listener.sock)
        except BaseException:
            self._listener.sock.close()
            self._listener.remove()
            raise
        self._started = time.monotonic()
        log.info("%s: serving on %s (mode %o, %s)", self.name, self.path, self.mode, self.policy.describe())

    async def close(self, timeout: float = 5.0) -> None:
        """Stop accepting, let in-flight requests finish (up to ``timeout``), close, remove the socket."""
        if self._closing:
            return
        self._closing = True
        if self._server is not None:
            self._server.close()
        if self._requests:
            _, pending = await asyncio.wait(set(self._requests), timeout=timeout)
            if pending:
                log.warning("%s: %d request(s) still running after %.1f s; cancelling them",
                            self.name, len(pending), timeout)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        for conn in list(self._connections.values()):
            conn.stream.close()
        for reader in list(self._readers):
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout)
        if self._listener is not None:
            self._listener.remove()
        log.info("%s: stopped serving on %s", self.name, self.path)

    async def __aenter__(self) -> IpcServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connections(self) -> int:
        return len(self._connections)

    # -- events -----------------------------------------------------------------------------
    def publish(self, event: str, params: Mapping[str, Any] | None = None) -> int:
        """Send an event to every connection subscribed to it; returns how many got it.

        Validated first (:class:`SchemaError` for params that do not match the
        declaration: a daemon bug, raised to the caller). Never waits.
        """
        checked = self.protocol.check_event(event, dict(params) if params is not None else None)
        line = encode(Notification(method=event, params=checked))
        if len(line) - 1 > self.max_message_bytes:
            raise SchemaError(f"{event}: event of {len(line) - 1} bytes exceeds {self.max_message_bytes}")
        sent = 0
        for conn in list(self._connections.values()):
            if event not in conn.subscriptions:
                continue
            if conn.stream.send_nowait(line, self.max_backlog):
                sent += 1
            else:
                log.warning("%s: subscriber %s is not reading (%d bytes waiting); disconnecting it",
                            self.name, conn.peer, conn.stream.backlog)
                conn.stream.close()
        return sent

    # -- connections ----------------------------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._readers.add(task)
        stream = MessageStream(reader, writer, max_message_bytes=self.max_message_bytes,
                               label=f"{self.name} connection")
        try:
            await self._serve(stream, writer)
        except asyncio.CancelledError:
            pass
        except Exception:  # a bug here must not take the daemon down
            log.exception("%s: connection handler failed", self.name)
        finally:
            await stream.wait_closed()
            if task is not None:
                self._readers.discard(task)

    async def _serve(self, stream: MessageStream, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        try:
            peer = peer_credentials(sock)
        except OSError as e:
            log.warning("%s: cannot read the credentials of a new connection (%s); closing it", self.name, e)
            return
        if self._closing:
            return
        if not self.policy.allows(peer):
            log.warning("%s: refused %s: %s", self.name, peer, self.policy.describe())
            reason = f"access denied: {peer} may not use {self.name} ({self.policy.describe()})"
            await self._send_error(stream, None, ACCESS_DENIED, reason)
            return
        self._next_id += 1
        conn = _Connection(id=self._next_id, stream=stream, peer=peer)
        self._connections[conn.id] = conn
        log.debug("%s: connection %d from %s", self.name, conn.id, peer)
        inflight = asyncio.Semaphore(self.max_inflight)
        try:
            await stream.send(encode(Notification("daemon.hello", self._hello())))
            while True:
                item = await stream.receive()
                if item is None:
                    break
                if isinstance(item, (Request, Notification)):
                    await inflight.acquire()
                    task = asyncio.create_task(self._dispatch(conn, item))
                    self._requests.add(task)

                    def done(t: asyncio.Task[None], slots: asyncio.Semaphore = inflight) -> None:
                        self._requests.discard(t)
                        slots.release()

                    task.add_done_callback(done)
                else:
                    await self._reject(conn, item)
        except OtaError as e:  # the peer went away while we answered
            log.debug("%s: connection %d: %s", self.name, conn.id, e)
        finally:
            # requests still running finish (an operation started is not cut in the middle);
            # their answers have nowhere to go and are dropped
            del self._connections[conn.id]
            log.debug("%s: connection %d closed", self.name, conn.id)

    def _hello(self) -> dict[str, Any]:
        params = {"daemon": self.name, "pid": os.getpid(), "version": self.version,
                  "protocol": self.protocol.fingerprint}
        return self.protocol.check_event("daemon.hello", params) if "daemon.hello" in self.protocol.events \
            else params

    async def _reject(self, conn: _Connection,
                      item: DecodeError | Oversized | Response | ErrorResponse) -> None:
        if isinstance(item, Oversized):
            code, msg_id = INVALID_REQUEST, None
            message = (f"invalid request: message larger than {item.limit} bytes; "
                       "skipped up to its end, send the next message")
        elif isinstance(item, DecodeError):
            code, msg_id, message = item.code, item.id, str(item)
        else:
            code, msg_id = INVALID_REQUEST, item.id
            message = "invalid request: a daemon takes requests and notifications, not responses"
        conn.bad_messages += 1
        level = logging.WARNING if conn.bad_messages <= _LOUD_ERRORS else logging.DEBUG
        log.log(level, "%s: bad message from %s: %s", self.name, conn.peer, message)
        await self._send_error(conn.stream, msg_id, code, message)

    # -- requests ---------------------------------------------------------------------------------
    async def _dispatch(self, conn: _Connection, msg: Request | Notification) -> None:
        is_request = isinstance(msg, Request)
        msg_id: JsonId = msg.id if isinstance(msg, Request) else None
        try:
            if self._closing:
                raise _Refusal(SHUTTING_DOWN, f"{self.name} is shutting down")
            params = self.protocol.check_params(msg.method, msg.params)
            call = Call(method=msg.method, params=params, peer=conn.peer,
                        notification=not is_request, connection_id=conn.id)
            result = await self._handlers[msg.method](call)
            if not is_request:
                return
            try:
                self.protocol.check_result(msg.method, result)
                line = encode(Response(id=msg_id, result=result))
            except SchemaError as e:
                log.error("%s: handler of %s returned an invalid result: %s", self.name, msg.method, e)
                raise _Refusal(INTERNAL_ERROR, f"internal error: {self.name} produced an invalid result "
                                               f"for {msg.method}") from e
            if len(line) - 1 > self.max_message_bytes:
                log.error("%s: result of %s is %d bytes, over the %d limit", self.name, msg.method,
                          len(line) - 1, self.max_message_bytes)
                raise _Refusal(INTERNAL_ERROR, f"internal error: the result of {msg.method} is larger "
                                               f"than {self.max_message_bytes} bytes")
            await conn.stream.send(line)
            return
        except asyncio.CancelledError:
            raise
        except _Refusal as e:
            code, message, data = e.code, e.message, None
        except MethodNotFoundError as e:
            code, message, data = e.code, str(e), None
        except OtaError as e:
            code, message, data = error_to_wire(e)
            log.info("%s: %s failed: %s", self.name, msg.method, e)
        except Exception as e:
            log.exception("%s: handler of %s crashed", self.name, msg.method)
            code, data = INTERNAL_ERROR, None
            message = f"internal error in {msg.method}: {type(e).__name__}: {e}"
        if is_request:
            with contextlib.suppress(OtaError):
                await self._send_error(conn.stream, msg_id, code, message, data)
        else:
            log.info("%s: notification %s from %s failed: %s", self.name, msg.method, conn.peer, message)

    async def _send_error(self, stream: MessageStream, msg_id: JsonId, code: int, message: str,
                          data: Any = None) -> None:
        try:
            line = encode(ErrorResponse(id=msg_id, code=code, message=message, data=data))
        except SchemaError:  # error data that is not JSON: send without it
            line = encode(ErrorResponse(id=msg_id, code=code, message=message))
        await stream.send(line)

    # -- built-in methods ----------------------------------------------------------------------------
    async def _ping(self, call: Call) -> dict[str, Any]:
        return {"daemon": self.name, "pid": os.getpid()}

    def status_base(self) -> dict[str, Any]:
        """The common part of ``daemon.status``; a daemon's own status handler starts from it."""
        return {
            "daemon": self.name,
            "pid": os.getpid(),
            "version": self.version,
            "state": "stopping" if self._closing else "ready",
            "uptime_s": max(0.0, time.monotonic() - self._started),
            "connections": len(self._connections),
            "workers": [],
            "details": {},
        }

    async def _basic_status(self, call: Call) -> dict[str, Any]:
        status = self.status_base()
        if self._status is not None:
            status.update(self._status())
        return status

    async def _subscription(self, call: Call) -> dict[str, Any]:
        """``subscribe`` / ``unsubscribe``: per connection."""
        conn = self._connections.get(call.connection_id)
        names: list[str] | None = call.params.get("events")
        if names is not None:
            for name in names:
                event = self.protocol.event(name)  # SchemaError naming what this daemon publishes
                if not event.subscribable:
                    raise SchemaError(f"event {name!r} is sent to every connection; it needs no subscription")
        if conn is None:  # the peer already hung up
            return {"events": []}
        if call.method == "subscribe":
            conn.subscriptions.update(names or ())
        elif names is None:
            conn.subscriptions.clear()
        else:
            conn.subscriptions.difference_update(names)
        return {"events": sorted(conn.subscriptions)}


class _Refusal(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
