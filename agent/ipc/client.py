"""The caller side of the IPC: an asyncio JSON-RPC client that survives daemon restarts.

Usage::

    async with IpcClient.for_daemon("dmclient") as dm:           # $OTA_RUNTIME_DIR/dmclient.sock
        status = await dm.call("daemon.status")
        order = await dm.call("dmclient.download.start", {"targets": [...]}, timeout=10)

        async with await dm.subscribe("dmclient.download.progress") as progress:
            async for event in progress:                          # EventMessage(event, params)
                print(event.params["targets"])

        # or a callback (called in the event loop; must not block)
        await dm.subscribe("daemon.state", callback=lambda ev: print(ev.params["state"]))

Behaviour:

* Params are validated before sending (:class:`SchemaError`, nothing sent);
  results and events are validated on receipt (an invalid result raises
  :class:`SchemaError`; an invalid event is logged and dropped).
* Errors come back as the exception the daemon raised: an OtaError branch
  with the daemon's message (:mod:`agent.ipc.error_codes`).
* Every call has a timeout (``call_timeout``, or per call):
  :class:`~agent.errors.OtaTimeoutError` when it passes.
* When the daemon goes away, calls waiting for an answer fail with
  :class:`~agent.errors.TransportError` (the daemon may or may not have
  carried them out). With ``reconnect=True`` (the default) the client keeps
  reconnecting with back-off, re-subscribes every live subscription, then
  runs the ``on_connect`` callbacks (to re-read state the events missed); new
  calls wait up to ``connect_timeout`` for the daemon to come back. With
  ``reconnect=False`` (the CLI), an unreachable daemon fails the call at once.
* The client trusts only a daemon whose SO_PEERCRED uid passes ``policy``
  and that introduces itself with ``daemon.hello`` under the expected name.
  The default policy trusts root, our own uid and the owner of the socket's
  directory (systemd's ``RuntimeDirectory=`` makes it the daemons' user), so
  a process of another user that got a socket into that directory is not
  taken for the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from agent.errors import ConfigurationError, OtaError, OtaTimeoutError, ProtocolError, TransportError
from agent.ipc.error_codes import ACCESS_DENIED, AccessDeniedError, SchemaError, error_from_wire
from agent.ipc.framing import Oversized
from agent.ipc.jsonrpc import DecodeError, ErrorResponse, Notification, Request, Response, encode
from agent.ipc.paths import check_socket_path, socket_path
from agent.ipc.peercred import AccessPolicy, peer_credentials
from agent.ipc.registry import Protocol
from agent.ipc.server import DEFAULT_MAX_MESSAGE
from agent.ipc.stream import MessageStream
from agent.ipc.subscription import EventCallback, EventMessage, Subscription

log = logging.getLogger(__name__)


ConnectCallback = Callable[[], Awaitable[None] | None]


class _Fatal(Exception):
    """Connecting again cannot help (access denied, wrong daemon): stop and report."""

    def __init__(self, error: OtaError) -> None:
        super().__init__(str(error))
        self.error = error


class IpcClient:
    """A JSON-RPC client for one daemon's socket; see the module docstring."""

    def __init__(
        self,
        socket_path: str | os.PathLike[str],
        protocol: Protocol | None = None,
        *,
        daemon: str | None = None,
        connect_timeout: float = 5.0,
        call_timeout: float = 30.0,
        reconnect: bool = True,
        retry_delay: float = 0.05,
        max_retry_delay: float = 2.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE,
        policy: AccessPolicy | None = None,
    ) -> None:
        self.path = Path(socket_path)
        check_socket_path(self.path)
        if protocol is None:
            from agent.ipc.protocol import PROTOCOL
            protocol = PROTOCOL.for_daemon(daemon) if daemon else PROTOCOL
        self.protocol = protocol
        self.daemon = daemon or protocol.daemon
        self.connect_timeout = connect_timeout
        self.call_timeout = call_timeout
        self.reconnect = reconnect
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.max_message_bytes = max_message_bytes
        self.policy = policy
        #: the ``daemon.hello`` params of the current connection
        self.hello: dict[str, Any] = {}
        #: how many times a connection was established (1 after the first connect)
        self.generation = 0
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[str, asyncio.Future[Any]]] = {}
        self._subscriptions: list[Subscription] = []
        self._connect_callbacks: list[ConnectCallback] = []
        self._stream: MessageStream | None = None
        self._connected: asyncio.Event | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._fatal: OtaError | None = None
        self._last_error: OtaError | None = None
        self._closing = False

    @classmethod
    def for_daemon(cls, daemon: str, *, runtime_dir: str | Path | None = None, **kwargs: Any) -> IpcClient:
        """A client for ``daemon`` at its socket in the runtime dir, with that daemon's protocol."""
        return cls(socket_path(daemon, runtime_dir), daemon=daemon, **kwargs)

    @property
    def name(self) -> str:
        return self.daemon or self.path.stem

    @property
    def connected(self) -> bool:
        return self._stream is not None

    @property
    def closed(self) -> bool:
        return self._closing

    def on_connect(self, callback: ConnectCallback) -> None:
        """Run ``callback`` (sync or async) after every (re)connection, once subscriptions are restored."""
        self._connect_callbacks.append(callback)

    # -- lifecycle ----------------------------------------------------------------------------
    async def connect(self) -> None:
        """Connect now (calls connect on demand anyway); raises if the daemon cannot be reached."""
        await self._wait_connected()

    async def close(self) -> None:
        """Disconnect for good: pending calls fail with TransportError, subscriptions end."""
        if self._closing:
            return
        self._closing = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            try:
                await self._supervisor
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("%s: connection supervisor failed", self.name)
        if self._stream is not None:
            await self._stream.wait_closed()
            self._stream = None
        self._fail_pending(lambda: TransportError(f"client for {self.name} closed"))
        for sub in self._subscriptions:
            sub._end()
        self._subscriptions.clear()

    async def __aenter__(self) -> IpcClient:
        try:
            await self.connect()
        except BaseException:
            await self.close()  # do not leave a reconnecting task behind
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- calls -------------------------------------------------------------------------------
    async def call(self, method: str, params: Mapping[str, Any] | None = None, *,
                   timeout: float | None = None) -> Any:
        """Call ``method`` and return its validated result; raises what the daemon raised."""
        checked = self.protocol.check_params(method, dict(params) if params is not None else None)
        stream = await self._wait_connected()
        return await self._call_on(stream, method, checked, self.call_timeout if timeout is None else timeout)

    async def notify(self, method: str, params: Mapping[str, Any] | None = None) -> None:
        """Send a notification: the daemon runs ``method`` and answers nothing (errors only logged there)."""
        checked = self.protocol.check_params(method, dict(params) if params is not None else None)
        stream = await self._wait_connected()
        await stream.send(self._encode(Notification(method=method, params=checked)))

    async def subscribe(self, *events: str, callback: EventCallback | None = None,
                        queue_size: int = 1000) -> Subscription:
        """Receive ``events``; see :class:`Subscription`. Unknown event names raise SchemaError."""
        if not events:
            raise SchemaError("subscribe: name at least one event")
        for name in events:
            if not self.protocol.event(name).subscribable:
                raise SchemaError(f"event {name!r} is sent to every connection; it needs no subscription")
        sub = Subscription(self, frozenset(events), callback, queue_size)
        wanted = self._wanted_events()
        self._subscriptions.append(sub)
        new = sorted(sub.events - wanted)
        if new:
            try:
                await self.call("subscribe", {"events": new})
            except BaseException:
                self._subscriptions.remove(sub)
                sub._end()
                raise
        return sub

    async def _drop_subscription(self, sub: Subscription) -> None:
        if sub in self._subscriptions:
            self._subscriptions.remove(sub)
        gone = sorted(sub.events - self._wanted_events())
        if gone and self._stream is not None and not self._closing:
            # disconnected: nothing to undo, and the reconnection will not re-subscribe it
            with contextlib.suppress(TransportError):
                await self._call_on(self._stream, "unsubscribe", {"events": gone}, self.call_timeout)

    def _wanted_events(self) -> set[str]:
        return {name for s in self._subscriptions for name in s.events}

    # -- internals ------------------------------------------------------------------------------
    def _encode(self, message: Request | Notification) -> bytes:
        line = encode(message)
        if len(line) - 1 > self.max_message_bytes:
            raise SchemaError(f"{message.method}: message of {len(line) - 1} bytes exceeds the "
                              f"{self.max_message_bytes}-byte limit (large data goes as file paths)")
        return line

    async def _call_on(self, stream: MessageStream, method: str, params: dict[str, Any],
                       timeout: float) -> Any:
        msg_id = next(self._ids)
        line = self._encode(Request(id=msg_id, method=method, params=params))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = (method, future)
        try:
            await stream.send(line)
            # asyncio.wait, not wait_for: the daemon's own OtaTimeoutError is a TimeoutError too
            done, _ = await asyncio.wait({future}, timeout=timeout)
            if not done:
                raise OtaTimeoutError(f"{self.name} did not answer {method} within {timeout:g} s "
                                      "(it may still carry it out)")
            result = future.result()
        finally:
            self._pending.pop(msg_id, None)
            if not future.done():
                future.cancel()
        self.protocol.check_result(method, result)
        return result

    def _closed_error(self) -> OtaError:
        return self._fatal or TransportError(f"client for {self.name} closed")

    async def _wait_connected(self) -> MessageStream:
        if self._closing:
            raise self._closed_error()
        if self._fatal is not None:
            raise self._fatal
        if self._stream is not None:
            return self._stream
        if self._connected is None:
            self._connected = asyncio.Event()
        if self._supervisor is None or self._supervisor.done():
            self._last_error = None
            self._supervisor = asyncio.create_task(self._supervise(), name=f"ipc-client-{self.name}")
        waiter = asyncio.create_task(self._connected.wait())
        try:
            await asyncio.wait({waiter, self._supervisor}, timeout=self.connect_timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if self._stream is not None:
            return self._stream
        if self._fatal is not None:
            raise self._fatal
        if self._closing:
            raise self._closed_error()
        if self._supervisor.done() and self._last_error is not None:
            raise self._last_error
        detail = f": {self._last_error}" if self._last_error else ""
        raise TransportError(f"cannot reach {self.name} within {self.connect_timeout:g} s{detail}")

    async def _supervise(self) -> None:
        """Connect, serve the connection until it drops, reconnect (with back-off) if asked."""
        assert self._connected is not None
        delay = self.retry_delay
        while not self._closing:
            try:
                stream = await self._open()
            except _Fatal as e:
                self._fatal = e.error
                log.error("%s", e.error)
                self._end_subscriptions(e.error)
                return
            except OtaError as e:  # not reachable now (or an odd greeting): worth another try
                self._last_error = e
                if not self.reconnect:
                    self._end_subscriptions(e)
                    return
                log.debug("%s: %s; retrying in %.2f s", self.name, e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_retry_delay)
                continue
            delay = self.retry_delay
            reason = await self._serve(stream)
            if self._closing:
                return
            if self._fatal is not None:
                log.error("%s: %s", self.name, reason)
                self._end_subscriptions(self._fatal)
                return
            log.warning("%s: connection lost (%s)%s", self.name, reason,
                        "; reconnecting" if self.reconnect else "")
            if not self.reconnect:
                self._end_subscriptions(TransportError(f"connection to {self.name} lost: {reason}"))
                return

    def _end_subscriptions(self, error: OtaError) -> None:
        for sub in self._subscriptions:
            sub._end(error)
        self._subscriptions.clear()
        self._fail_pending(lambda: self._fatal or TransportError(f"{self.name}: disconnected"))

    async def _open(self) -> MessageStream:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(os.fspath(self.path)), self.connect_timeout)
        except asyncio.TimeoutError:
            raise TransportError(f"{self.name}: connecting to {self.path} timed out") from None
        except FileNotFoundError:
            raise TransportError(f"{self.name} is not running: no socket at {self.path}") from None
        except ConnectionRefusedError:
            raise TransportError(f"{self.name} is not running: {self.path} refuses connections") from None
        except PermissionError as e:
            raise _Fatal(AccessDeniedError(f"permission denied on {self.path}: the socket's mode does not "
                                           "allow this user")) from e
        except OSError as e:
            raise TransportError(f"{self.name}: cannot connect to {self.path}: {e.strerror or e}") from e
        stream = MessageStream(reader, writer, max_message_bytes=self.max_message_bytes,
                               label=f"{self.name} at {self.path}")
        try:
            return await self._handshake(stream, writer)
        except BaseException:
            await stream.wait_closed()
            raise

    async def _handshake(self, stream: MessageStream, writer: asyncio.StreamWriter) -> MessageStream:
        try:
            peer = peer_credentials(writer.get_extra_info("socket"))
        except OSError as e:
            raise TransportError(f"{self.name}: cannot read the daemon's credentials: {e}") from e
        policy = self.policy or self._default_trust()
        if not policy.allows(peer):
            raise _Fatal(AccessDeniedError(f"{self.path} is served by {peer}, which this client does not "
                                           f"trust ({policy.describe()})"))
        try:
            first = await asyncio.wait_for(stream.receive(), self.connect_timeout)
        except asyncio.TimeoutError:
            raise TransportError(f"{self.name}: no greeting from {self.path} within "
                                 f"{self.connect_timeout:g} s") from None
        if first is None:
            raise TransportError(f"{self.name}: {self.path} closed the connection at once")
        if isinstance(first, ErrorResponse):
            error = error_from_wire(first.code, first.message, first.data)
            raise _Fatal(error) if first.code == ACCESS_DENIED else error
        if not isinstance(first, Notification) or first.method != "daemon.hello":
            raise _Fatal(ProtocolError(f"{self.path} did not greet with daemon.hello; "
                                       "not an ota-agent daemon?"))
        try:
            hello = self.protocol.check_event("daemon.hello", first.params)
        except SchemaError as e:
            raise _Fatal(ProtocolError(f"{self.path}: bad greeting: {e}")) from e
        if self.daemon is not None and hello["daemon"] != self.daemon:
            raise _Fatal(ConfigurationError(f"{self.path} is served by {hello['daemon']}, not {self.daemon}"))
        served = hello["daemon"]
        if served in self.protocol.daemons or self.protocol.daemon == served:
            mine = self.protocol.for_daemon(served).fingerprint if self.protocol.daemon is None \
                else self.protocol.fingerprint
            if mine != hello["protocol"]:
                log.warning("%s: protocol declarations differ (daemon %s %s, client %s): messages may be "
                            "refused", self.name, hello["version"], hello["protocol"], mine)
        self.hello = hello
        return stream

    def _default_trust(self) -> AccessPolicy:
        uids = {0, os.geteuid()}
        with contextlib.suppress(OSError):
            uids.add(os.stat(self.path.parent).st_uid)
        return AccessPolicy(uids=frozenset(uids))

    async def _serve(self, stream: MessageStream) -> str:
        """Own one connection: restore subscriptions, then read until it ends; returns why it ended."""
        assert self._connected is not None
        reader = asyncio.create_task(self._read(stream))
        try:
            events = sorted(self._wanted_events())
            if events:
                try:
                    await self._call_on(stream, "subscribe", {"events": events}, self.call_timeout)
                except TransportError as e:
                    return f"re-subscribing to {', '.join(events)} failed: {e}"
                except OtaError as e:
                    # the restarted daemon refuses them (another version?): end those subscriptions
                    # loudly rather than reconnecting in a loop
                    log.error("%s: re-subscribing to %s refused: %s; ending those subscriptions",
                              self.name, ", ".join(events), e)
                    for sub in list(self._subscriptions):
                        self._subscriptions.remove(sub)
                        sub._end(e)
            if not reader.done():
                self._stream = stream
                self.generation += 1
                self._connected.set()
                log.info("%s: connected to %s (pid %s, connection %d)", self.name, self.path,
                         self.hello.get("pid"), self.generation)
                for callback in list(self._connect_callbacks):
                    try:
                        outcome = callback()
                        if outcome is not None:
                            await outcome
                    except Exception:
                        log.exception("%s: on_connect callback failed", self.name)
            return await reader
        finally:
            self._stream = None
            self._connected.clear()
            if not reader.done():
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
            await stream.wait_closed()
            if not self._closing:
                self._fail_pending(lambda: TransportError(
                    f"connection to {self.name} lost before the answer came; the daemon may or may not "
                    "have carried out the call"))

    async def _read(self, stream: MessageStream) -> str:
        while True:
            item = await stream.receive()
            if item is None:
                return "the daemon closed the connection"
            if isinstance(item, Response):
                self._resolve(item.id, result=item.result)
            elif isinstance(item, ErrorResponse):
                if item.id is None:
                    error = error_from_wire(item.code, item.message, item.data)
                    if item.code == ACCESS_DENIED:
                        self._fatal = error
                        return f"access denied: {item.message}"
                    log.error("%s: daemon reported: %s", self.name, error)
                else:
                    self._resolve(item.id, error=item)
            elif isinstance(item, Notification):
                self._dispatch_event(item)
            elif isinstance(item, Oversized):
                return f"the daemon sent a message over {item.limit} bytes"
            elif isinstance(item, DecodeError):
                return f"the daemon sent an invalid message: {item}"
            else:  # a Request: daemons do not call clients
                return f"the daemon sent a request ({item.method}); not part of the protocol"

    def _resolve(self, msg_id: object, *, result: Any = None, error: ErrorResponse | None = None) -> None:
        entry = self._pending.get(msg_id) if isinstance(msg_id, int) else None
        if entry is None:
            log.debug("%s: answer to id %r that nobody waits for (timed out?)", self.name, msg_id)
            return
        method, future = entry
        if future.done():
            return
        if error is not None:
            future.set_exception(error_from_wire(error.code, error.message, error.data, context=method))
        else:
            future.set_result(result)

    def _dispatch_event(self, message: Notification) -> None:
        try:
            params = self.protocol.check_event(message.method, message.params)
        except SchemaError as e:
            log.warning("%s: dropping an event that does not match the protocol: %s", self.name, e)
            return
        event = EventMessage(message.method, params)
        for sub in list(self._subscriptions):
            if message.method in sub.events:
                sub._deliver(event)

    def _fail_pending(self, error: Callable[[], OtaError]) -> None:
        for _method, future in list(self._pending.values()):
            if not future.done():
                future.set_exception(error())
                future.exception()  # mark retrieved: the waiter may already have given up
