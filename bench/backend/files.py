"""``GET|HEAD /files/{path}``: files from a directory with Range / If-Range / ETag, and faults.

Validators: a strong ETag from inode, mtime (ns) and size, and ``Last-Modified`` (the
mtime as an HTTP-date), so replacing a file changes both. The body is streamed in
bounded chunks from the file; fault knobs (:mod:`bench.backend.faults`) act on the
stream at exact byte offsets, and every request is recorded (range asked, status,
bytes sent, client certificate CN) for the tests to read back.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import os
from pathlib import Path
from typing import Any

from aiohttp import web

from bench.backend.faults import Fault, FaultBoard, RequestRecord
from bench.backend.ranges import Plan, plan

log = logging.getLogger(__name__)
CHUNK = 256 * 1024
DEFAULT_STALL = 3600.0


class StallGate:
    """Stalled responses wait here until released (admin ``POST /release``) or timed out."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    async def wait(self, seconds: float) -> None:
        event = self._event
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)

    def release(self) -> None:
        self._event.set()
        self._event = asyncio.Event()


def client_cn(request: web.Request) -> str | None:
    cert: Any = request.transport.get_extra_info("peercert") if request.transport else None
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


class FileRoutes:
    def __init__(self, root: Path, board: FaultBoard, gate: StallGate) -> None:
        self.root = root.resolve()
        self.board = board
        self.gate = gate

    def setup(self, app: web.Application) -> None:
        app.router.add_get("/files/{path:.+}", self.handle)  # add_get registers HEAD too

    def _resolve(self, rel: str) -> Path:
        target = (self.root / rel).resolve()
        if not target.is_relative_to(self.root) or not target.is_file():
            raise web.HTTPNotFound(text=f"no such file: {rel}\n")
        return target

    async def handle(self, request: web.Request) -> web.StreamResponse:
        rel = request.match_info["path"]
        target = self._resolve(rel)
        st = target.stat()
        size = st.st_size
        etag = f'"{st.st_ino:x}-{st.st_mtime_ns:x}-{size:x}"'
        last_modified = email.utils.formatdate(st.st_mtime, usegmt=True)
        fault = self.board.take(rel)
        rng, if_range = request.headers.get("Range"), request.headers.get("If-Range")
        rec = RequestRecord(rel, 0, 0, 0, range=rng, if_range=if_range, client=client_cn(request),
                            fault=fault.to_json() if fault else None)
        self.board.record(rec)
        if fault and fault.status:
            rec.status = fault.status
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            return web.Response(status=fault.status, headers=headers, text=f"bench fault: HTTP {fault.status}\n")
        p = Plan(200, 0, size) if fault and fault.ignore_range else \
            plan(rng, if_range, size=size, etag=etag, last_modified=last_modified)
        rec.status, rec.start, rec.end = p.status, p.start, p.end
        headers = {"Accept-Ranges": "bytes", "ETag": etag, "Last-Modified": last_modified,
                   "Content-Type": "application/octet-stream"}
        content_range = p.content_range(size)
        if content_range:
            headers["Content-Range"] = content_range
        if p.status == 416:
            return web.Response(status=416, headers=headers)
        resp = web.StreamResponse(status=p.status, headers=headers)
        extra = fault.extra_bytes if fault else 0
        if fault and fault.chunked:
            resp.enable_chunked_encoding()
        else:
            resp.content_length = p.end - p.start + extra
        await resp.prepare(request)
        if request.method == "HEAD":
            return resp
        if not await self._stream(request, resp, target, p, fault, rec):
            return resp
        if extra:
            await resp.write(b"\xa5" * extra)
            rec.sent += extra
        await resp.write_eof()
        return resp

    async def _stream(self, request: web.Request, resp: web.StreamResponse, target: Path, p: Plan,
                      fault: Fault | None, rec: RequestRecord) -> bool:
        """Send bytes [start, end) of the file; False when a fault aborted the connection."""
        drop = stall = None
        if fault is not None:
            if fault.drop_after is not None:
                drop = p.start + fault.drop_after
            if fault.truncate_at is not None:
                drop = fault.truncate_at if drop is None else min(drop, fault.truncate_at)
            if fault.stall_after is not None:
                stall = p.start + fault.stall_after
        corrupt = fault.corrupt_at if fault is not None else None
        fd = os.open(target, os.O_RDONLY)
        try:
            offset = p.start
            while True:
                if drop is not None and offset >= drop:
                    log.info("fault: dropping the connection at byte %d of %s", offset, rec.path)
                    rec.aborted = True
                    if request.transport is not None:
                        request.transport.abort()
                    return False
                if stall is not None and offset >= stall:
                    stall = None
                    seconds = fault.stall_seconds if fault and fault.stall_seconds is not None else DEFAULT_STALL
                    log.info("fault: stalling at byte %d of %s for up to %.0f s", offset, rec.path, seconds)
                    await self.gate.wait(seconds)
                if offset >= p.end:
                    return True
                limit = min(x for x in (p.end, drop, stall) if x is not None and x > offset)
                data = os.pread(fd, min(CHUNK, limit - offset), offset)
                if not data:
                    return True  # file shrank under us
                if corrupt is not None and offset <= corrupt < offset + len(data):
                    buf = bytearray(data)
                    buf[corrupt - offset] ^= 0xFF
                    data = bytes(buf)
                await resp.write(data)
                offset += len(data)
                rec.sent += len(data)
        finally:
            os.close(fd)
