"""Fault knobs of the bench backend and the per-request accounting tests read back.

A fault applies to requests for one file (``path``, or ``"*"`` for any) and to its next
``times`` requests (every request when omitted). Knobs of one fault combine:

==================  =====================================================================
``status``          answer this HTTP status (e.g. 503, 429) instead of the file, with
                    ``retry_after`` (seconds or an HTTP-date string) as ``Retry-After``
``drop_after``      abort the connection after this many body bytes of the response
``truncate_at``     abort the connection when the body reaches this file offset
``stall_after``     after this many body bytes, send nothing for ``stall_seconds``
                    (default: until released with ``POST /release`` or the client leaves)
``corrupt_at``      flip every bit of the byte at this file offset
``ignore_range``    answer 200 with the whole file whatever ``Range`` says
``extra_bytes``     append this many junk bytes (announced in Content-Length)
``chunked``         send no Content-Length (chunked transfer coding)
==================  =====================================================================

Faults come from the backend config (``faults:``) and from the admin route
(``PUT /faults`` with the same list as JSON); both are validated with
:class:`agent.config.node.Node`, so a typo in a knob name is an error, not a no-op.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from agent.config.node import Node


@dataclass
class Fault:
    path: str
    times: int | None = None
    status: int | None = None
    retry_after: str | None = None
    drop_after: int | None = None
    truncate_at: int | None = None
    stall_after: int | None = None
    stall_seconds: float | None = None
    corrupt_at: int | None = None
    ignore_range: bool = False
    extra_bytes: int = 0
    chunked: bool = False

    @classmethod
    def from_node(cls, node: Node) -> Fault:
        def opt_int(key: str, minimum: int = 0) -> int | None:
            return node.integer(key, None, minimum=minimum) if node.has(key) else None

        retry_after = node.raw("retry_after", None)
        if retry_after is not None and (isinstance(retry_after, bool) or not isinstance(retry_after, str | int)):
            raise node.error("expected seconds or an HTTP-date", "retry_after")
        fault = cls(
            path=node.get("path", str),
            times=opt_int("times", 1),
            status=opt_int("status", 100),
            retry_after=None if retry_after is None else str(retry_after),
            drop_after=opt_int("drop_after"),
            truncate_at=opt_int("truncate_at"),
            stall_after=opt_int("stall_after"),
            stall_seconds=node.number("stall_seconds", None, minimum=0) if node.has("stall_seconds") else None,
            corrupt_at=opt_int("corrupt_at"),
            ignore_range=node.get("ignore_range", bool, False),
            extra_bytes=node.integer("extra_bytes", 0, minimum=0),
            chunked=node.get("chunked", bool, False),
        )
        if fault.status is not None and not 200 <= fault.status <= 599:
            raise node.error("must be an HTTP status 200-599", "status")
        node.done()
        return fault

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, False, 0) or k == "path"}


def parse_faults(data: Any, source: str) -> list[Fault]:
    """A list of faults from JSON / YAML data; ConfigurationError naming the entry and knob."""
    return Node({"faults": data}, source=source, path="").items("faults", Fault.from_node)


@dataclass
class RequestRecord:
    path: str
    status: int
    start: int
    end: int
    sent: int = 0
    range: str | None = None
    if_range: str | None = None
    client: str | None = None
    fault: dict[str, Any] | None = None
    aborted: bool = False


@dataclass
class FaultBoard:
    """Current faults and the log of requests served (thread-safe; shared with the admin app)."""

    faults: list[Fault] = field(default_factory=list)
    requests: list[RequestRecord] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def set(self, faults: list[Fault]) -> None:
        with self._lock:
            self.faults = list(faults)

    def add(self, faults: list[Fault]) -> None:
        with self._lock:
            self.faults.extend(faults)

    def take(self, path: str) -> Fault | None:
        """The fault for this request (consuming one of its ``times``), or None."""
        with self._lock:
            for fault in self.faults:
                if fault.path in (path, "*"):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times == 0:
                            self.faults.remove(fault)
                    return fault
        return None

    def record(self, rec: RequestRecord) -> None:
        with self._lock:
            self.requests.append(rec)

    def stats(self, path: str | None = None) -> dict[str, Any]:
        with self._lock:
            reqs = [asdict(r) for r in self.requests if path is None or r.path == path]
        return {"requests": reqs, "bytes_sent": sum(r["sent"] for r in reqs)}

    def clear_stats(self) -> None:
        with self._lock:
            self.requests.clear()
