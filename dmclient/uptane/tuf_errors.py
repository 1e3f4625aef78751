"""python-tuf's exceptions mapped onto the project's errors, by the attack they reveal.

python-tuf raises a handful of classes (``tuf.api.exceptions``) for many situations;
which Uptane attack one means depends on where it was raised. The mapping:

==================================  ===============================================
python-tuf                          ours
==================================  ===============================================
``ExpiredMetadataError``            :class:`FreezeError`
``UnsignedMetadataError``           :class:`UntrustedRootError` when a new root is
                                    not signed by its predecessor's keys (and its
                                    own), else :class:`SignatureError`
``BadVersionNumberError``           :class:`MixAndMatchError` when snapshot / targets
                                    do not carry the version their parent metadata
                                    names; :class:`RollbackError` when a version goes
                                    down (timestamp, snapshot, a role in snapshot)
``LengthOrHashMismatchError``       :class:`MixAndMatchError` for metadata (snapshot
                                    or targets not what timestamp / snapshot say),
                                    :class:`ArbitrarySoftwareError` for a target file
``DownloadLengthMismatchError``     :class:`EndlessDataError`
``DownloadHTTPError`` etc.          the dmclient fetcher's own error (``__cause__``):
                                    TransportError, OtaTimeoutError, UntrustedServer...
``RepositoryError`` (other)         :class:`InvalidMetadataError`
==================================  ===============================================

The distinctions inside ``BadVersionNumberError`` and ``UnsignedMetadataError`` read
python-tuf's messages (the class alone does not tell them apart); the texts are those
of tuf 5 to 7 (``setup.cfg`` pins ``tuf<8``) and ``tests/uptane`` pins the outcome of
each attack, so a change in a future python-tuf shows up as a failing test, not as a
silently different classification. Unrecognised texts fall back to the safe side
(RollbackError / SignatureError: still a VerificationError).
"""

from __future__ import annotations

import re

from tuf.api import exceptions as tx

from agent.errors import OtaError, TransportError
from dmclient.errors import NO_SPACE, StorageFullError
from dmclient.uptane.errors import (
    ArbitrarySoftwareError,
    EndlessDataError,
    FreezeError,
    InvalidMetadataError,
    MixAndMatchError,
    RollbackError,
    SignatureError,
    UntrustedRootError,
)

# "Expected snapshot version 3, got 2" (snapshot vs timestamp), "Expected targets v3, got v2." (role vs snapshot)
_MISMATCH = re.compile(r"^Expected (snapshot version \d+, got \d+|\S+ v\d+, got v\d+)")
_ROOT_SIGNERS = re.compile(r"^root was signed by \d+/\d+ keys")


def _cause(e: BaseException) -> OtaError | None:
    seen = 0
    cur: BaseException | None = e
    while cur is not None and seen < 8:
        if isinstance(cur, OtaError):
            return cur
        cur = cur.__cause__ or cur.__context__
        seen += 1
    return None


def map_tuf_error(e: Exception, repository: str, *, target: str | None = None) -> OtaError:
    """Our error for an exception from python-tuf while working on ``repository``.

    ``target``: the target file being downloaded, when it is one (not metadata).
    """
    where = f"{repository} repository" + (f", target {target}" if target else "")
    text = str(e) or type(e).__name__
    if isinstance(e, OtaError):
        return e
    if isinstance(e, tx.DownloadLengthMismatchError):
        return EndlessDataError(f"{where}: endless data: {text}", repository=repository)
    if isinstance(e, tx.DownloadError):
        inner = _cause(e)
        if inner is not None:
            return inner
        return TransportError(f"{where}: download failed: {text}")
    if isinstance(e, tx.ExpiredMetadataError):
        return FreezeError(f"{where}: freeze attack or stale repository: {text}", repository=repository)
    if isinstance(e, tx.UnsignedMetadataError):
        if _ROOT_SIGNERS.match(text):
            return UntrustedRootError(f"{where}: new root metadata is not signed by the trusted root's keys "
                                      f"({text})", repository=repository)
        return SignatureError(f"{where}: bad or missing signatures: {text}", repository=repository)
    if isinstance(e, tx.BadVersionNumberError):
        if _MISMATCH.match(text):
            return MixAndMatchError(f"{where}: mix-and-match: {text}", repository=repository)
        return RollbackError(f"{where}: metadata rollback: {text}", repository=repository)
    if isinstance(e, tx.LengthOrHashMismatchError):
        if target is not None:
            return ArbitrarySoftwareError(f"{where}: file does not match its signed length and hashes: {text}",
                                          repository=repository)
        return MixAndMatchError(f"{where}: mix-and-match: metadata does not match the length and hashes "
                                f"its parent metadata gives: {text}", repository=repository)
    if isinstance(e, tx.RepositoryError):
        return InvalidMetadataError(f"{where}: invalid metadata: {text}", repository=repository)
    if isinstance(e, OSError) and e.errno in NO_SPACE:  # persisting verified metadata: not the repository's fault
        return StorageFullError(f"{where}: disk full while storing metadata {e.filename or ''}: {e.strerror}")
    return InvalidMetadataError(f"{where}: {type(e).__name__}: {text}", repository=repository)
