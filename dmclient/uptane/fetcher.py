"""python-tuf's network seam, implemented over dmclient's mutual-TLS fetcher.

``tuf.ngclient`` downloads metadata (and, for the baseline XML, a target) through a
:class:`tuf.ngclient.fetcher.FetcherInterface`; implementations provide ``_fetch(url)``
returning byte chunks and must raise ``DownloadHTTPError`` for an HTTP error status
(the root update loop stops on 404 / 403, "no newer root"). :class:`TufFetcher` does
that on top of :class:`dmclient.fetcher.Fetcher`, so metadata travels over the same
``requests`` session, client certificate, CA bundle and timeouts as the downloads.
python-tuf caps every body at the length the metadata allows (``download_file``'s
``max_length``), which is the endless-data protection for metadata.

Errors: our fetcher already turned everything into :class:`~agent.errors.OtaError`
branches; they travel inside tuf's ``DownloadError`` as ``__cause__`` and
:func:`dmclient.uptane.tuf_errors.map_tuf_error` gives them back unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from tuf.api import exceptions as tuf_exceptions
from tuf.ngclient.fetcher import FetcherInterface

from dmclient.errors import HttpStatusError
from dmclient.fetcher import Fetcher, FetchResponse


class TufFetcher(FetcherInterface):
    """A python-tuf fetcher over a dmclient :class:`Fetcher`; counts bytes and requests."""

    def __init__(self, fetcher: Fetcher) -> None:
        self.fetcher = fetcher
        self._lock = threading.Lock()
        self.bytes_received = 0
        self.requests = 0

    def _fetch(self, url: str) -> Iterator[bytes]:
        try:
            response = self.fetcher.fetch(url)
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
