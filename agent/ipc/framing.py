"""Newline-delimited framing with a size cap that resynchronises after an oversized message.

Pure: bytes in, complete lines out, no I/O. Used by both ends of every IPC
connection::

    framer = LineFramer(max_bytes=1 << 20)
    for item in framer.feed(chunk):
        if isinstance(item, Oversized):
            ...   # answer an error; the rest of that line is skipped, the next line is read
        else:
            ...   # item is one message (bytes, without its newline)

Why not ``asyncio.StreamReader.readline(limit)``: past the limit it either
leaves the oversized line in the buffer or clears the buffer without knowing
where the message ends, so the tail of the oversized message is then parsed
as the next one. Here the tail is skipped up to its newline, without being
buffered, and the connection carries on with the next message.

Blank lines (and a trailing ``\\r``) are tolerated, so a person can talk to a
daemon with ``socat - UNIX-CONNECT:/run/ota-agent/dmclient.sock``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Oversized:
    """A message longer than the cap was skipped; ``seen`` bytes of it had arrived when it was cut."""

    seen: int
    limit: int


class LineFramer:
    """Splits a byte stream into lines of at most ``max_bytes`` bytes (newline excluded)."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        self.max_bytes = max_bytes
        self._buffer = bytearray()
        self._skipping = False  # inside an oversized line, dropping bytes until its newline

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete message held (never more than ``max_bytes`` + a chunk)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes | Oversized]:
        """Complete lines (and oversize notices) found once ``data`` is appended."""
        out: list[bytes | Oversized] = []
        start = 0
        while start < len(data):
            nl = data.find(b"\n", start)
            end = len(data) if nl < 0 else nl
            if self._skipping:
                if nl >= 0:
                    self._skipping = False
            else:
                self._buffer += data[start:end]
                if len(self._buffer) > self.max_bytes:
                    out.append(Oversized(seen=len(self._buffer), limit=self.max_bytes))
                    self._buffer.clear()
                    self._skipping = nl < 0
                elif nl >= 0:
                    line = bytes(self._buffer).rstrip(b"\r")
                    self._buffer.clear()
                    if line.strip():
                        out.append(line)
            start = end + 1
        return out
