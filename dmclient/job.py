"""One target from order to cache: cache hit, delta, or full (optionally encrypted) image.

The decision, in order:

1. the image is already cached (same SHA-256, and SHA-512 when given) and its bytes still hash to
   that: done, nothing fetched (a copy changed at rest is dropped and the image fetched again);
2. a delta is offered and its base image is in the cache: fetch the patch (resumable,
   verified), rebuild with :func:`dmclient.delta.apply_delta`, admit the verified result;
   a missing or wrong base, an oversized delta, a tampered patch or a result that does not
   verify falls back to the full image when one is offered, else fails with that reason;
3. the full image: resumable transfer into ``parts/``; when encrypted, the content key is
   unwrapped *before* anything is fetched (a key wrapped to another vehicle fails at once),
   the ciphertext is verified against its digests, decrypted in a stream to ``tmp/`` and the
   plaintext checked against the image digests; the verified file is then admitted.

Every failure leaves a defined state: verification failures discard the partial file;
transport failures and a full disk keep it (consistent with its committed length) for a
later resume; nothing unverified ever reaches ``objects/``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from agent.errors import ConfigurationError, VerificationError
from dmclient.cache import PackageCache
from dmclient.control import TransferControl
from dmclient.delta import apply_delta
from dmclient.digests import Hashes
from dmclient.encryption import VehicleKeyFile, decrypt_file, unwrap_content_key
from dmclient.fetcher import Fetcher
from dmclient.order import TargetSpec
from dmclient.partfile import Writer
from dmclient.retry import RetryPolicy
from dmclient.space import check_free_space
from dmclient.state import StateDb
from dmclient.transfer import Blob, ResumableTransfer

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobSettings:
    policy: RetryPolicy
    checkpoint_bytes: int
    delta_max_bytes: int
    min_free_bytes: int
    #: the key, or its file loaded on first use (what the daemon passes)
    vehicle_key: ec.EllipticCurvePrivateKey | VehicleKeyFile | None = None
    write: Writer = os.write


@dataclass
class JobResult:
    path: Path
    source: str  # cache | delta | full
    fetched: int = 0
    notes: list[str] = field(default_factory=list)


class TargetJob:
    def __init__(self, spec: TargetSpec, *, cache: PackageCache, db: StateDb, fetcher: Fetcher,
                 settings: JobSettings, control: TransferControl | None = None,
                 on_progress: Callable[[int, int], None] | None = None,
                 on_phase: Callable[[str], None] | None = None,
                 on_commit: Callable[[int], None] | None = None) -> None:
        self.spec = spec
        self.cache = cache
        self.db = db
        self.fetcher = fetcher
        self.settings = settings
        self.control = control or TransferControl()
        self.on_progress = on_progress or (lambda _done, _total: None)
        self.on_phase = on_phase or (lambda _phase: None)
        self.on_commit = on_commit or (lambda _n: None)
        self.notes: list[str] = []
        self.fetched = 0

    def run(self) -> JobResult:
        spec = self.spec
        cached = self.cache.lookup(spec.hashes, verify=True)  # a copy changed at rest is dropped and fetched
        if cached is not None:
            self.on_progress(spec.length, spec.length)
            return JobResult(cached, "cache", notes=["already in the cache"])
        if spec.delta is not None:
            path = self._try_delta()
            if path is not None:
                return JobResult(path, "delta", self.fetched, self.notes)
        return JobResult(self._full(), "full", self.fetched, self.notes)

    def discard_partials(self) -> None:
        """Forget the partial downloads of this target (after a cancel)."""
        blobs = [b for b in (self.spec.full_blob(), self.spec.delta.patch if self.spec.delta else None) if b]
        for blob in blobs:
            self._transfer(blob).discard()

    # -- paths ----------------------------------------------------------------------------
    def _transfer(self, blob: Blob) -> ResumableTransfer:
        total = blob.length
        return ResumableTransfer(blob, self.cache.parts / f"{blob.key}.part", db=self.db, fetcher=self.fetcher,
                                 policy=self.settings.policy, checkpoint_bytes=self.settings.checkpoint_bytes,
                                 control=self.control, on_progress=lambda done: self.on_progress(done, total),
                                 on_commit=self.on_commit, write=self.settings.write)

    def _remaining(self, blob: Blob) -> int:
        rec = self.db.transfer(blob.key)
        return blob.length - (rec.committed if rec and rec.length == blob.length else 0)

    def _fall_back(self, why: str) -> None:
        if self.spec.url is None:
            raise VerificationError(f"{self.spec.name}: {why}, and no full image is offered")
        log.warning("%s: %s; falling back to the full image", self.spec.name, why)
        self.notes.append(f"{why}; fell back to the full image")

    # -- delta ----------------------------------------------------------------------------
    def _try_delta(self) -> Path | None:
        spec = self.spec
        assert spec.delta is not None
        base = self.cache.lookup(spec.delta.base, verify=True)  # often the pinned rollback image: drop it if bad
        if base is None:
            self._fall_back(f"delta base {spec.delta.base.sha256[:16]}... is not in the cache")
            return None
        if max(spec.length, base.stat().st_size) > self.settings.delta_max_bytes:
            self._fall_back(f"delta exceeds the in-memory limit of {self.settings.delta_max_bytes} bytes")
            return None
        patch = spec.delta.patch
        check_free_space(self.cache.root, self._remaining(patch) + spec.length,
                         reserve=self.settings.min_free_bytes, what=spec.name)
        transfer = self._transfer(patch)
        self.on_phase("downloading")
        try:
            outcome = transfer.run()
        except VerificationError as e:
            self._fall_back(f"delta patch rejected ({e})")
            return None
        self.fetched += outcome.fetched
        self.notes.extend(outcome.notes)
        self.on_phase("patching")
        out = self.cache.temp_path(f"{spec.hashes.sha256}.delta")
        try:
            digests = apply_delta(base, outcome.path, out, base_hashes=spec.delta.base, target_hashes=spec.hashes,
                                  target_length=spec.length, max_bytes=self.settings.delta_max_bytes,
                                  what=spec.name, write=self.settings.write)
        except VerificationError as e:
            transfer.discard()
            self._fall_back(str(e))
            return None
        transfer.discard()
        return self._admit(out, digests, keep=spec.delta.base.sha256)

    # -- full image -------------------------------------------------------------------------
    def _full(self) -> Path:
        spec = self.spec
        blob = spec.full_blob()
        assert blob is not None
        key = None
        if spec.encryption is not None:
            if self.settings.vehicle_key is None:
                raise ConfigurationError(f"{spec.name}: target is encrypted but no vehicle decryption key "
                                         "is configured (encryption_key)")
            vehicle_key = self.settings.vehicle_key
            if isinstance(vehicle_key, VehicleKeyFile):
                vehicle_key = vehicle_key.key()
            key = unwrap_content_key(vehicle_key, spec.encryption, spec.name)
        extra = spec.length if key is not None else 0
        check_free_space(self.cache.root, self._remaining(blob) + extra,
                         reserve=self.settings.min_free_bytes, what=spec.name)
        transfer = self._transfer(blob)
        self.on_phase("downloading")
        outcome = transfer.run()
        self.fetched += outcome.fetched
        self.notes.extend(outcome.notes)
        if key is None:
            try:
                return self._admit(outcome.path, transfer.hasher.result())
            finally:
                self.db.delete_transfer(blob.key)
        assert spec.encryption is not None
        self.on_phase("decrypting")
        out = self.cache.temp_path(f"{spec.hashes.sha256}.plain")
        try:
            hasher = decrypt_file(outcome.path, out, key, spec.encryption.nonce, what=spec.name,
                                  write=self.settings.write)
            if hasher.length != spec.length:
                raise VerificationError(f"{spec.name}: decrypted image is {hasher.length} bytes, "
                                        f"expected {spec.length}")
            hasher.verify(spec.hashes, f"{spec.name} (decrypted)")
        except VerificationError:
            out.unlink(missing_ok=True)
            transfer.discard()
            raise
        transfer.discard()
        return self._admit(out, hasher.result())

    def _admit(self, path: Path, verified: Hashes, keep: str | None = None) -> Path:
        try:
            return self.cache.admit(path, verified, self.spec.length, keep=[keep] if keep else [])
        except BaseException:
            path.unlink(missing_ok=True)
            raise
