"""The campaign journal: SQLite (stdlib), WAL, ``synchronous=FULL``.

Tables (schema version in ``PRAGMA user_version``, :data:`SCHEMA_VERSION`):

``campaigns``
    one row per campaign: id, kind (``update`` | ``install`` | ``rollback``; read back as
    ``configuration`` for an update that turned out to be a configuration change only), from / to
    vehicle version, the assignment JSON (once the check found it), the policy JSON,
    state (``running`` | ``ended``), ``attempts`` (how many times the engine took the
    campaign up: 1 + resumes after a crash), cancel flag, created / ended, result and
    its detail.
``steps``
    one row per attempt of a step: campaign, step, ECU or NULL, state
    (``started`` -> ``done`` | ``failed`` | ``interrupted``), the data the step was
    started with (job id, image paths: what a resume needs), its result, the error,
    started / ended timestamps. A row is written before the step starts and updated
    when it ends; :meth:`Journal.begin` closes a leftover ``started`` row of the same
    step as ``interrupted`` in the same transaction, so the interruption count the
    loop breaker uses is in the journal.
``ecus``
    per campaign and ECU, maintained in the same transactions: target image, previous
    image (the rollback image), the last job id, flash attempts (a rollback is not one), outcome.
``installed``
    per ECU the image the engine last saw installed (after a campaign's success, or the
    old image after a rollback): the next campaign's rollback image for a single-bank ECU.

Every change is one ``BEGIN IMMEDIATE`` transaction committed with ``synchronous=FULL``:
after a power cut or a SIGKILL the journal holds each step either as started or as
ended, never half of a transition. The journal has one writer (the engine); readers
may open it concurrently (WAL).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.database import open_database, transaction
from agent.engine.campaign import STEP_STATES, Policy, Snapshot, StepRow

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS campaigns (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL CHECK (kind IN ('update', 'install', 'rollback')),
    from_version     TEXT,
    to_version       TEXT,
    assignment       TEXT,
    policy           TEXT NOT NULL,
    params           TEXT NOT NULL DEFAULT '{}',
    state            TEXT NOT NULL CHECK (state IN ('running', 'ended')),
    attempts         INTEGER NOT NULL DEFAULT 1,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created          REAL NOT NULL,
    ended            REAL,
    result           TEXT,
    detail           TEXT,
    ecu_outcomes     TEXT
);
CREATE TABLE IF NOT EXISTS steps (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    campaign TEXT NOT NULL REFERENCES campaigns(id),
    step     TEXT NOT NULL,
    ecu      TEXT,
    state    TEXT NOT NULL CHECK (state IN ('started', 'done', 'failed', 'interrupted')),
    data     TEXT NOT NULL DEFAULT '{}',
    result   TEXT,
    error    TEXT,
    started  REAL NOT NULL,
    ended    REAL
);
CREATE INDEX IF NOT EXISTS steps_by_campaign ON steps (campaign, id);
CREATE TABLE IF NOT EXISTS ecus (
    campaign TEXT NOT NULL REFERENCES campaigns(id),
    ecu      TEXT NOT NULL,
    target   TEXT,
    previous TEXT,
    job_id   TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    outcome  TEXT NOT NULL DEFAULT 'pending',
    PRIMARY KEY (campaign, ecu)
);
CREATE TABLE IF NOT EXISTS installed (
    ecu      TEXT PRIMARY KEY,
    image    TEXT NOT NULL,
    campaign TEXT,
    updated  REAL NOT NULL
)
"""


@dataclass(frozen=True)
class CampaignRecord:
    id: str
    kind: str
    from_version: str | None
    to_version: str | None
    policy: Policy
    params: dict[str, Any]
    state: str
    attempts: int
    cancel_requested: bool
    created: float
    ended: float | None
    result: str | None
    detail: str | None
    ecu_outcomes: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "from_version": self.from_version,
                "to_version": self.to_version, "state": self.state, "attempts": self.attempts,
                "created": self.created, "ended": self.ended, "result": self.result, "detail": self.detail,
                "ecus": dict(self.ecu_outcomes)}


class Journal:
    """The engine's campaign journal; see the module docstring."""

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._db = open_database(self.path, what="the campaign journal", program="engine", schema=_SCHEMA,
                                 version=SCHEMA_VERSION, foreign_keys=True)

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(self._db, self._lock)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- campaigns -----------------------------------------------------------------------------
    def create(self, campaign_id: str, kind: str, policy: Policy, *, from_version: str | None = None,
               params: Mapping[str, Any] | None = None) -> None:
        with self._tx() as db:
            running = db.execute("SELECT id FROM campaigns WHERE state = 'running'").fetchone()
            if running is not None:
                from agent.errors import VehicleStateError
                raise VehicleStateError(f"campaign {running[0]} is still running")
            db.execute("INSERT INTO campaigns (id, kind, from_version, policy, params, state, created) "
                       "VALUES (?, ?, ?, ?, ?, 'running', ?)",
                       (campaign_id, kind, from_version, json.dumps(policy.to_json()),
                        json.dumps(dict(params or {})), self._clock()))

    def active(self) -> CampaignRecord | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_CAMPAIGN_COLS} FROM campaigns WHERE state = 'running' "
                                   "ORDER BY created DESC LIMIT 1").fetchone()
        return _campaign(row) if row else None

    def campaign(self, campaign_id: str) -> CampaignRecord | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_CAMPAIGN_COLS} FROM campaigns WHERE id = ?",
                                   (campaign_id,)).fetchone()
        return _campaign(row) if row else None

    def history(self, limit: int = 20) -> list[CampaignRecord]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_CAMPAIGN_COLS} FROM campaigns ORDER BY created DESC, rowid DESC "
                                    "LIMIT ?", (limit,)).fetchall()
        return [_campaign(r) for r in rows]

    def take_up(self, campaign_id: str) -> int:
        """The engine takes a running campaign up again after a restart; returns the attempt number."""
        with self._tx() as db:
            db.execute("UPDATE campaigns SET attempts = attempts + 1 WHERE id = ?", (campaign_id,))
            return int(db.execute("SELECT attempts FROM campaigns WHERE id = ?", (campaign_id,)).fetchone()[0])

    def request_cancel(self, campaign_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE campaigns SET cancel_requested = 1 WHERE id = ? AND state = 'running'",
                       (campaign_id,))

    def set_versions(self, campaign_id: str, *, from_version: str | None, to_version: str | None,
                     assignment: Mapping[str, Any] | None) -> None:
        with self._tx() as db:
            db.execute("UPDATE campaigns SET from_version = COALESCE(?, from_version), to_version = ?, "
                       "assignment = ? WHERE id = ?",
                       (from_version, to_version, json.dumps(assignment) if assignment is not None else None,
                        campaign_id))

    def finish(self, campaign_id: str, result: str, detail: str, ecu_outcomes: Mapping[str, str],
               installed: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        """End the campaign; ``installed``: per ECU the image now on it (recorded for the next rollback)."""
        now = self._clock()
        with self._tx() as db:
            db.execute("UPDATE campaigns SET state = 'ended', ended = ?, result = ?, detail = ?, ecu_outcomes = ? "
                       "WHERE id = ? AND state = 'running'",
                       (now, result, detail, json.dumps(dict(ecu_outcomes)), campaign_id))
            for ecu, outcome in ecu_outcomes.items():
                db.execute("INSERT INTO ecus (campaign, ecu, outcome) VALUES (?, ?, ?) "
                           "ON CONFLICT(campaign, ecu) DO UPDATE SET outcome = excluded.outcome",
                           (campaign_id, ecu, outcome))
            for ecu, image in (installed or {}).items():
                db.execute("INSERT INTO installed (ecu, image, campaign, updated) VALUES (?, ?, ?, ?) "
                           "ON CONFLICT(ecu) DO UPDATE SET image = excluded.image, campaign = excluded.campaign, "
                           "updated = excluded.updated", (ecu, json.dumps(dict(image)), campaign_id, now))

    # -- steps ---------------------------------------------------------------------------------
    def begin(self, campaign_id: str, step: str, ecu: str | None, data: Mapping[str, Any]) -> int:
        """Record a step as started (before it starts); returns the row id."""
        now = self._clock()
        with self._tx() as db:
            db.execute("UPDATE steps SET state = 'interrupted', ended = ? WHERE campaign = ? AND step = ? "
                       "AND ecu IS ? AND state = 'started'", (now, campaign_id, step, ecu))
            cur = db.execute("INSERT INTO steps (campaign, step, ecu, state, data, started) "
                             "VALUES (?, ?, ?, 'started', ?, ?)",
                             (campaign_id, step, ecu, json.dumps(dict(data)), now))
            if ecu is not None and step in ("flash", "rollback"):
                image = data.get("image")
                col = "target" if step == "flash" else "previous"
                flash = int(step == "flash")  # attempts: flash attempts only, not the rollback's
                db.execute(f"INSERT INTO ecus (campaign, ecu, {col}, job_id, attempts, outcome) "
                           f"VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(campaign, ecu) DO UPDATE SET "
                           f"{col} = excluded.{col}, job_id = excluded.job_id, "
                           "attempts = ecus.attempts + excluded.attempts, outcome = excluded.outcome",
                           (campaign_id, ecu, json.dumps(image), data.get("job_id"), flash,
                            "installing" if flash else "rolling_back"))
            return int(cur.lastrowid or 0)

    def end(self, row_id: int, state: str, result: Mapping[str, Any] | None = None,
            error: str | None = None) -> None:
        """Record a step as ended (done | failed | interrupted)."""
        if state not in STEP_STATES or state == "started":
            raise ValueError(f"a step ends as done, failed or interrupted, not {state!r}")
        with self._tx() as db:
            db.execute("UPDATE steps SET state = ?, result = ?, error = ?, ended = ? WHERE id = ?",
                       (state, json.dumps(dict(result)) if result is not None else None, error,
                        self._clock(), row_id))
            row = db.execute("SELECT campaign, step, ecu FROM steps WHERE id = ?", (row_id,)).fetchone()
            if row is not None and row[2] is not None and row[1] in ("flash", "rollback"):
                outcome = {("flash", "done"): "installed", ("flash", "failed"): "flash_failed",
                           ("rollback", "done"): "rolled_back", ("rollback", "failed"): "rollback_failed"
                           }.get((row[1], state), "interrupted")
                db.execute("UPDATE ecus SET outcome = ? WHERE campaign = ? AND ecu = ?", (outcome, row[0], row[2]))

    def steps(self, campaign_id: str) -> list[StepRow]:
        with self._lock:
            rows = self._db.execute("SELECT step, ecu, state, data, result, error FROM steps WHERE campaign = ? "
                                    "ORDER BY id", (campaign_id,)).fetchall()
        return [StepRow(r[0], r[1], r[2], json.loads(r[3]), json.loads(r[4]) if r[4] else None, r[5])
                for r in rows]

    def step_log(self, campaign_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT id, step, ecu, state, error, started, ended FROM steps "
                                    "WHERE campaign = ? ORDER BY id", (campaign_id,)).fetchall()
        return [{"id": r[0], "step": r[1], "ecu": r[2], "state": r[3], "error": r[4], "started": r[5],
                 "ended": r[6]} for r in rows]

    def ecu_states(self, campaign_id: str) -> dict[str, dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT ecu, job_id, attempts, outcome FROM ecus WHERE campaign = ?",
                                    (campaign_id,)).fetchall()
        return {r[0]: {"job_id": r[1], "attempts": r[2], "outcome": r[3]} for r in rows}

    def snapshot(self, campaign_id: str) -> Snapshot:
        record = self.campaign(campaign_id)
        if record is None:
            raise KeyError(campaign_id)
        return Snapshot(campaign_id, record.policy, tuple(self.steps(campaign_id)), record.cancel_requested)

    # -- installed images ------------------------------------------------------------------------
    def installed(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT ecu, image FROM installed").fetchall()
        return {r[0]: json.loads(r[1]) for r in rows}


#: ``kind`` as shown: an update whose assignment is a configuration change and no ECU image is a
#: ``configuration`` campaign (known once the check journalled the assignment; stored as ``update``)
_KIND = ("CASE WHEN kind = 'update' AND json_extract(assignment, '$.config') IS NOT NULL "
         "AND json_array_length(assignment, '$.ecus') = 0 THEN 'configuration' ELSE kind END")
_CAMPAIGN_COLS = (f"id, {_KIND}, from_version, to_version, policy, params, state, attempts, cancel_requested, "
                  "created, ended, result, detail, ecu_outcomes")


def _campaign(row: tuple[Any, ...]) -> CampaignRecord:
    return CampaignRecord(id=row[0], kind=row[1], from_version=row[2], to_version=row[3],
                          policy=Policy.from_json(json.loads(row[4])), params=json.loads(row[5]), state=row[6],
                          attempts=int(row[7]), cancel_requested=bool(row[8]), created=float(row[9]),
                          ended=row[10], result=row[11], detail=row[12],
                          ecu_outcomes=json.loads(row[13]) if row[13] else {})
