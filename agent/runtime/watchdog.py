"""A watchdog that means something: systemd is pinged only while every busy worker makes progress.

A pinging loop alone proves only that the event loop runs. Here each
long-running worker registers, calls :meth:`Worker.heartbeat` whenever it
makes progress (a chunk downloaded, a block flashed), and declares itself
:meth:`Worker.idle` while it has nothing to do (waiting for an order is not
a hang). The daemon pings ``WATCHDOG=1`` at half of ``$WATCHDOG_USEC`` only
while no busy worker is past its deadline; once one is, pings stop, the
status says which worker stalled, and systemd restarts the daemon when its
watchdog timeout passes (``Restart=on-watchdog`` / ``on-failure``)::

    worker = daemon.worker("downloader", deadline=30)
    while True:
        worker.idle()
        order = await queue.get()
        worker.busy()                   # the deadline runs from now
        async for chunk in fetch(order):
            worker.heartbeat()          # progress

:class:`Watchdog` is pure (the clock is injected); :class:`WatchdogPinger`
decides each tick, and its ``run`` loop is the only part that sleeps.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.runtime.sdnotify import Notifier

log = logging.getLogger(__name__)

Clock = Callable[[], float]


@dataclass(frozen=True)
class WorkerState:
    """What :meth:`Watchdog.snapshot` reports for one worker."""

    name: str
    state: str  # "busy" | "idle" | "stalled"
    since_progress_s: float
    deadline_s: float


class Worker:
    """One registered worker; see the module docstring for how to use it."""

    def __init__(self, watchdog: Watchdog, name: str, deadline: float, idle: bool) -> None:
        if deadline <= 0:
            raise ValueError(f"worker {name}: deadline must be > 0, got {deadline}")
        self.name = name
        self.deadline = deadline
        self._watchdog = watchdog
        self._idle = idle
        self.last_progress = watchdog.clock()

    def heartbeat(self) -> None:
        """Progress was made (marks the worker busy if it was idle)."""
        self.last_progress = self._watchdog.clock()
        self._idle = False

    def busy(self) -> None:
        """Work starts now: the deadline counts from this moment."""
        self.heartbeat()

    def idle(self) -> None:
        """Nothing to do: no deadline until the next :meth:`busy` or :meth:`heartbeat`."""
        self._idle = True
        self.last_progress = self._watchdog.clock()

    @property
    def is_idle(self) -> bool:
        return self._idle

    def close(self) -> None:
        """Unregister (the worker's task ended on purpose)."""
        self._watchdog._workers.pop(self.name, None)


class Watchdog:
    """The registry of workers and the healthy/stalled decision."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self._workers: dict[str, Worker] = {}

    def worker(self, name: str, deadline: float, *, idle: bool = True) -> Worker:
        """Register a worker (idle until it calls ``busy``/``heartbeat``, unless ``idle=False``)."""
        if name in self._workers:
            raise ValueError(f"worker {name!r} is already registered")
        w = Worker(self, name, deadline, idle)
        self._workers[name] = w
        return w

    def stalled(self) -> list[Worker]:
        """Busy workers past their deadline (empty: healthy)."""
        now = self.clock()
        return [w for w in self._workers.values() if not w.is_idle and now - w.last_progress > w.deadline]

    def snapshot(self) -> list[WorkerState]:
        now = self.clock()
        out = []
        for w in self._workers.values():
            since = max(0.0, now - w.last_progress)
            state = "idle" if w.is_idle else "stalled" if since > w.deadline else "busy"
            out.append(WorkerState(name=w.name, state=state, since_progress_s=since, deadline_s=w.deadline))
        return out


class WatchdogPinger:
    """Pings systemd while the workers are healthy; reports a stall (and the recovery) in STATUS."""

    def __init__(self, watchdog: Watchdog, notifier: Notifier) -> None:
        self.watchdog = watchdog
        self.notifier = notifier
        self.stalled_names: tuple[str, ...] = ()

    def tick(self) -> bool:
        """One decision: ping if healthy. Returns whether it pinged."""
        stalled = self.watchdog.stalled()
        names = tuple(sorted(w.name for w in stalled))
        if stalled:
            if names != self.stalled_names:
                now = self.watchdog.clock()
                detail = ", ".join(f"{w.name} (no progress for {now - w.last_progress:.1f} s, deadline "
                                   f"{w.deadline:g} s)" for w in stalled)
                log.error("watchdog: not pinging systemd: stalled worker(s): %s", detail)
                self.notifier.status(f"watchdog: stalled: {detail}")
            self.stalled_names = names
            return False
        if self.stalled_names:
            log.warning("watchdog: worker(s) %s progress again; pinging systemd", ", ".join(self.stalled_names))
            self.notifier.status("watchdog: all workers progressing")
            self.stalled_names = ()
        return self.notifier.watchdog()

    async def run(self, period: float) -> None:
        """Tick every ``period`` seconds (``$WATCHDOG_USEC`` / 2) until cancelled."""
        while True:
            self.tick()
            await asyncio.sleep(period)
