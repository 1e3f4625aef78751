"""Signals of a daemon, handled inside the asyncio loop.

SIGTERM and SIGINT ask for a clean shutdown (the first one; a second one
while shutting down is logged, the shutdown timeout bounds the wait);
SIGHUP asks for a configuration reload. Handlers run as loop callbacks, so
they never interrupt the code they land in.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class SignalHandlers:
    """Installs and removes the daemon's signal handlers on a running loop."""

    def __init__(self, on_stop: Callable[[signal.Signals], None], on_reload: Callable[[], None]) -> None:
        self._on_stop = on_stop
        self._on_reload = on_reload
        self._loop: asyncio.AbstractEventLoop | None = None
        self.stop_requested: signal.Signals | None = None

    def install(self) -> None:
        self._loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            self._loop.add_signal_handler(sig, self._stop, sig)
        self._loop.add_signal_handler(signal.SIGHUP, self._reload)

    def remove(self) -> None:
        if self._loop is None:
            return
        for sig in (*STOP_SIGNALS, signal.SIGHUP):
            self._loop.remove_signal_handler(sig)
        self._loop = None

    def _stop(self, sig: signal.Signals) -> None:
        if self.stop_requested is not None:
            log.warning("%s while shutting down; still waiting for the shutdown to finish", sig.name)
            return
        log.info("%s: shutting down", sig.name)
        self.stop_requested = sig
        self._on_stop(sig)

    def _reload(self) -> None:
        log.info("SIGHUP: reloading the configuration")
        self._on_reload()
