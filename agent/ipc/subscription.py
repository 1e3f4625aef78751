"""Events a client subscribed to: an async iterator (or a callback) fed by :class:`~agent.ipc.client.IpcClient`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.errors import OtaError, OtaTimeoutError, TransportError

if TYPE_CHECKING:
    from agent.ipc.client import IpcClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EventMessage:
    """One event received from a daemon: its declared name and validated params."""

    event: str
    params: dict[str, Any]


EventCallback = Callable[[EventMessage], None]


class Subscription:
    """Events of the given names, as an async iterator (or delivered to a callback).

    Events are queued up to ``queue_size``; past that the oldest are dropped
    and counted in :attr:`dropped` (a consumer that lags re-reads state with
    a call). Iteration (``async for``) ends, after the events already
    received, when the subscription or the client is closed or the connection
    is gone for good (the client does not reconnect): the caller then checks
    state with a call. It raises when the daemon refused the subscription
    (access denied, or a restarted daemon that no longer publishes the event).
    :meth:`get` raises at the end in every case, with the reason.
    """

    def __init__(self, client: IpcClient, events: frozenset[str], callback: EventCallback | None,
                 queue_size: int) -> None:
        self.client = client
        self.events = events
        self.dropped = 0
        self._callback = callback
        self._queue: asyncio.Queue[EventMessage | None] = asyncio.Queue(maxsize=queue_size)
        self._closed = False
        self._error: OtaError | None = None

    def _deliver(self, message: EventMessage) -> None:
        if self._closed:
            return
        if self._callback is not None:
            try:
                self._callback(message)
            except Exception:
                log.exception("event callback for %s failed", message.event)
            return
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("subscription to %s: consumer lags, %d event(s) dropped",
                            ", ".join(sorted(self.events)), self.dropped)
        self._queue.put_nowait(message)

    def _end(self, error: OtaError | None = None) -> None:
        """No more events: closed on purpose (``error`` None) or ended by ``error``."""
        if not self._closed:
            self._closed = True
            self._error = error
            if self._queue.full():
                self._queue.get_nowait()
            self._queue.put_nowait(None)

    async def next_event(self, timeout: float | None = None) -> EventMessage | None:
        """The next event; None once closed or disconnected for good; raises if the daemon refused it."""
        try:
            item = await asyncio.wait_for(self._queue.get(), timeout)
        except asyncio.TimeoutError:
            raise OtaTimeoutError(f"no {' / '.join(sorted(self.events))} event within {timeout} s") from None
        if item is None:
            self._queue.put_nowait(None)  # every later read sees the end too
            if self._error is not None and not isinstance(self._error, TransportError):
                raise self._error
        return item

    async def get(self, timeout: float | None = None) -> EventMessage:
        """The next event; OtaTimeoutError after ``timeout`` s; TransportError (or why it ended) at the end."""
        item = await self.next_event(timeout)
        if item is None:
            raise self._error or TransportError(f"subscription to {', '.join(sorted(self.events))} closed")
        return item

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> EventMessage:
        item = await self.next_event()
        if item is None:
            raise StopAsyncIteration
        return item

    async def close(self) -> None:
        """Stop receiving; unsubscribes on the wire the events no other subscription wants."""
        if self._closed:
            return
        self._end()
        await self.client._drop_subscription(self)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
