"""bsdiff4 delta reconstruction against a cached base image, verified both ends.

Order of checks: the base image is read into memory and its SHA-256 / SHA-512 must equal
what the delta was made from (checked on the very bytes that are patched, so a base
changed on disk in between cannot slip through); then ``bsdiff4.patch`` rebuilds the
target, whose length and digests must equal the target's; only then is the result
written (to a private temp file, fsynced) for the cache to admit. A disk that fills up
while it is written is a :class:`~dmclient.errors.StorageFullError` naming the file, and
the half-written file is removed.

Memory: ``bsdiff4`` works on whole buffers, so a reconstruction holds the base, the
patch and the result at once (plus bsdiff4's decompressed control / diff / extra blocks
while it runs): about ``base + patch + 2 x target`` bytes. ``max_bytes`` caps the base
and the target size accepted (config ``delta_max_bytes``); a larger delta is refused
with a clear error, and the download falls back to the full image when one is offered.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import bsdiff4

from agent.errors import VerificationError
from dmclient.digests import Hashes, verify_hashes
from dmclient.partfile import PartFile, Writer


class DeltaTooLarge(VerificationError):
    """The delta's base or result is larger than the configured in-memory limit."""


def _digests(data: bytes, *, sha512: bool) -> Hashes:
    """SHA-256 (and SHA-512 when wanted) of a buffer, the two in parallel (hashlib drops the GIL)."""
    if not sha512:
        return Hashes(hashlib.sha256(data).hexdigest())
    out: list[str] = []
    worker = threading.Thread(target=lambda: out.append(hashlib.sha512(data).hexdigest()), name="hash-sha512")
    worker.start()
    sha256 = hashlib.sha256(data).hexdigest()
    worker.join()
    return Hashes(sha256, out[0])


def apply_delta(base: Path, patch: Path, out: Path, *, base_hashes: Hashes, target_hashes: Hashes,
                target_length: int, max_bytes: int, what: str, write: Writer = os.write) -> Hashes:
    """Rebuild the target into ``out``; its verified digests. ``out`` exists only on success.

    ``write`` is the low-level write (injectable, as for a download's ``.part``); the disk filling up
    while ``out`` is written is :class:`~dmclient.errors.StorageFullError`, the base untouched."""
    if target_length > max_bytes:
        raise DeltaTooLarge(f"{what}: target of {target_length} bytes exceeds the delta limit of "
                            f"{max_bytes} bytes (bsdiff4 reconstruction holds it in memory)")
    base_size = base.stat().st_size
    if base_size > max_bytes:
        raise DeltaTooLarge(f"{what}: base image of {base_size} bytes exceeds the delta limit of "
                            f"{max_bytes} bytes")
    source = base.read_bytes()
    verify_hashes(base_hashes, _digests(source, sha512=base_hashes.sha512 is not None),
                  f"{what}: delta base {base.name}")
    try:
        result = bsdiff4.patch(source, patch.read_bytes())
    except Exception as e:  # bsdiff4 raises ValueError / RuntimeError on a malformed patch
        raise VerificationError(f"{what}: patch does not apply to the base image: {e}") from e
    del source
    if len(result) != target_length:
        raise VerificationError(f"{what}: delta produced {len(result)} bytes, expected {target_length}")
    digests = _digests(result, sha512=target_hashes.sha512 is not None)
    verify_hashes(target_hashes, digests, f"{what}: delta result")
    ok = False
    try:
        with PartFile.create(out, write=write) as f:  # a full disk: StorageFullError naming ``out``
            f.write(result)
            f.sync()
        ok = True
    finally:
        if not ok:
            out.unlink(missing_ok=True)
    return digests
