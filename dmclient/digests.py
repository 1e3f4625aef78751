"""Expected digests of a file and an incremental hasher that checks them.

SHA-256 is always required: it is the content address in the package cache and the
integrity check of a partial file across restarts. SHA-512 is checked too when the
order gives it. Hex digests are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import queue
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import VerificationError

ALGORITHMS = ("sha256", "sha512")
_HEX_LEN = {"sha256": 64, "sha512": 128}
_HEX = re.compile(r"^[0-9a-f]+$")


def check_hex(algorithm: str, value: Any, where: str) -> str:
    """A lower-case hex digest of the right length for ``algorithm``, or ValueError naming ``where``."""
    if not isinstance(value, str):
        raise ValueError(f"{where}: expected a hex string, got {type(value).__name__}")
    digest = value.lower()
    if len(digest) != _HEX_LEN[algorithm] or not _HEX.match(digest):
        raise ValueError(f"{where}: not a {algorithm} hex digest ({_HEX_LEN[algorithm]} hex digits): {value!r}")
    return digest


@dataclass(frozen=True)
class Hashes:
    """Expected digests: ``sha256`` always, ``sha512`` when known."""

    sha256: str
    sha512: str | None = None

    @classmethod
    def parse(cls, data: Any, where: str) -> Hashes:
        """From a mapping ``{"sha256": hex, "sha512": hex}``; ValueError naming ``where`` and why."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{where}: expected a mapping of algorithm to hex digest")
        unknown = sorted(set(data) - set(ALGORITHMS))
        if unknown:
            raise ValueError(f"{where}: unsupported hash algorithm {unknown[0]!r} (use {', '.join(ALGORITHMS)})")
        if "sha256" not in data:
            raise ValueError(f"{where}: sha256 is required")
        sha512 = data.get("sha512")
        return cls(check_hex("sha256", data["sha256"], f"{where}.sha256"),
                   None if sha512 is None else check_hex("sha512", sha512, f"{where}.sha512"))

    def to_dict(self) -> dict[str, str]:
        out = {"sha256": self.sha256}
        if self.sha512:
            out["sha512"] = self.sha512
        return out

    def matches(self, other: Hashes) -> bool:
        """True when every digest both sides know agrees (sha256 always)."""
        if not hmac.compare_digest(self.sha256, other.sha256):
            return False
        if self.sha512 and other.sha512:
            return hmac.compare_digest(self.sha512, other.sha512)
        return True


class _HashThread:
    """One hash object fed by a worker thread through a bounded queue (hashlib drops the GIL)."""

    def __init__(self, h: Any, depth: int) -> None:
        self.h = h
        self.q: queue.Queue[bytes | None] = queue.Queue(depth)
        self.thread = threading.Thread(target=self._run, name=f"hash-{h.name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            item = self.q.get()
            try:
                if item is None:
                    return
                self.h.update(item)
            finally:
                self.q.task_done()

    def put(self, data: bytes) -> None:
        self.q.put(data)

    def drain(self) -> None:
        self.q.join()

    def close(self) -> None:
        self.q.put(None)
        self.thread.join()


class StreamHasher:
    """SHA-256 (and SHA-512 when asked) over a stream of chunks.

    :meth:`threaded` hands the hashing to one worker thread per algorithm (bounded
    queues, so memory stays at a few chunks): the download thread then only receives and
    writes while SHA-256 and SHA-512 run on other cores. Threaded hashers take ``bytes``
    chunks only (a reused buffer would change under the worker) and must be closed.
    """

    def __init__(self, *, sha512: bool) -> None:
        self._sha256 = hashlib.sha256()
        self._sha512 = hashlib.sha512() if sha512 else None
        self._threads: list[_HashThread] = []
        self.length = 0

    def threaded(self, depth: int = 4) -> StreamHasher:
        """This hasher, its state kept, now hashing in worker threads (``depth`` chunks queued)."""
        if not self._threads:
            self._threads = [_HashThread(h, depth) for h in (self._sha256, self._sha512) if h is not None]
        return self

    @property
    def is_threaded(self) -> bool:
        return bool(self._threads)

    def update(self, data: bytes | memoryview) -> None:
        if self._threads:
            if not isinstance(data, bytes):
                raise TypeError("a threaded hasher takes bytes chunks only")
            for t in self._threads:
                t.put(data)
        else:
            self._sha256.update(data)
            if self._sha512 is not None:
                self._sha512.update(data)
        self.length += len(data)

    def _drain(self) -> None:
        for t in self._threads:
            t.drain()

    def close(self) -> None:
        """Stop the worker threads (the state is kept; hashing goes on in the caller's thread)."""
        threads, self._threads = self._threads, []
        for t in threads:
            t.close()

    def prefix_sha256(self) -> str:
        """SHA-256 of everything so far, without ending the stream (checkpoint fingerprint)."""
        self._drain()
        return self._sha256.copy().hexdigest()

    def result(self) -> Hashes:
        self._drain()
        return Hashes(self._sha256.hexdigest(), self._sha512.hexdigest() if self._sha512 else None)

    def verify(self, expected: Hashes, what: str) -> None:
        """Raise VerificationError naming ``what`` unless the digests match ``expected``."""
        verify_hashes(expected, self.result(), what)


def verify_hashes(expected: Hashes, actual: Hashes, what: str) -> None:
    if not hmac.compare_digest(expected.sha256, actual.sha256):
        raise VerificationError(f"{what}: SHA-256 mismatch: expected {expected.sha256}, got {actual.sha256}")
    if expected.sha512 and actual.sha512 and not hmac.compare_digest(expected.sha512, actual.sha512):
        raise VerificationError(f"{what}: SHA-512 mismatch: expected {expected.sha512[:32]}..., "
                                f"got {actual.sha512[:32]}...")


def hash_file(path: Path, *, sha512: bool = True, limit: int | None = None,
              chunk: int = 1 << 20) -> StreamHasher:
    """Hash a file (its first ``limit`` bytes when given) in bounded chunks."""
    hasher = StreamHasher(sha512=sha512)
    remaining = limit
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(chunk)
        view = memoryview(buf)
        while remaining is None or remaining > 0:
            want = chunk if remaining is None else min(chunk, remaining)
            n = f.readinto(view[:want])
            if not n:
                break
            hasher.update(view[:n])
            if remaining is not None:
                remaining -= n
    return hasher
