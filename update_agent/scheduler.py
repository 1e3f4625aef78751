"""Which job runs when: at most one job per bus at a time, in submission order; buses in parallel.

Two ECUs on one CAN bus share its bandwidth and, during programming, the
functional address; a gateway flashes them one after another. ECUs on
different buses do not disturb each other and are flashed at the same time.
Each bus has a FIFO lock (:class:`asyncio.Lock` wakes waiters in order); a
job holds its bus's lock while it runs. Other bus users that must not
interleave with a flash (version reads, functional session changes) take the
same locks through :meth:`BusScheduler.buses`.

The work itself (a blocking UDS flash) is the injected ``run`` coroutine's
business; the daemon runs it in a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from contextlib import asynccontextmanager
from typing import Any

from update_agent.jobs import Job

Spawn = Callable[[Coroutine[Any, Any, Any], str], "asyncio.Task[Any]"]


class BusScheduler:
    """Serialises jobs per bus; see the module docstring."""

    def __init__(self, run: Callable[[Job], Awaitable[None]], spawn: Spawn) -> None:
        self._run = run
        self._spawn = spawn
        self._locks: dict[str, asyncio.Lock] = {}
        self._running: dict[str, str] = {}
        self._waiting: dict[str, list[str]] = {}

    def _lock(self, bus: str) -> asyncio.Lock:
        return self._locks.setdefault(bus, asyncio.Lock())

    def submit(self, job: Job) -> None:
        """Queue ``job`` behind the jobs already queued on its bus."""
        self._waiting.setdefault(job.bus, []).append(job.job_id)
        self._spawn(self._one(job), f"job:{job.job_id}")

    async def _one(self, job: Job) -> None:
        try:
            async with self._lock(job.bus):
                self._waiting[job.bus].remove(job.job_id)
                self._running[job.bus] = job.job_id
                try:
                    await self._run(job)
                finally:
                    del self._running[job.bus]
        except asyncio.CancelledError:
            if job.job_id in self._waiting.get(job.bus, []):
                self._waiting[job.bus].remove(job.job_id)
            raise

    @asynccontextmanager
    async def buses(self, names: Iterable[str]) -> AsyncIterator[None]:
        """Hold the given buses (waiting for the jobs queued on them first); sorted, so no deadlock."""
        locks = [self._lock(name) for name in sorted(set(names))]
        taken: list[asyncio.Lock] = []
        try:
            for lock in locks:
                await lock.acquire()
                taken.append(lock)
            yield
        finally:
            for lock in reversed(taken):
                lock.release()

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Per bus: the running job and the queued ones (for ``daemon.status``)."""
        buses = set(self._running) | {b for b, w in self._waiting.items() if w}
        return {bus: {"running": self._running.get(bus), "queued": list(self._waiting.get(bus, []))}
                for bus in sorted(buses)}

    @property
    def busy(self) -> int:
        return len(self._running) + sum(len(w) for w in self._waiting.values())
