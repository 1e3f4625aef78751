"""The update agent's job table: flash and rollback jobs, persisted in SQLite.

A job moves ``queued -> running -> succeeded | failed`` and never back; a
record is written before the work starts and when it ends (WAL,
``synchronous=FULL``), so a restarted update agent can answer for every job it
accepted. Jobs found ``queued`` or ``running`` when the table is opened were cut
short by the daemon's own death: :meth:`JobTable.recover` marks them ``failed``
with error class ``Interrupted`` - never silently forgotten or redone, since
the engine decides whether to flash again.

Job ids come from the caller and make submission idempotent: the same id with
the same request returns the existing job; the same id with a different
request is refused (:class:`JobConflict`). Finished jobs beyond
``history_limit`` are pruned, oldest first.

The clock is injected; the table does no bus I/O.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from agent.database import open_database, transaction

FILENAME = "jobs.db"
SCHEMA_VERSION = 1
QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"
FINAL = (SUCCEEDED, FAILED)
#: allowed transitions of the state machine
TRANSITIONS = {QUEUED: (RUNNING, FAILED), RUNNING: (SUCCEEDED, FAILED), SUCCEEDED: (), FAILED: ()}
INTERRUPTED = "Interrupted"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id       TEXT NOT NULL UNIQUE,
    kind         TEXT NOT NULL,
    ecu          TEXT NOT NULL,
    bus          TEXT NOT NULL,
    request      TEXT NOT NULL,
    state        TEXT NOT NULL,
    created_at   REAL NOT NULL,
    started_at   REAL,
    finished_at  REAL,
    result       TEXT,
    error        TEXT
);
"""
_COLUMNS = ("job_id", "kind", "ecu", "bus", "request", "state", "created_at", "started_at", "finished_at",
            "result", "error")


class JobConflict(ValueError):
    """A job id is already used for a different request."""


class IllegalTransition(RuntimeError):
    """A state change the job state machine does not allow (a bug, not bad input)."""


@dataclass(frozen=True)
class Job:
    job_id: str
    kind: str  # flash | rollback
    ecu: str
    bus: str
    #: the request as submitted (method params without the job id)
    request: dict[str, Any]
    state: str
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    @property
    def final(self) -> bool:
        return self.state in FINAL

    def status(self) -> dict[str, Any]:
        """The ``update_agent.job.status`` answer."""
        return {"job_id": self.job_id, "kind": self.kind, "state": self.state, "ecu": self.ecu, "bus": self.bus,
                "created_at": self.created_at, "started_at": self.started_at, "finished_at": self.finished_at,
                "result": self.result, "error": self.error}


class JobTable:
    """The jobs database; thread-safe (the daemon writes from worker threads)."""

    def __init__(self, db: sqlite3.Connection, path: str, *, clock: Callable[[], float] = time.time,
                 history_limit: int = 1000) -> None:
        self._db = db
        self._lock = threading.Lock()
        self.path = path
        self.clock = clock
        self.history_limit = history_limit

    @classmethod
    def open(cls, path: str | Path, *, clock: Callable[[], float] = time.time,
             history_limit: int = 1000) -> JobTable:
        p = Path(path)
        db = open_database(p, what="the job table", program="update agent", schema=_SCHEMA, version=SCHEMA_VERSION)
        return cls(db, str(p), clock=clock, history_limit=history_limit)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> JobTable:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- reading --------------------------------------------------------------------------
    def get(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE job_id = ?",
                                   (job_id,)).fetchone()
        return None if row is None else _job(row)

    def in_state(self, *states: str) -> list[Job]:
        marks = ", ".join("?" for _ in states)
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE state IN ({marks}) "
                                    "ORDER BY seq", states).fetchall()
        return [_job(r) for r in rows]

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        return {state: n for state, n in rows}

    # -- writing --------------------------------------------------------------------------
    def submit(self, job_id: str, kind: str, ecu: str, bus: str, request: Mapping[str, Any]
               ) -> tuple[Job, bool]:
        """Record a new queued job, or return the existing one with this id: ``(job, created)``."""
        wanted = dict(request)
        with transaction(self._db, self._lock):
            row = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE job_id = ?",
                                   (job_id,)).fetchone()
            if row is not None:
                job = _job(row)
                if (job.kind, job.ecu, job.request) != (kind, ecu, wanted):
                    raise JobConflict(f"job id {job_id!r} is already used for a {job.kind} of {job.ecu} "
                                      f"with other parameters ({job.state})")
                return job, False
            now = self.clock()
            self._db.execute(
                "INSERT INTO jobs (job_id, kind, ecu, bus, request, state, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (job_id, kind, ecu, bus, json.dumps(wanted, sort_keys=True), QUEUED, now))
        return Job(job_id, kind, ecu, bus, wanted, QUEUED, now), True

    def start(self, job_id: str) -> Job:
        return self._move(job_id, RUNNING, started_at=self.clock())

    def finish(self, job_id: str, state: str, *, result: Mapping[str, Any] | None = None,
               error: Mapping[str, Any] | None = None) -> Job:
        if state not in FINAL:
            raise IllegalTransition(f"job {job_id}: {state!r} is not a final state")
        job = self._move(job_id, state, finished_at=self.clock(),
                         result=None if result is None else json.dumps(result),
                         error=None if error is None else json.dumps(error))
        self.prune()
        return job

    def recover(self) -> list[Job]:
        """Fail every job a previous run left queued or running (error class ``Interrupted``)."""
        out = []
        for job in self.in_state(QUEUED, RUNNING):
            if job.state == RUNNING and job.kind.startswith("linux_"):  # calls the Linux ECU keys by campaign
                why = (f"{job.ecu}: the update agent stopped while the {job.kind} ran; the Linux ECU keeps its "
                       "state per campaign: ask it again (its answer is idempotent)")
            elif job.state == RUNNING:
                why = (f"{job.ecu}: the update agent stopped while the {job.kind} ran; the ECU may hold a "
                       "partial image: run its flash script again from the start")
            else:
                why = f"{job.ecu}: the update agent stopped before the {job.kind} started; nothing was sent"
            error = {"class": INTERRUPTED, "message": why, "step": None}
            out.append(self.finish(job.job_id, FAILED, error=error))
        return out

    def prune(self) -> int:
        """Delete finished jobs beyond ``history_limit`` (oldest first); how many went."""
        with transaction(self._db, self._lock):
            cur = self._db.execute(
                "DELETE FROM jobs WHERE state IN (?, ?) AND seq NOT IN "
                "(SELECT seq FROM jobs WHERE state IN (?, ?) ORDER BY seq DESC LIMIT ?)",
                (*FINAL, *FINAL, self.history_limit))
            return cur.rowcount

    def _move(self, job_id: str, state: str, **columns: Any) -> Job:
        with transaction(self._db, self._lock):
            row = self._db.execute("SELECT state FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
            if row is None:
                raise IllegalTransition(f"job {job_id}: no such job")
            if state not in TRANSITIONS[row[0]]:
                raise IllegalTransition(f"job {job_id}: {row[0]} -> {state} is not allowed")
            sets = ", ".join(f"{name} = ?" for name in ("state", *columns))
            self._db.execute(f"UPDATE jobs SET {sets} WHERE job_id = ?", (state, *columns.values(), job_id))
            new = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE job_id = ?",
                                   (job_id,)).fetchone()
        return _job(new)


def _job(row: tuple[Any, ...]) -> Job:
    (job_id, kind, ecu, bus, request, state, created_at, started_at, finished_at, result, error) = row
    return Job(job_id=job_id, kind=kind, ecu=ecu, bus=bus, request=json.loads(request), state=state,
               created_at=created_at, started_at=started_at, finished_at=finished_at,
               result=None if result is None else json.loads(result),
               error=None if error is None else json.loads(error))
