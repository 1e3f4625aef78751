"""One IPC connection as a stream of decoded messages, for both ends.

Reads chunks, frames them (:mod:`agent.ipc.framing`), decodes lines
(:mod:`agent.ipc.jsonrpc`); writes whole lines. ``send`` waits for the
socket buffer to drain (back-pressure for responses and calls);
``send_nowait`` never waits and reports whether the peer keeps up, so a
daemon publishing an event is never held up by a subscriber that stopped
reading.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib

from agent.errors import TransportError
from agent.ipc.framing import LineFramer, Oversized
from agent.ipc.jsonrpc import DecodeError, Message, decode

Incoming = Message | DecodeError | Oversized

_CHUNK = 64 * 1024


class MessageStream:
    """Decoded messages in, encoded lines out, over one connected stream socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 max_message_bytes: int, label: str) -> None:
        self.reader = reader
        self.writer = writer
        self.label = label
        self._framer = LineFramer(max_message_bytes)
        self._ready: collections.deque[Incoming] = collections.deque()
        self._write_lock = asyncio.Lock()

    async def receive(self) -> Incoming | None:
        """The next message, a decode error or an oversize notice; ``None`` at end of stream."""
        while not self._ready:
            try:
                data = await self.reader.read(_CHUNK)
            except (ConnectionError, OSError):
                return None
            if not data:
                return None
            for item in self._framer.feed(data):
                if isinstance(item, Oversized):
                    self._ready.append(item)
                else:
                    try:
                        self._ready.append(decode(item))
                    except DecodeError as e:
                        self._ready.append(e)
        return self._ready.popleft()

    async def send(self, line: bytes) -> None:
        """Write one encoded line and wait until the socket takes it; TransportError if it is gone."""
        async with self._write_lock:
            if self.writer.is_closing():
                raise TransportError(f"{self.label}: connection closed")
            self.writer.write(line)
            try:
                await self.writer.drain()
            except (ConnectionError, OSError) as e:
                raise TransportError(f"{self.label}: connection lost: {e}") from e

    def send_nowait(self, line: bytes, max_backlog: int) -> bool:
        """Queue one line without waiting; ``False`` (nothing queued) if the peer lags ``max_backlog``."""
        if self.writer.is_closing():
            return False
        if self.backlog + len(line) > max_backlog:
            return False
        self.writer.write(line)
        return True

    @property
    def backlog(self) -> int:
        """Bytes written but not yet taken by the socket."""
        transport = self.writer.transport
        return transport.get_write_buffer_size() if not transport.is_closing() else 0

    def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()

    async def wait_closed(self) -> None:
        self.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()
