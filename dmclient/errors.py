"""Leaf errors of the download client, each under the branch of the project's one root.

* :class:`HttpStatusError` (transport): the backend answered with an HTTP status that is
  not a successful transfer; ``retryable`` and ``retry_after`` tell the retry loop what to do.
* :class:`TlsRefusedError` (transport, not retryable): the TLS handshake was refused by the
  peer (no client certificate, unknown client CA).
* :class:`UntrustedServerError` (verification): the server's certificate does not chain
  to the configured OEM CA: a trust failure, never retried.
* :class:`StorageFullError` (vehicle state): not enough free space, before starting or
  during writing (``ENOSPC``); the partial file is kept consistent for a later resume.
* :class:`DownloadInterrupted`: not a failure; pause or cancel stopped a transfer.
"""

from __future__ import annotations

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
