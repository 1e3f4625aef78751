"""The bench hub: relays CAN frame records between processes, one channel per socket.

Every record a node sends reaches every other node on the channel, whole and
in one order, like arbitration on a real bus. Nothing is dropped for a node
that reads: when a receiver falls behind (its socket buffer passes the
high-water mark) the hub stops reading from every sender on that channel
until it has drained, so a burst slows down instead of losing frames.

A node that stops reading altogether (a send-only load generator, a hung
process) must not stall the bus for everyone. After ``stall_limit`` seconds
of congestion it is marked *overrun*, as a CAN controller whose receive FIFO
overflows: frames for it are dropped and counted, with a warning, until it
drains again; the other nodes carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path

from bench.canbus import wire
from bench.canbus.paths import socket_path

log = logging.getLogger(__name__)

HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024
STALL_LIMIT = 2.0  # s of congestion before a node counts as not reading


class _Node(asyncio.Protocol):
    def __init__(self, channel: _Channel) -> None:
        self.channel = channel
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.overrun = False
        self.dropped = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)
        self.channel.join(self)
        transport.write(wire.WELCOME)

    def connection_lost(self, exc: Exception | None) -> None:
        self.channel.leave(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            records = wire.split(self.buffer)
        except ValueError as e:
            log.warning("bench bus %s: dropping a node that sent garbage: %s", self.channel.name, e)
            assert self.transport is not None
            self.transport.close()
            return
        if records:
            self.channel.forward(self, b"".join(records))

    def pause_writing(self) -> None:
        self.channel.congested(self, True)

    def resume_writing(self) -> None:
        self.channel.congested(self, False)


class _Channel:
    def __init__(self, name: str, stall_limit: float = STALL_LIMIT) -> None:
        self.name = name
        self.stall_limit = stall_limit
        self.nodes: list[_Node] = []
        self._congested: set[_Node] = set()
        self._stall_timers: dict[_Node, asyncio.TimerHandle] = {}

    def join(self, node: _Node) -> None:
        self.nodes.append(node)
        if self._congested and node.transport is not None:
            node.transport.pause_reading()
        log.debug("bench bus %s: node joined (%d nodes)", self.name, len(self.nodes))

    def leave(self, node: _Node) -> None:
        if node in self.nodes:
            self.nodes.remove(node)
        self.congested(node, False)

    def forward(self, sender: _Node, data: bytes) -> None:
        for node in self.nodes:
            if node is sender or node.transport is None:
                continue
            if node.overrun:
                node.dropped += 1
                continue
            node.transport.write(data)

    def congested(self, node: _Node, on: bool) -> None:
        timer = self._stall_timers.pop(node, None)
        if timer is not None:
            timer.cancel()
        if on:
            self._stall_timers[node] = asyncio.get_running_loop().call_later(
                self.stall_limit, self._overrun, node)
        elif node.overrun:
            node.overrun = False
            log.warning("bench bus %s: node reads again after %d dropped writes", self.name, node.dropped)
        self._set_congested(node, on)

    def _overrun(self, node: _Node) -> None:
        self._stall_timers.pop(node, None)
        node.overrun = True
        log.warning("bench bus %s: a node has not read for %.1f s; dropping its frames (overrun)",
                    self.name, self.stall_limit)
        self._set_congested(node, False)

    def _set_congested(self, node: _Node, on: bool) -> None:
        was = bool(self._congested)
        if on:
            self._congested.add(node)
        else:
            self._congested.discard(node)
        now = bool(self._congested)
        if was == now:
            return
        for n in self.nodes:
            if n.transport is None or n.transport.is_closing():
                continue
            if now:
                n.transport.pause_reading()
            else:
                n.transport.resume_reading()


class Hub:
    """Serve bench bus channels from an asyncio loop."""

    def __init__(self, channels: Iterable[str], *, stall_limit: float = STALL_LIMIT) -> None:
        self.channels = {name: _Channel(name, stall_limit) for name in channels}
        self._servers: list[asyncio.AbstractServer] = []
        self.paths: dict[str, Path] = {}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for name, channel in self.channels.items():
            path = socket_path(name)
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            server = await loop.create_unix_server(functools.partial(_Node, channel), str(path))
            os.chmod(path, 0o660)
            self._servers.append(server)
            self.paths[name] = path
            log.info("bench bus %s on %s", name, path)

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for channel in self.channels.values():
            for node in list(channel.nodes):
                if node.transport is not None:
                    node.transport.close()
        for server in self._servers:
            await server.wait_closed()
        for path in self.paths.values():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


class HubThread:
    """A hub running on its own event loop thread, for embedding in a process."""

    def __init__(self, channels: Iterable[str], *, stall_limit: float = STALL_LIMIT) -> None:
        self.hub = Hub(channels, stall_limit=stall_limit)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="bench-hub", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.hub.start())
        except BaseException as e:  # reported to start()
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self.hub.stop())
        self._loop.close()

    def start(self, timeout: float = 10.0) -> HubThread:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("bench hub did not start")
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> HubThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
