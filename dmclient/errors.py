"""Leaf errors of the download client, each under the branch of the project's one root.

* :class:`HttpStatusError` (transport): the backend answered with an HTTP status that is
  not a successful transfer; ``retryable`` and ``retry_after`` tell the retry loop what to do.
* :class:`TlsRefusedError` (transport, not retryable): the TLS handshake was refused by the
  peer (no client certificate, unknown client CA).
* :class:`UntrustedServerError` (verification): the server's certificate does not chain
  to the configured OEM CA: a trust failure, never retried.
* :class:`StorageFullError` (vehicle state): not enough free space, before starting or
  during writing (``ENOSPC`` / ``EDQUOT``); the partial file is kept consistent for a later
  resume. Every write path of the client (``.part`` files, decryption and delta output,
  publishing into the cache, making verified Uptane metadata current) goes through
  :func:`disk_full_as_storage_error`, and python-tuf's own ``ENOSPC`` while it stores metadata
  is mapped the same way (:mod:`dmclient.uptane.tuf_errors`): a full disk is this error naming
  the file, never a bare ``OSError`` nor "invalid metadata".
* :class:`DownloadInterrupted`: not a failure; pause or cancel stopped a transfer.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator

from agent.errors import OtaError, TransportError, VehicleStateError, VerificationError


class HttpStatusError(TransportError):
    """The server answered with a status other than 200 / 206."""

    def __init__(self, message: str, *, status: int, retryable: bool,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after


class TlsRefusedError(TransportError):
    """The peer refused our TLS handshake (client certificate missing or not trusted)."""

    retryable = False


class UntrustedServerError(VerificationError):
    """The server's certificate does not chain to the configured CA bundle."""


class StorageFullError(VehicleStateError):
    """Not enough free space for a download, or the disk filled up while writing."""


class DownloadInterrupted(OtaError):
    """A transfer stopped because it was paused or cancelled (not a failure)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"download {reason}")
        self.reason = reason


#: the errnos of a full disk (no space left, or the quota of the user or group used up)
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


@contextlib.contextmanager
def disk_full_as_storage_error(doing: str, path: str | os.PathLike[str]) -> Iterator[None]:
    """Within the block, ``ENOSPC`` / ``EDQUOT`` become :class:`StorageFullError` naming what was being done to
    which file ("disk full while writing /cache/tmp/x.delta: No space left on device"); other errors pass."""
    try:
        yield
    except OSError as e:
        if e.errno in NO_SPACE:
            raise StorageFullError(f"disk full while {doing} {os.fspath(path)}: {e.strerror}") from e
        raise
