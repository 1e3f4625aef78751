"""dmclient's durable state in SQLite: partial transfers, download targets, cache index, pins.

stdlib ``sqlite3`` in WAL mode with ``synchronous=FULL``: a row written here survives a
power cut once the call returns. One connection shared by the worker threads behind a
lock (writes are tiny: a checkpoint per several MiB downloaded). The schema lives here
alone; its version is ``PRAGMA user_version`` and a database from a newer version is
refused rather than guessed at.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.database import open_database, transaction

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS transfers (
    key           TEXT PRIMARY KEY,      -- sha256 of the object as served
    url           TEXT NOT NULL,
    length        INTEGER NOT NULL,      -- expected length: the hard cap
    sha512        TEXT,                  -- expected SHA-512, when the order gave it
    etag          TEXT,
    last_modified TEXT,
    committed     INTEGER NOT NULL DEFAULT 0,  -- bytes of the .part fsynced to disk
    prefix_sha256 TEXT,                  -- sha256 of those committed bytes
    updated       REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS targets (
    id       TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    name     TEXT NOT NULL,
    spec     TEXT NOT NULL,              -- the target as ordered (JSON)
    state    TEXT NOT NULL,
    error    TEXT,
    source   TEXT,                       -- full | delta | cache
    pin      TEXT,
    created  REAL NOT NULL,
    updated  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS targets_by_order ON targets(order_id);
CREATE TABLE IF NOT EXISTS cache (
    sha256    TEXT PRIMARY KEY,
    sha512    TEXT,
    size      INTEGER NOT NULL,
    added     REAL NOT NULL,
    last_used REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS pins (
    sha256 TEXT NOT NULL,
    owner  TEXT NOT NULL,
    PRIMARY KEY (sha256, owner)
);
"""


@dataclass(frozen=True)
class TransferRecord:
    key: str
    url: str
    length: int
    sha512: str | None
    etag: str | None
    last_modified: str | None
    committed: int
    prefix_sha256: str | None


@dataclass(frozen=True)
class TargetRecord:
    id: str
    order_id: str
    name: str
    spec: dict[str, Any]
    state: str
    error: str | None
    source: str | None
    pin: str | None
    created: float
    updated: float


@dataclass(frozen=True)
class CacheRecord:
    sha256: str
    sha512: str | None
    size: int
    added: float
    last_used: float
    pins: tuple[str, ...]


class StateDb:
    """The state database (thread-safe; every public call is one durable transaction)."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self._lock = threading.RLock()
        self._db = open_database(path, what="state database", program="dmclient", schema=_SCHEMA,
                                 version=SCHEMA_VERSION, foreign_keys=True)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(self._db, self._lock)

    # -- transfers --------------------------------------------------------------------
    def transfer(self, key: str) -> TransferRecord | None:
        with self._lock:
            row = self._db.execute("SELECT key, url, length, sha512, etag, last_modified, committed, prefix_sha256 "
                                   "FROM transfers WHERE key=?", (key,)).fetchone()
        return TransferRecord(*row) if row else None

    def put_transfer(self, rec: TransferRecord) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO transfers VALUES (?,?,?,?,?,?,?,?,?)",
                       (rec.key, rec.url, rec.length, rec.sha512, rec.etag, rec.last_modified, rec.committed,
                        rec.prefix_sha256, self.clock()))

    def commit_transfer(self, key: str, committed: int, prefix_sha256: str) -> None:
        """Record ``committed`` bytes (call only after the .part was fsynced that far)."""
        with self.transaction() as db:
            db.execute("UPDATE transfers SET committed=?, prefix_sha256=?, updated=? WHERE key=?",
                       (committed, prefix_sha256, self.clock(), key))

    def set_transfer_validator(self, key: str, etag: str | None, last_modified: str | None) -> None:
        with self.transaction() as db:
            db.execute("UPDATE transfers SET etag=?, last_modified=?, updated=? WHERE key=?",
                       (etag, last_modified, self.clock(), key))

    def delete_transfer(self, key: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM transfers WHERE key=?", (key,))

    # -- targets ----------------------------------------------------------------------
    def add_targets(self, records: list[TargetRecord]) -> None:
        with self.transaction() as db:
            db.executemany("INSERT INTO targets VALUES (?,?,?,?,?,?,?,?,?,?)",
                           [(r.id, r.order_id, r.name, json.dumps(r.spec, sort_keys=True), r.state, r.error,
                             r.source, r.pin, r.created, r.updated) for r in records])

    def set_target_state(self, target_id: str, state: str, *, error: str | None = None,
                         source: str | None = None) -> None:
        with self.transaction() as db:
            db.execute("UPDATE targets SET state=?, error=?, source=COALESCE(?, source), updated=? WHERE id=?",
                       (state, error, source, self.clock(), target_id))

    def targets(self, *, states: tuple[str, ...] | None = None) -> list[TargetRecord]:
        sql = "SELECT id, order_id, name, spec, state, error, source, pin, created, updated FROM targets"
        args: tuple[str, ...] = ()
        if states:
            sql += f" WHERE state IN ({','.join('?' * len(states))})"
            args = states
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY created, rowid", args).fetchall()
        return [TargetRecord(r[0], r[1], r[2], json.loads(r[3]), *r[4:]) for r in rows]

    # -- cache index and pins ---------------------------------------------------------
    def cache_entry(self, sha256: str) -> CacheRecord | None:
        entries = self._cache_entries("WHERE c.sha256=?", (sha256,))
        return entries[0] if entries else None

    def cache_entries(self) -> list[CacheRecord]:
        return self._cache_entries("", ())

    def _cache_entries(self, where: str, args: tuple[str, ...]) -> list[CacheRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT c.sha256, c.sha512, c.size, c.added, c.last_used, group_concat(p.owner, char(10)) "
                f"FROM cache c LEFT JOIN pins p ON p.sha256 = c.sha256 {where} "
                "GROUP BY c.sha256 ORDER BY c.last_used, c.sha256", args).fetchall()
        return [CacheRecord(r[0], r[1], r[2], r[3], r[4], tuple(sorted(r[5].split("\n"))) if r[5] else ())
                for r in rows]

    def add_cache_entry(self, sha256: str, sha512: str | None, size: int) -> None:
        now = self.clock()
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO cache VALUES (?,?,?,?,?)", (sha256, sha512, size, now, now))

    def set_cache_sha512(self, sha256: str, sha512: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE cache SET sha512=? WHERE sha256=?", (sha512, sha256))

    def touch_cache_entry(self, sha256: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE cache SET last_used=? WHERE sha256=?", (self.clock(), sha256))

    def remove_cache_entry(self, sha256: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM cache WHERE sha256=?", (sha256,))

    def pin(self, sha256: str, owner: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO pins VALUES (?,?)", (sha256, owner))

    def unpin(self, sha256: str | None, owner: str) -> int:
        """Drop ``owner``'s pin on ``sha256`` (every pin of ``owner`` when None); the count dropped."""
        with self.transaction() as db:
            if sha256 is None:
                cur = db.execute("DELETE FROM pins WHERE owner=?", (owner,))
            else:
                cur = db.execute("DELETE FROM pins WHERE sha256=? AND owner=?", (sha256, owner))
            return cur.rowcount

    def pinned(self) -> dict[str, tuple[str, ...]]:
        with self._lock:
            rows = self._db.execute("SELECT sha256, owner FROM pins ORDER BY sha256, owner").fetchall()
        out: dict[str, list[str]] = {}
        for sha, owner in rows:
            out.setdefault(sha, []).append(owner)
        return {k: tuple(v) for k, v in out.items()}
