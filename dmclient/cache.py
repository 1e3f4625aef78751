"""The content-addressed package cache: verified images only, a size budget, pins.

Layout under the cache root (one filesystem, so every move is a rename):

* ``objects/<sha256>``: verified images, read-only, named by their SHA-256;
* ``tmp/``: files being produced (decryption, delta reconstruction), emptied at start;
* ``parts/``: partial downloads (owned by :mod:`dmclient.transfer`).

Only :meth:`PackageCache.admit` puts a file in ``objects/``, and only with the digests the
caller verified; the file is fsynced, renamed and the directory fsynced before the index
row is written (:func:`dmclient.durable.publish`). An image already present is not
replaced while it is intact: before it is reused (a cache hit, a delta base, a second
admission) it is re-hashed against the length and digests it was admitted with, and one
that changed at rest (bit rot, tampering) is dropped, logged naming the file and the
digest, so the caller fetches it again and the fresh verified file takes its place. The
index and the pins live in the state database: pinned images (rollback images, images
of an active campaign) are never evicted; unpinned ones go least recently used first
when an admission would exceed the budget. Pins are kept apart from the entries: a
dropped pinned image is pinned again as soon as its verified copy is admitted. At start,
:meth:`reconcile` drops index rows whose file is gone and re-adopts (after re-hashing) or
deletes files the index does not know (a crash between the rename and the index write).
"""

from __future__ import annotations

import hmac
import logging
import re
import shutil
import threading
from collections.abc import Iterable
from pathlib import Path

from agent.errors import VerificationError
from dmclient.digests import Hashes, hash_file
from dmclient.durable import fsync_dir, publish
from dmclient.errors import StorageFullError, disk_full_as_storage_error
from dmclient.state import CacheRecord, StateDb

log = logging.getLogger(__name__)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class PackageCache:
    def __init__(self, root: Path, db: StateDb, *, budget: int) -> None:
        self.root = root
        self.db = db
        self.budget = budget
        self.objects = root / "objects"
        self.tmp = root / "tmp"
        self.parts = root / "parts"
        for d in (self.objects, self.tmp, self.parts):
            with disk_full_as_storage_error("creating the cache directory", d):
                d.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()

    # -- lookup -------------------------------------------------------------------------
    def object_path(self, sha256: str) -> Path:
        return self.objects / sha256

    def lookup(self, hashes: Hashes, *, touch: bool = True, verify: bool = False) -> Path | None:
        """The cached image with these digests (and its recorded length), or None.

        ``verify`` (before the bytes are used): the file is re-hashed first, and one whose length or
        digests are no longer those it was admitted with is dropped (None: fetch it again). Without
        it the index answers; the bytes are hashed only for a SHA-512 the entry was not admitted with.
        """
        with self._lock:
            entry = self.db.cache_entry(hashes.sha256)
            if entry is None:
                return None
            path = self.object_path(entry.sha256)
            if hashes.sha512 and entry.sha512 and entry.sha512 != hashes.sha512:
                log.warning("cache entry %s has a different SHA-512 than asked for", entry.sha256)
                return None
            if not path.is_file():
                log.warning("cache entry %s lost its file; dropping the entry", entry.sha256)
                self.db.remove_cache_entry(entry.sha256)
                return None
            # admitted on SHA-256 alone: the SHA-512 now asked for is checked on the bytes themselves
            learn_sha512 = None if entry.sha512 else hashes.sha512
            if verify or learn_sha512:
                found = self._intact(entry, path, sha512=bool(entry.sha512 or hashes.sha512))
                if found is None:
                    return None
                if learn_sha512:
                    if found.sha512 != learn_sha512:
                        return None
                    self.db.set_cache_sha512(entry.sha256, learn_sha512)
            if touch:
                self.db.touch_cache_entry(entry.sha256)
            return path

    def _intact(self, entry: CacheRecord, path: Path, *, sha512: bool) -> Hashes | None:
        """The file's digests when it still has the length and digests it was admitted with, else
        None after dropping it (logged naming the file and what no longer matches)."""
        size = path.stat().st_size
        if size != entry.size:
            why = f"is {size} bytes, admitted with {entry.size}"
            found = None
        else:
            found = hash_file(path, sha512=sha512).result()
            if not hmac.compare_digest(found.sha256, entry.sha256):
                why = f"no longer matches its SHA-256 (now hashes to {found.sha256})"
            elif entry.sha512 and not hmac.compare_digest(found.sha512 or "", entry.sha512):
                why = f"no longer matches the SHA-512 it was admitted with (now {(found.sha512 or '')[:32]}...)"
            else:
                return found
        log.warning("cached image %s %s: changed at rest; dropping it (to be fetched again)", path, why)
        self._drop(entry.sha256)
        return None

    def entries(self) -> list[CacheRecord]:
        return self.db.cache_entries()

    def used(self) -> int:
        return sum(e.size for e in self.db.cache_entries())

    def temp_path(self, name: str) -> Path:
        return self.tmp / name

    # -- admission and eviction -----------------------------------------------------------
    def admit(self, src: Path, verified: Hashes, size: int, *, keep: Iterable[str] = ()) -> Path:
        """Move a verified file into the cache under its SHA-256; the cached path.

        ``verified`` must be the digests the caller computed *and* checked against the
        order (SHA-512 when the order gave it). An existing entry wins if it is intact (re-hashed
        against its length and the digests it was admitted with): ``src`` is then removed; one that
        changed at rest is dropped and ``src`` takes its place (its pins still apply).
        ``keep``: SHA-256s not to evict now (images in use, e.g. a delta base).
        """
        if src.stat().st_size != size:
            raise VerificationError(f"{src}: is {src.stat().st_size} bytes, verified length was {size}")
        with self._lock:
            existing = self.lookup(verified, verify=True)
            if existing is not None:
                src.unlink(missing_ok=True)
                return existing
            self._make_room(size, set(keep) | {verified.sha256})
            dst = self.object_path(verified.sha256)
            publish(src, dst)
            self.db.add_cache_entry(verified.sha256, verified.sha512, size)
            log.info("cached %s (%d bytes)", verified.sha256, size)
            return dst

    def _make_room(self, size: int, keep: set[str]) -> None:
        entries = self.db.cache_entries()  # least recently used first
        used = sum(e.size for e in entries)
        if used + size <= self.budget:
            return
        pinned = sum(e.size for e in entries if e.pins or e.sha256 in keep)
        if pinned + size > self.budget:
            raise StorageFullError(
                f"package cache budget of {self.budget} bytes is too small: {pinned} bytes are pinned "
                f"(rollback / active campaign / in use) and the new image needs {size}")
        for e in entries:
            if used + size <= self.budget:
                break
            if e.pins or e.sha256 in keep:
                continue
            self._drop(e.sha256)
            used -= e.size
            log.info("evicted %s (%d bytes, least recently used) to stay within the cache budget",
                     e.sha256, e.size)

    def _drop(self, sha256: str) -> None:
        self.db.remove_cache_entry(sha256)
        self.object_path(sha256).unlink(missing_ok=True)
        fsync_dir(self.objects)

    def remove(self, sha256: str) -> bool:
        """Remove an unpinned entry; False when it is pinned or absent."""
        with self._lock:
            entry = self.db.cache_entry(sha256)
            if entry is None or entry.pins:
                return False
            self._drop(sha256)
            return True

    # -- pins ---------------------------------------------------------------------------
    def pin(self, sha256: str, owner: str) -> None:
        self.db.pin(sha256, owner)

    def unpin(self, sha256: str | None, owner: str) -> int:
        return self.db.unpin(sha256, owner)

    # -- start-up -----------------------------------------------------------------------
    def reconcile(self) -> None:
        """Make the index and ``objects/`` agree after a crash; empty ``tmp/``."""
        with self._lock:
            for leftover in self.tmp.iterdir():
                if leftover.is_dir():
                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    leftover.unlink(missing_ok=True)
            known = {e.sha256: e for e in self.db.cache_entries()}
            on_disk = {p.name for p in self.objects.iterdir()}
            for sha in set(known) - on_disk:
                log.warning("cache entry %s has no file; dropping the entry", sha)
                self.db.remove_cache_entry(sha)
            for name in sorted(on_disk - set(known)):
                path = self.objects / name
                adopted = False
                if _SHA256.match(name) and path.is_file():
                    hasher = hash_file(path, sha512=True)
                    result = hasher.result()
                    if result.sha256 == name:
                        self.db.add_cache_entry(name, result.sha512, hasher.length)
                        adopted = True
                        log.info("re-adopted cached image %s", name)
                if not adopted:
                    log.warning("removing unknown file %s from the cache", path)
                    if path.is_dir():
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        path.unlink(missing_ok=True)
