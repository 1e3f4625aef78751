"""The vehicle's Uptane state in SQLite: installed images, report counters, attacks, time floor.

* ``installed``: per ECU, the image the car has (name, length, hashes) and its release
  counter: the version report's content, and the floor for the release counter rule
  (an assigned image may never carry a lower counter than the installed one).
* ``reports``: per ECU, the last report counter sent (strictly increasing, persisted
  *before* the manifest leaves the car, so a counter is never sent twice) and the
  attack indicator to send next.
* ``meta``: the reference time of the last successful check (the time floor, see
  :mod:`dmclient.uptane.timesource`).
* ``configuration``: per remote configuration item, the value a successful campaign
  wrote and read back from every ECU of it (the manifest's ``configuration``).

stdlib ``sqlite3``, WAL, ``synchronous=FULL``, one connection behind a lock; schema
version in ``PRAGMA user_version``, a newer database is refused.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from agent.database import open_database, transaction
from dmclient.digests import Hashes
from dmclient.uptane.manifest import InstalledImage

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS installed (
    ecu             TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    length          INTEGER NOT NULL,
    sha256          TEXT NOT NULL,
    sha512          TEXT,
    release_counter INTEGER NOT NULL,
    updated         REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS reports (
    ecu            TEXT PRIMARY KEY,
    report_counter INTEGER NOT NULL DEFAULT 0,
    attack         TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS configuration (
    item    TEXT PRIMARY KEY,
    value   TEXT NOT NULL,
    updated REAL NOT NULL
);
"""


@dataclass(frozen=True)
class InstalledRecord:
    ecu: str
    image: InstalledImage
    release_counter: int


class UptaneState:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = open_database(path, what="the Uptane state database", program="dmclient", schema=_SCHEMA,
                                 version=SCHEMA_VERSION)

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(self._db, self._lock)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- installed images --------------------------------------------------------------
    def installed(self, ecu: str) -> InstalledRecord | None:
        with self._lock:
            row = self._db.execute("SELECT name, length, sha256, sha512, release_counter FROM installed "
                                   "WHERE ecu = ?", (ecu,)).fetchone()
        if row is None:
            return None
        return InstalledRecord(ecu, InstalledImage(row[0], row[1], Hashes(row[2], row[3])), row[4])

    def record_installed(self, ecu: str, image: InstalledImage, release_counter: int) -> None:
        """What is on the ECU now (after an install, a rollback, or factory provisioning)."""
        with self._tx() as db:
            db.execute("INSERT INTO installed (ecu, name, length, sha256, sha512, release_counter, updated) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(ecu) DO UPDATE SET name = excluded.name, "
                       "length = excluded.length, sha256 = excluded.sha256, sha512 = excluded.sha512, "
                       "release_counter = excluded.release_counter, updated = excluded.updated",
                       (ecu, image.name, image.length, image.hashes.sha256, image.hashes.sha512, release_counter,
                        time.time()))

    # -- remote configuration ------------------------------------------------------------
    def configuration(self) -> dict[str, str]:
        with self._lock:
            rows = self._db.execute("SELECT item, value FROM configuration ORDER BY item").fetchall()
        return {str(i): str(v) for i, v in rows}

    def record_configuration(self, values: Mapping[str, str]) -> None:
        """Values a campaign wrote and read back from every ECU of their items."""
        now = time.time()
        with self._tx() as db:
            for item, value in values.items():
                db.execute("INSERT INTO configuration (item, value, updated) VALUES (?, ?, ?) ON CONFLICT(item) "
                           "DO UPDATE SET value = excluded.value, updated = excluded.updated", (item, value, now))

    # -- version reports ---------------------------------------------------------------
    def next_report_counters(self, ecus: Iterable[str]) -> dict[str, tuple[int, str]]:
        """Increment and persist every ECU's report counter; ``{ecu: (counter, attack)}``."""
        out: dict[str, tuple[int, str]] = {}
        with self._tx() as db:
            for ecu in ecus:
                db.execute("INSERT INTO reports (ecu, report_counter) VALUES (?, 1) ON CONFLICT(ecu) "
                           "DO UPDATE SET report_counter = report_counter + 1", (ecu,))
                counter, attack = db.execute("SELECT report_counter, attack FROM reports WHERE ecu = ?",
                                             (ecu,)).fetchone()
                out[ecu] = (int(counter), str(attack))
        return out

    def set_attacks(self, attacks: dict[str, str]) -> None:
        with self._tx() as db:
            for ecu, text in attacks.items():
                db.execute("INSERT INTO reports (ecu, attack) VALUES (?, ?) ON CONFLICT(ecu) "
                           "DO UPDATE SET attack = excluded.attack", (ecu, text[:200]))

    def clear_attacks(self) -> None:
        with self._tx() as db:
            _clear_attacks(db)

    def attacks(self) -> dict[str, str]:
        with self._lock:
            rows = self._db.execute("SELECT ecu, attack FROM reports WHERE attack != ''").fetchall()
        return {str(e): str(a) for e, a in rows}

    # -- time floor ----------------------------------------------------------------------
    def time_floor(self) -> datetime | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'time_floor'").fetchone()
        return None if row is None else datetime.fromisoformat(row[0]).astimezone(timezone.utc)

    def raise_time_floor(self, when: datetime) -> None:
        """Record ``when`` as the time floor unless the recorded one is later."""
        with self._tx() as db:
            _raise_time_floor(db, when)

    def check_verified(self, when: datetime) -> None:
        """A whole check verified at ``when``: attacks cleared and the time floor raised, in one transaction."""
        with self._tx() as db:
            _clear_attacks(db)
            _raise_time_floor(db, when)


def _clear_attacks(db: sqlite3.Connection) -> None:
    db.execute("UPDATE reports SET attack = '' WHERE attack != ''")


def _raise_time_floor(db: sqlite3.Connection, when: datetime) -> None:
    row = db.execute("SELECT value FROM meta WHERE key = 'time_floor'").fetchone()
    if row is None or datetime.fromisoformat(row[0]) < when:
        db.execute("INSERT INTO meta (key, value) VALUES ('time_floor', ?) ON CONFLICT(key) "
                   "DO UPDATE SET value = excluded.value", (when.astimezone(timezone.utc).isoformat(),))
