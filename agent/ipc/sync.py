"""A blocking wrapper around :class:`~agent.ipc.client.IpcClient`, for the CLI.

Usage (in an ``otactl`` subcommand)::

    with SyncClient.for_daemon("dmclient") as dm:       # fails at once if ota-dmclient is not running
        order = dm.call("dmclient.download.start", {"targets": [...]})
        with dm.subscribe("dmclient.download.progress") as progress:
            for event in progress:                         # blocks; ends when the daemon goes away
                ...
                if done(event):
                    break

It runs a private event loop in the calling thread, only while a method of
it runs, so it must not be used from inside a running event loop (use
:class:`IpcClient` there). Events arriving between two calls wait in the
socket. Unlike the asyncio client it does not reconnect by default
(``reconnect=False``): a command fails fast and clearly when the daemon is
down; each call connects again if the previous connection was lost.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from agent.errors import TransportError
from agent.ipc.client import IpcClient
from agent.ipc.paths import socket_path
from agent.ipc.registry import Protocol
from agent.ipc.subscription import EventMessage, Subscription

T = TypeVar("T")


class SyncSubscription:
    """Blocking iteration over a :class:`Subscription`."""

    def __init__(self, owner: SyncClient, sub: Subscription) -> None:
        self._owner = owner
        self._sub = sub

    @property
    def dropped(self) -> int:
        return self._sub.dropped

    def get(self, timeout: float | None = None) -> EventMessage:
        """The next event; OtaTimeoutError after ``timeout`` s, TransportError once closed."""
        return self._owner._run(self._sub.get(timeout))

    def __iter__(self) -> Iterator[EventMessage]:
        """Events until the subscription is closed or the daemon is gone; raises if the daemon refused it."""
        while (event := self._owner._run(self._sub.next_event())) is not None:
            yield event

    def close(self) -> None:
        self._owner._run(self._sub.close())

    def __enter__(self) -> SyncSubscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SyncClient:
    """Blocking ``call`` / ``notify`` / ``subscribe`` on one daemon; see the module docstring."""

    def __init__(self, socket_path: str | os.PathLike[str], protocol: Protocol | None = None, *,
                 reconnect: bool = False, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self.client = IpcClient(socket_path, protocol, reconnect=reconnect, **kwargs)

    @classmethod
    def for_daemon(cls, daemon: str, *, runtime_dir: str | Path | None = None, **kwargs: Any) -> SyncClient:
        return cls(socket_path(daemon, runtime_dir), daemon=daemon, **kwargs)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop.is_closed():
            coro.close()
            raise TransportError(f"client for {self.client.name} closed")
        return self._loop.run_until_complete(coro)

    def connect(self) -> None:
        self._run(self.client.connect())

    def call(self, method: str, params: Mapping[str, Any] | None = None, *,
             timeout: float | None = None) -> Any:
        return self._run(self.client.call(method, params, timeout=timeout))

    def notify(self, method: str, params: Mapping[str, Any] | None = None) -> None:
        self._run(self.client.notify(method, params))

    def subscribe(self, *events: str, queue_size: int = 1000) -> SyncSubscription:
        return SyncSubscription(self, self._run(self.client.subscribe(*events, queue_size=queue_size)))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self._loop.run_until_complete(self.client.close())
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        finally:
            self._loop.close()

    def __enter__(self) -> SyncClient:
        try:
            self.connect()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
