"""HTTP range semantics of the bench backend (RFC 9110 sections 13.1.5 and 14), pure.

``plan(...)`` decides, from the request's ``Range`` and ``If-Range`` and the file's
size and validators, whether to answer 200 (whole file), 206 (one range) or 416.
Written here rather than using aiohttp's ``FileResponse`` because the backend must
inject faults into the body stream and count bytes per request, and because
``FileResponse`` (aiohttp 3.14) only understands an HTTP-date in ``If-Range``: with
an ETag there it serves the range even when the file changed.

Rules: a single byte range ``a-b``, ``a-`` or ``-n`` is served as 206; several ranges
or a malformed header are ignored (200, as the RFC allows); a first byte at or past the
end is 416 with ``Content-Range: bytes */size``; ``If-Range`` with an entity tag matches
only a strong, identical ETag, with a date only an identical Last-Modified; no match
means the whole file (200).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SPEC = re.compile(r"^bytes=(\d*)-(\d*)$", re.IGNORECASE)


@dataclass(frozen=True)
class Plan:
    status: int  # 200, 206 or 416
    start: int = 0
    end: int = 0  # exclusive

    def content_range(self, size: int) -> str | None:
        if self.status == 206:
            return f"bytes {self.start}-{self.end - 1}/{size}"
        if self.status == 416:
            return f"bytes */{size}"
        return None


def if_range_matches(if_range: str, etag: str, last_modified: str) -> bool:
    value = if_range.strip()
    if value.startswith('"') or value.startswith("W/"):
        return not value.startswith("W/") and not etag.startswith("W/") and value == etag
    return value == last_modified


def plan(range_header: str | None, if_range: str | None, *, size: int, etag: str, last_modified: str) -> Plan:
    whole = Plan(200, 0, size)
    if range_header is None:
        return whole
    if if_range is not None and not if_range_matches(if_range, etag, last_modified):
        return whole
    m = _SPEC.match(range_header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return whole  # malformed or multiple ranges: ignore Range
    first, last = m.group(1), m.group(2)
    if first:
        start = int(first)
        if last and int(last) < start:
            return whole  # invalid range-spec: ignore
        if start >= size:
            return Plan(416)
        end = min(int(last) + 1, size) if last else size
        return Plan(206, start, end)
    suffix = int(last)
    if suffix == 0 or size == 0:
        return Plan(416)
    return Plan(206, max(0, size - suffix), size)
