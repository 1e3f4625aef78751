"""The download manager: many targets at once within a limit, pause / resume / cancel, status.

Targets are recorded in the state database when an order arrives and move through::

    queued -> downloading [-> patching | decrypting] -> done
                 |  \\-> paused (resume -> queued)      \\-> failed (resume -> queued: retry)
                 \\-> cancelled (partial files deleted)

``concurrency`` worker threads take queued targets (requests is blocking; hashing and
TLS release the GIL). At start-up every target left queued or running by the previous
process (crash, power cut, SIGKILL) is queued again and resumes from its committed bytes;
paused ones stay paused. Stopping the daemon interrupts running transfers at a checkpoint
and leaves them queued for the next start.

Events go out through ``on_event(name, payload)`` (called from worker threads):
``state`` on every state change; :meth:`DownloadManager.progress` is polled by the
daemon at a fixed cadence and gives bytes, rate and ETA per running target.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.errors import OtaError
from dmclient.cache import PackageCache
from dmclient.control import TransferControl
from dmclient.errors import DownloadInterrupted
from dmclient.fetcher import Fetcher
from dmclient.job import JobSettings, TargetJob
from dmclient.order import InvalidOrderError, Order, TargetSpec, check_owner
from dmclient.progress import RateMeter
from dmclient.state import StateDb, TargetRecord

log = logging.getLogger(__name__)

QUEUED, DOWNLOADING, PATCHING, DECRYPTING = "queued", "downloading", "patching", "decrypting"
PAUSED, DONE, FAILED, CANCELLED = "paused", "done", "failed", "cancelled"
RUNNING = (DOWNLOADING, PATCHING, DECRYPTING)
STATES = (QUEUED, *RUNNING, PAUSED, DONE, FAILED, CANCELLED)
_STOPPING = "stopping"

EventSink = Callable[[str, dict[str, Any]], None]


class Heartbeat(Protocol):
    """A watchdog worker (:class:`agent.runtime.watchdog.Worker`): one per download thread."""

    def busy(self) -> None: ...

    def heartbeat(self) -> None: ...

    def idle(self) -> None: ...


class _NoHeartbeat:
    def busy(self) -> None:
        pass

    def heartbeat(self) -> None:
        pass

    def idle(self) -> None:
        pass


@dataclass
class _Live:
    rec: TargetRecord
    spec: TargetSpec
    state: str
    error: str | None = None
    source: str | None = None
    done: int = 0
    committed: int = 0
    total: int = 0
    path: str | None = None
    notes: list[str] = field(default_factory=list)
    control: TransferControl | None = None
    meter: RateMeter = field(default_factory=RateMeter)
    reported: tuple[int, int] = (-1, -1)


class DownloadManager:
    def __init__(self, *, db: StateDb, cache: PackageCache, fetcher: Fetcher, settings: JobSettings,
                 concurrency: int, base_url: str | None = None, on_event: EventSink | None = None,
                 heartbeats: list[Heartbeat] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.cache = cache
        self.fetcher = fetcher
        self.settings = settings
        self.concurrency = max(1, concurrency)
        self.base_url = base_url
        self.on_event = on_event or (lambda _n, _p: None)
        self.clock = clock
        self._lock = threading.RLock()
        self._live: dict[str, _Live] = {}
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._image_locks: dict[str, threading.Lock] = {}
        self._workers: list[threading.Thread] = []
        self._heartbeats: list[Heartbeat] = list(heartbeats or [])
        self._heartbeats += [_NoHeartbeat() for _ in range(self.concurrency - len(self._heartbeats))]

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Reconcile the cache, requeue what the last process left unfinished, start workers."""
        self.cache.reconcile()
        for rec in self.db.targets():
            try:
                spec = TargetSpec.parse(rec.spec, rec.id, base_url=None)
            except ValueError as e:  # written by another version: keep the daemon up, say so
                log.error("target %s in the state database cannot be read (%s); skipping it", rec.id, e)
                if rec.state not in (DONE, FAILED, CANCELLED):
                    self.db.set_target_state(rec.id, FAILED, error=f"ConfigurationError: stored order unreadable: {e}")
                continue
            live = _Live(rec, spec, rec.state, rec.error, rec.source, total=self._total(spec))
            if rec.state in (QUEUED, *RUNNING):
                live.state = QUEUED
                if rec.state != QUEUED:
                    self.db.set_target_state(rec.id, QUEUED)
                self._queue.put(rec.id)
                log.info("%s: resuming after restart", rec.name)
            elif rec.state == DONE:
                live.done = live.total
                cached = self.cache.lookup(spec.hashes, touch=False)
                live.path = str(cached) if cached else None
            self._live[rec.id] = live
        for i in range(self.concurrency):
            t = threading.Thread(target=self._worker, args=(self._heartbeats[i],), name=f"dmclient-download-{i}",
                                 daemon=True)
            t.start()
            self._workers.append(t)

    def stop(self, timeout: float = 30.0) -> None:
        """Interrupt running transfers at a checkpoint (they stay queued) and join the workers."""
        with self._lock:
            for live in self._live.values():
                if live.control is not None:
                    live.control.request(_STOPPING)
        for _ in self._workers:
            self._queue.put(None)
        for t in self._workers:
            t.join(timeout)
        self._workers.clear()

    def busy(self) -> bool:
        with self._lock:
            return any(live.state in (QUEUED, *RUNNING) for live in self._live.values())

    # -- commands -------------------------------------------------------------------------
    def submit(self, data: Any) -> dict[str, Any]:
        """Record an order and queue its targets; the order id and the targets' status."""
        order = Order.parse(data, base_url=self.base_url)
        order_id = os.urandom(6).hex()  # as uuid4().hex[:12] (48 random bits), without uuid's imports
        now = time.time()
        records = [TargetRecord(f"{order_id}-{i}", order_id, t.name, t.to_dict(), QUEUED, None, None, order.pin,
                                now, now) for i, t in enumerate(order.targets)]
        if order.pin:
            for t in order.targets:
                self.cache.pin(t.hashes.sha256, order.pin)
        self.db.add_targets(records)
        with self._lock:
            for rec, spec in zip(records, order.targets, strict=True):
                self._live[rec.id] = _Live(rec, spec, QUEUED, total=self._total(spec))
                self._queue.put(rec.id)
            return {"order": order_id, "targets": [self._status(self._live[r.id]) for r in records]}

    def status(self, ids: list[str] | None = None) -> list[dict[str, Any]]:
        """Targets matching target or order ids (all when None), oldest first."""
        with self._lock:
            return [self._status(live) for live in self._select(ids, allow_empty=True)]

    def pause(self, ids: list[str]) -> list[dict[str, Any]]:
        with self._lock:
            for live in self._select(ids):
                if live.state == QUEUED:
                    self._set(live, PAUSED)
                elif live.state in RUNNING and live.control is not None:
                    live.control.request(PAUSED)
            return self.status(ids)

    def resume(self, ids: list[str]) -> list[dict[str, Any]]:
        """Queue paused targets again; failed ones too (a retry)."""
        with self._lock:
            for live in self._select(ids):
                if live.state in (PAUSED, FAILED):
                    self._set(live, QUEUED)
                    self._queue.put(live.rec.id)
            return self.status(ids)

    def cancel(self, ids: list[str]) -> list[dict[str, Any]]:
        with self._lock:
            for live in self._select(ids):
                if live.state in (QUEUED, PAUSED, FAILED):
                    self._job(live).discard_partials()
                    self._set(live, CANCELLED)
                elif live.state in RUNNING and live.control is not None:
                    live.control.request(CANCELLED)
            return self.status(ids)

    def cache_list(self) -> dict[str, Any]:
        entries = self.cache.entries()
        return {"budget": self.cache.budget, "used": sum(e.size for e in entries),
                "entries": [{"sha256": e.sha256, "sha512": e.sha512, "size": e.size,
                             "path": str(self.cache.object_path(e.sha256)), "pins": list(e.pins),
                             "last_used": e.last_used} for e in entries]}

    def pin(self, sha256: str, owner: str) -> None:
        try:
            check_owner(owner, "owner")
        except ValueError as e:
            raise InvalidOrderError(str(e)) from e
        self.cache.pin(sha256, owner)

    def unpin(self, sha256: str | None, owner: str) -> int:
        return self.cache.unpin(sha256, owner)

    def progress(self) -> list[dict[str, Any]]:
        """Sample every running target's meter; those whose count moved since last time."""
        now = self.clock()
        out = []
        with self._lock:
            for live in self._live.values():
                if live.state not in RUNNING:
                    continue
                live.meter.sample(now, live.done)
                if (live.done, live.committed) != live.reported:
                    live.reported = (live.done, live.committed)
                    out.append(self._progress(live))
        return out

    # -- internals ------------------------------------------------------------------------
    def _total(self, spec: TargetSpec) -> int:
        blob = spec.full_blob()
        return blob.length if blob is not None else spec.length

    def _select(self, ids: list[str] | None, *, allow_empty: bool = False) -> list[_Live]:
        if not ids:
            if allow_empty:
                return list(self._live.values())
            raise InvalidOrderError("no target or order id given")
        chosen = [live for live in self._live.values() if live.rec.id in ids or live.rec.order_id in ids]
        known = {live.rec.id for live in chosen} | {live.rec.order_id for live in chosen}
        missing = [i for i in ids if i not in known]
        if missing:
            raise InvalidOrderError(f"unknown target or order id {missing[0]!r}")
        return chosen

    def _progress(self, live: _Live) -> dict[str, Any]:
        rate = live.meter.rate
        eta = live.meter.eta(live.done, live.total)
        return {"id": live.rec.id, "order": live.rec.order_id, "name": live.rec.name, "state": live.state,
                "bytes": live.done, "committed": live.committed, "total": live.total,
                "rate": round(rate, 1) if rate is not None else None,
                "eta": round(eta, 1) if eta is not None else None}

    def _status(self, live: _Live) -> dict[str, Any]:
        out = self._progress(live)
        out.update({"sha256": live.spec.hashes.sha256, "length": live.spec.length, "source": live.source,
                    "path": live.path, "error": live.error, "notes": list(live.notes), "pin": live.rec.pin})
        return out

    def _set(self, live: _Live, state: str, *, error: str | None = None) -> None:
        live.state = state
        live.error = error
        if state not in RUNNING:
            live.meter.reset()
        self.db.set_target_state(live.rec.id, state, error=error, source=live.source)
        self.on_event("state", self._status(live))

    def _job(self, live: _Live, beat: Heartbeat | None = None) -> TargetJob:
        hb = beat or _NoHeartbeat()

        def progress(done: int, total: int) -> None:
            if total != live.total:  # another download of the target (delta patch, full image)
                live.committed = 0
            live.done, live.total = done, total
            hb.heartbeat()

        def commit(n: int) -> None:
            live.committed = n

        def phase(name: str) -> None:
            hb.heartbeat()
            with self._lock:
                if live.state != name:
                    self._set(live, name)

        return TargetJob(live.spec, cache=self.cache, db=self.db, fetcher=self.fetcher, settings=self.settings,
                         control=live.control, on_progress=progress, on_phase=phase, on_commit=commit)

    def _worker(self, beat: Heartbeat) -> None:
        while True:
            beat.idle()
            target_id = self._queue.get()
            if target_id is None:
                return
            with self._lock:
                live = self._live.get(target_id)
                if live is None or live.state != QUEUED or live.control is not None:
                    continue
                live.control = TransferControl(before_wait=beat.heartbeat)
                lock = self._image_locks.setdefault(live.spec.hashes.sha256, threading.Lock())
            beat.busy()
            with lock:
                self._run(live, beat)

    def _run(self, live: _Live, beat: Heartbeat) -> None:
        job = self._job(live, beat)
        assert live.control is not None
        try:
            if live.control.reason is not None:
                raise DownloadInterrupted(live.control.reason)
            result = job.run()
        except DownloadInterrupted as e:
            with self._lock:
                live.control = None
                if e.reason == CANCELLED:
                    job.discard_partials()
                    self._set(live, CANCELLED)
                elif e.reason == PAUSED:
                    self._set(live, PAUSED)
                else:  # stopping: stays queued in the database for the next start
                    live.state = QUEUED
                    self.db.set_target_state(live.rec.id, QUEUED)
            return
        except OtaError as e:
            log.error("%s: %s", live.rec.name, e)
            with self._lock:
                live.control = None
                live.notes = job.notes
                self._set(live, FAILED, error=f"{type(e).__name__}: {e}")
            return
        except Exception as e:  # a bug: keep the daemon and the other downloads going
            log.exception("%s: internal error", live.rec.name)
            with self._lock:
                live.control = None
                self._set(live, FAILED, error=f"internal error: {type(e).__name__}: {e}")
            return
        with self._lock:
            live.control = None
            live.source = result.source
            live.path = str(result.path)
            live.notes = result.notes
            live.done = live.committed = live.total
            self._set(live, DONE)
            log.info("%s: done (%s, %d bytes fetched) -> %s", live.rec.name, result.source, result.fetched,
                     result.path)
