"""A bench and test fault hook: make a daemon hang on SIGUSR2, so its watchdog logic must notice.

Enabled only by ``<daemon>.watchdog.debug_hang: true`` in the stack config (never in a
board's config): on SIGUSR2 the daemon registers a watchdog worker ``debug-hang``, marks
it busy and then blocks the event loop thread in a wait that never ends - a worker stuck
in a blocking call. Nothing on the loop runs any more: no IPC answer, no campaign step,
and no ``WATCHDOG=1`` (the pinger is a loop task too, and the busy worker is past its
deadline even if the loop came back), so systemd - or on the bench
:class:`agent.runtime.keeper.WatchdogKeeper` - sends SIGABRT once ``WatchdogSec`` passes
and restarts the daemon. Without the flag SIGUSR2 keeps its default action.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading

from agent.runtime.watchdog import Watchdog

log = logging.getLogger(__name__)

HANG_SIGNAL = signal.SIGUSR2


class DebugHang:
    """Installs the SIGUSR2 handler on the running loop; :meth:`hang` is the fault itself."""

    def __init__(self, watchdog: Watchdog, name: str) -> None:
        self.watchdog = watchdog
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        #: set only to let a test end the hang in-process
        self.release = threading.Event()

    def install(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_signal_handler(HANG_SIGNAL, self.hang)
        log.warning("%s: debug hang hook enabled: SIGUSR2 blocks the event loop (bench and tests only)", self.name)

    def remove(self) -> None:
        if self._loop is not None:
            self._loop.remove_signal_handler(HANG_SIGNAL)
            self._loop = None

    def hang(self) -> None:
        worker = self.watchdog.worker("debug-hang", deadline=0.001, idle=False)
        log.error("%s: SIGUSR2: worker %s blocks the event loop now (debug hang hook)", self.name, worker.name)
        self.release.wait()
        worker.close()
