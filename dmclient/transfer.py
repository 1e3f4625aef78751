"""One resumable, length-capped, hash-verified transfer of a file into its ``.part``.

The durable state of a transfer is the ``.part`` file plus a row in the state database
(URL, expected length, ETag / Last-Modified, *committed* length and the SHA-256 of the
committed prefix). The committed length is recorded only after the ``.part`` was
fsynced that far (a checkpoint every ``checkpoint_bytes``, on pause, before a retry).

Restart: bytes beyond the committed length are cut off (they were never promised to be
on disk), the committed bytes are re-hashed and compared with the recorded prefix
digest (a corrupt ``.part`` restarts from zero, with a warning) and the download goes on
with ``Range: bytes=<committed>-`` and ``If-Range: <ETag or Last-Modified>``. A ``200``
in answer to a Range request (server ignores Range, or the file changed and If-Range
failed) restarts cleanly from zero; so does a ``206`` whose validator differs from the
recorded one.

Length cap: never more than the expected length is read or written; a server announcing
another length, or a body running past it, is a :class:`~agent.errors.VerificationError`
and the partial file is discarded. The final SHA-256 / SHA-512 are checked before the
file is handed on. Retries: transport failures and 408 / 429 / 5xx are retried with
back-off (``Retry-After`` honoured) up to ``max_attempts`` consecutive attempts that made
no progress; an attempt that brought bytes resets the count.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from agent.errors import OtaError, ProtocolError, TransportError, VerificationError
from dmclient.control import TransferControl
from dmclient.digests import Hashes, StreamHasher, hash_file
from dmclient.errors import DownloadInterrupted, HttpStatusError, StorageFullError, TlsRefusedError
from dmclient.fetcher import Fetcher, Validator
from dmclient.partfile import PartFile, Writer
from dmclient.retry import RetryPolicy
from dmclient.state import StateDb, TransferRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Blob:
    """An object to download as served: where, how many bytes, which digests."""

    url: str
    length: int
    hashes: Hashes
    label: str = "download"

    @property
    def key(self) -> str:
        return self.hashes.sha256


@dataclass
class TransferOutcome:
    path: Path
    #: bytes received from the network by this run (re-fetched bytes included)
    fetched: int = 0
    #: offset this run resumed from
    resumed_from: int = 0
    notes: list[str] = field(default_factory=list)


def _retryable(e: OtaError) -> bool:
    if isinstance(e, HttpStatusError):
        return e.retryable
    if isinstance(e, TlsRefusedError):
        return False
    return isinstance(e, TransportError)


class ResumableTransfer:
    """One run of one transfer (single use: make a new one to resume after it raised)."""

    def __init__(self, blob: Blob, part_path: Path, *, db: StateDb, fetcher: Fetcher,
                 policy: RetryPolicy, checkpoint_bytes: int, control: TransferControl | None = None,
                 on_progress: Callable[[int], None] | None = None,
                 on_commit: Callable[[int], None] | None = None, write: Writer = os.write) -> None:
        self.blob = blob
        self.part_path = part_path
        self.db = db
        self.fetcher = fetcher
        self.policy = policy
        self.checkpoint_bytes = max(1, checkpoint_bytes)
        self.control = control or TransferControl()
        self.on_progress = on_progress or (lambda _n: None)
        self.on_commit = on_commit or (lambda _n: None)
        self.write = write
        self.offset = 0
        self.committed = 0
        #: offset of the last checkpoint handed to the syncer thread
        self._requested = 0
        self._syncer: threading.Thread | None = None
        self._sync_error: BaseException | None = None
        self.validator = Validator()
        self.hasher = StreamHasher(sha512=blob.hashes.sha512 is not None)
        self.outcome = TransferOutcome(part_path)

    # -- public -------------------------------------------------------------------------
    def run(self) -> TransferOutcome:
        """Download (or finish) the blob into ``part_path``; verified on return."""
        part = PartFile(self.part_path, write=self.write)
        try:
            self._resume(part)
            self.outcome.resumed_from = self.offset
            self.on_progress(self.offset)
            self.on_commit(self.committed)
            self.hasher.threaded()
            self._download(part)
            self._checkpoint(part)
            self._verify()
            return self.outcome
        except StorageFullError:
            self._join_syncer(raise_error=False)
            self._truncate_to_committed(part)
            raise
        except VerificationError:
            self._join_syncer(raise_error=False)
            part.close()
            self.discard()
            raise
        except OtaError:  # interrupted, or a failure worth resuming from later
            self._checkpoint(part)
            raise
        finally:
            self._join_syncer(raise_error=False)
            self.hasher.close()
            part.close()

    def discard(self) -> None:
        """Forget the transfer: delete the .part and its state row."""
        self.part_path.unlink(missing_ok=True)
        self.db.delete_transfer(self.blob.key)

    # -- resume -------------------------------------------------------------------------
    def _record(self, committed: int, prefix: str | None) -> TransferRecord:
        return TransferRecord(self.blob.key, self.blob.url, self.blob.length, self.blob.hashes.sha512,
                              self.validator.etag,
                              self.validator.last_modified, committed, prefix)

    def _reset(self, part: PartFile, why: str | None = None) -> None:
        if why:
            log.warning("%s: %s; restarting from zero", self.blob.label, why)
            self.outcome.notes.append(f"{why}; restarted from zero")
        part.truncate(0)
        self._join_syncer(raise_error=False)
        self.offset = self.committed = self._requested = 0
        threaded = self.hasher.is_threaded
        self.hasher.close()
        self.hasher = StreamHasher(sha512=self.blob.hashes.sha512 is not None)
        if threaded:
            self.hasher.threaded()
        self.validator = Validator()
        self.db.put_transfer(self._record(0, None))

    def _resume(self, part: PartFile) -> None:
        rec = self.db.transfer(self.blob.key)
        size = part.size()
        if rec is None:
            if size:
                log.warning("%s: %s has %d bytes but no recorded state; discarding them",
                            self.blob.label, self.part_path, size)
            self._reset(part)
            return
        if rec.length != self.blob.length:
            self._reset(part, f"recorded length {rec.length} differs from the expected {self.blob.length}")
            return
        if rec.url == self.blob.url:
            self.validator = Validator(rec.etag, rec.last_modified)
        if size < rec.committed:
            self._reset(part, f"partial file is {size} bytes, shorter than the {rec.committed} committed")
            return
        if size > rec.committed:
            log.info("%s: cutting %d uncommitted bytes off %s", self.blob.label, size - rec.committed,
                     self.part_path)
            part.truncate(rec.committed)
        hasher = hash_file(self.part_path, sha512=self.blob.hashes.sha512 is not None, limit=rec.committed)
        if rec.committed and hasher.prefix_sha256() != rec.prefix_sha256:
            self._reset(part, f"partial file {self.part_path.name} is corrupt (its first {rec.committed} "
                              "bytes do not hash as recorded)")
            return
        self.hasher = hasher
        self.offset = self.committed = self._requested = rec.committed
        part.seek_end()
        if rec.url != self.blob.url:
            self.db.put_transfer(self._record(self.committed, rec.prefix_sha256))
        if self.offset:
            log.info("%s: resuming at byte %d of %d", self.blob.label, self.offset, self.blob.length)

    # -- download loop ------------------------------------------------------------------
    def _download(self, part: PartFile) -> None:
        failures = 0
        while self.offset < self.blob.length:
            self.control.check()
            before = self.offset
            try:
                self._attempt(part)
                continue
            except (DownloadInterrupted, VerificationError, StorageFullError):
                raise
            except OtaError as e:
                if not _retryable(e):
                    raise
                self._checkpoint(part)
                failures = 0 if self.offset > before else failures + 1
                if failures >= self.policy.max_attempts:
                    raise TransportError(f"{e} (gave up after {failures} attempts without progress)") from e
                retry_after = e.retry_after if isinstance(e, HttpStatusError) else None
                delay = self.policy.delay(max(1, failures), retry_after)
                log.warning("%s: %s; retrying in %.1f s (at byte %d of %d)", self.blob.label, e, delay,
                            self.offset, self.blob.length)
                self.control.wait(delay)

    def _attempt(self, part: PartFile) -> None:
        url, length = self.blob.url, self.blob.length
        if_range = self.validator.if_range() if self.offset else None
        with self.fetcher.fetch(url, offset=self.offset, if_range=if_range) as resp:
            if resp.complete_length is not None and resp.complete_length != length:
                raise VerificationError(f"{self.blob.label}: server's file is {resp.complete_length} bytes, "
                                        f"expected {length} ({url})")
            if self.offset and resp.status == 200:
                self._reset(part, "server answered the Range request with the whole file "
                                  "(Range not supported or the file changed)")
            elif resp.status == 206:
                if resp.start != self.offset:
                    raise ProtocolError(f"{url}: asked for bytes from {self.offset}, got a range "
                                        f"starting at {resp.start}")
                if not self.validator.same_as(resp.validator):
                    self._reset(part, "the file changed on the server (validator differs)")
                    return
            if resp.validator != self.validator:
                self.validator = resp.validator
                self.db.set_transfer_validator(self.blob.key, resp.validator.etag, resp.validator.last_modified)
            for chunk in resp.chunks(limit=length - self.offset + 1):  # one byte more shows a longer body
                n = len(chunk)
                if self.offset + n > length:
                    raise VerificationError(f"{self.blob.label}: body longer than the expected {length} bytes "
                                            f"({url})")
                part.write(chunk)
                self.hasher.update(chunk)
                self.offset += n
                self.outcome.fetched += n
                self.on_progress(self.offset)
                if self.offset - self._requested >= self.checkpoint_bytes:
                    self._checkpoint_in_background(part)
                self.control.check()
        if self.offset < length:
            raise TransportError(f"{url}: connection ended after byte {self.offset} of {length}")

    # -- durability -----------------------------------------------------------------------
    # A checkpoint fsyncs the .part and only then records the length in the database. While
    # downloading, that happens in a syncer thread so the disk flush overlaps the network
    # (at most one in flight: the next checkpoint waits for it); fsync flushes everything
    # written so far, so the recorded length is never ahead of what is on disk.

    def _commit_at(self, part: PartFile, offset: int, prefix: str) -> None:
        part.sync()
        self.db.commit_transfer(self.blob.key, offset, prefix)
        self.committed = offset
        self.on_commit(offset)

    def _checkpoint_in_background(self, part: PartFile) -> None:
        self._join_syncer(raise_error=True)
        offset, prefix = self.offset, self.hasher.prefix_sha256()
        self._requested = offset

        def sync() -> None:
            try:
                self._commit_at(part, offset, prefix)
            except BaseException as e:  # reported to the download thread by _join_syncer
                self._sync_error = e

        self._syncer = threading.Thread(target=sync, name=f"sync-{self.blob.key[:12]}", daemon=True)
        self._syncer.start()

    def _join_syncer(self, *, raise_error: bool) -> None:
        if self._syncer is not None:
            self._syncer.join()
            self._syncer = None
        error, self._sync_error = self._sync_error, None
        if error is not None and raise_error:
            raise error

    def _checkpoint(self, part: PartFile) -> None:
        """Synchronous checkpoint: fsync the .part, then record the committed length."""
        try:
            self._join_syncer(raise_error=True)
            if self.offset != self.committed:
                self._commit_at(part, self.offset, self.hasher.prefix_sha256())
        except (StorageFullError, OSError):
            self._truncate_to_committed(part)
            raise
        self._requested = self.offset

    def _truncate_to_committed(self, part: PartFile) -> None:
        try:
            part.truncate(self.committed)
        except OSError as e:  # closed or unwritable: the next resume cuts it anyway
            log.warning("%s: could not cut %s back to %d bytes: %s", self.blob.label, self.part_path,
                        self.committed, e)
        self.offset = self.committed

    def _verify(self) -> None:
        self.hasher.verify(self.blob.hashes, f"{self.blob.label} ({self.blob.url})")
