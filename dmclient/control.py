"""Pause / cancel signalling between the download manager and a running transfer.

The transfer calls :meth:`TransferControl.check` between chunks and
:meth:`TransferControl.wait` instead of sleeping between retries, so a pause or cancel
takes effect within one chunk or at once during a back-off wait. ``wait`` can be
replaced (tests inject a recorder instead of real time).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from dmclient.errors import DownloadInterrupted


class TransferControl:
    def __init__(self, *, sleep: Callable[[float], None] | None = None,
                 before_wait: Callable[[], None] | None = None) -> None:
        self._stop = threading.Event()
        self._reason = ""
        self._sleep = sleep
        self._before_wait = before_wait

    def request(self, reason: str) -> None:
        """Ask the transfer to stop (``"paused"`` or ``"cancelled"``)."""
        self._reason = reason
        self._stop.set()

    @property
    def reason(self) -> str | None:
        return self._reason if self._stop.is_set() else None

    def check(self) -> None:
        if self._stop.is_set():
            raise DownloadInterrupted(self._reason)

    def wait(self, seconds: float) -> None:
        """Back-off wait that ends early (raising DownloadInterrupted) on pause or cancel."""
        if self._before_wait is not None:
            self._before_wait()
        if self._sleep is not None:
            self._sleep(seconds)
        elif self._stop.wait(seconds):
            pass
        self.check()
