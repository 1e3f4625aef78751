"""python-tuf's network seam, implemented over dmclient's mutual-TLS fetcher.

``tuf.ngclient`` downloads metadata (and, for the baseline XML, a target) through a
:class:`tuf.ngclient.fetcher.FetcherInterface`; implementations provide ``_fetch(url)``
returning byte chunks and must raise ``DownloadHTTPError`` for an HTTP error status
(the root update loop stops on 404 / 403, "no newer root"). :class:`TufFetcher` does
that on top of :class:`dmclient.fetcher.Fetcher`, so metadata travels over the same
``requests`` session, client certificate, CA bundle and timeouts as the downloads.
python-tuf caps every body at the length the metadata allows (``download_file``'s
``max_length``), which is the endless-data protection for metadata.

Connections: the session keeps one mutual-TLS connection alive across a check's requests
and across checks (an error status's short body is read to its end so even the 404 that ends
the root update keeps it: :func:`dmclient.fetcher.close_keeping_connection`). A request the
server dropped without an answer, as on a kept-alive connection it had closed, is sent once
more on a new connection (:func:`once_more_if_dropped`); each new connection verifies the
server against the OEM CA and presents the client certificate, as the first one did.

Errors: our fetcher already turned everything into :class:`~agent.errors.OtaError`
branches; they travel inside tuf's ``DownloadError`` as ``__cause__`` and
:func:`dmclient.uptane.tuf_errors.map_tuf_error` gives them back unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

from tuf.api import exceptions as tuf_exceptions
from tuf.ngclient.fetcher import FetcherInterface

from agent.errors import TransportError
from dmclient.errors import HttpStatusError
from dmclient.fetcher import Fetcher, FetchResponse, dropped_before_answer

T = TypeVar("T")


class TufFetcher(FetcherInterface):
    """A python-tuf fetcher over a dmclient :class:`Fetcher`; counts bytes and requests."""

    def __init__(self, fetcher: Fetcher) -> None:
        self.fetcher = fetcher
        self._lock = threading.Lock()
        self.bytes_received = 0
        self.requests = 0

    def _fetch(self, url: str) -> Iterator[bytes]:
        try:
            response = once_more_if_dropped(lambda: self.fetcher.fetch(url))
        except HttpStatusError as e:
            raise tuf_exceptions.DownloadHTTPError(str(e), e.status) from e
        with self._lock:
            self.requests += 1
        return self._chunks(response)

    def _chunks(self, response: FetchResponse) -> Iterator[bytes]:
        with response:
            for chunk in response.chunks():
                with self._lock:
                    self.bytes_received += len(chunk)
                yield chunk


def once_more_if_dropped(request: Callable[[], T]) -> T:
    """``request()``, sent once more if the server closed the connection without answering.

    The check's requests share one kept-alive connection, within a check and across checks. A
    server that closed its end (idle timeout, restart) while the request was on its way answers
    nothing; the request then goes once more, on a new connection: a metadata GET is idempotent,
    and a manifest POST the Director did accept before dying is refused the second time by its
    report counters (never counted twice). A second failure is the check's error.
    """
    try:
        return request()
    except TransportError as e:
        if not dropped_before_answer(e):
            raise
    return request()
