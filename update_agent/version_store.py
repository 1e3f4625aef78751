"""ECU versions with when and how they were read, in SQLite.

Append-only: every reading (UDS or version frame, answered or not) is a new
row, so the history of an ECU is never overwritten and "latest" is simply the
newest row. stdlib ``sqlite3`` in WAL mode with ``synchronous=FULL`` (the
project's rule for state), in the update agent's state directory
(:mod:`update_agent.state_dir`). Safe to share between the passive listener
thread and the caller: one connection, one lock.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, cast

from agent.database import open_database, transaction
from agent.errors import ConfigurationError
from update_agent.version_reading import SOURCES, Source, VersionReading

log = logging.getLogger(__name__)

FILENAME = "versions.sqlite3"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    ecu              TEXT    NOT NULL,
    source           TEXT    NOT NULL CHECK (source IN ('uds', 'can-frame')),
    read_at          REAL    NOT NULL,
    answered         INTEGER NOT NULL CHECK (answered IN (0, 1)),
    hardware_version TEXT,
    software_version TEXT,
    part_number      TEXT,
    serial_number    TEXT,
    detail           TEXT
);
CREATE INDEX IF NOT EXISTS readings_by_ecu ON readings (ecu, id);
"""
_COLUMNS = ("ecu", "source", "read_at", "answered", "hardware_version", "software_version",
            "part_number", "serial_number", "detail")


class VersionStore:
    """The readings database; open with :meth:`open`, close when done (or use ``with``)."""

    def __init__(self, connection: sqlite3.Connection, path: str) -> None:
        self._db = connection
        self._lock = threading.Lock()
        self.path = path

    @classmethod
    def in_dir(cls, directory: str | Path) -> VersionStore:
        """Open (creating both if needed) the store in a state directory."""
        return cls.open(Path(directory) / FILENAME)

    @classmethod
    def open(cls, path: str | Path) -> VersionStore:
        """Open (creating if needed) the store file at ``path``."""
        p = Path(path)
        if p.is_dir():
            raise ConfigurationError("is a directory; the version store is a file (see VersionStore.in_dir)",
                                     source=str(p))
        db = open_database(p, what="the version store", program="agent", schema=_SCHEMA, version=SCHEMA_VERSION)
        return cls(db, str(p))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> VersionStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------
    def record(self, readings: Iterable[VersionReading]) -> int:
        """Append readings in one transaction; the number written."""
        rows = [_row(r) for r in readings]
        if not rows:
            return 0
        placeholders = ", ".join("?" for _ in _COLUMNS)
        with transaction(self._db, self._lock):
            self._db.executemany(
                f"INSERT INTO readings ({', '.join(_COLUMNS)}) VALUES ({placeholders})", rows)
        log.debug("stored %d version reading(s)", len(rows))
        return len(rows)

    # -- reading ---------------------------------------------------------------
    def latest(self, *, source: Source | None = None, answered_only: bool = False
               ) -> dict[str, VersionReading]:
        """The newest reading of every ECU (optionally of one source / answered ones only)."""
        where, args = _filters(source, answered_only)
        sql = (f"SELECT {', '.join(_COLUMNS)} FROM readings WHERE id IN "
               f"(SELECT MAX(id) FROM readings {where} GROUP BY ecu) ORDER BY ecu")
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return {row[0]: _reading(row) for row in rows}

    def history(self, ecu: str, *, limit: int = 100) -> list[VersionReading]:
        """The readings of ``ecu``, newest first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM readings WHERE ecu = ? ORDER BY id DESC LIMIT ?",
                (ecu, limit)).fetchall()
        return [_reading(row) for row in rows]

    def ecus(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT DISTINCT ecu FROM readings ORDER BY ecu")]


def _filters(source: Source | None, answered_only: bool) -> tuple[str, list[Any]]:
    clauses, args = [], []
    if source is not None:
        clauses.append("source = ?")
        args.append(source)
    if answered_only:
        clauses.append("answered = 1")
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), args


def _row(r: VersionReading) -> tuple[Any, ...]:
    if r.source not in SOURCES:
        raise ValueError(f"unknown reading source {r.source!r}")
    return (r.ecu, r.source, float(r.read_at), int(r.answered), r.hardware_version, r.software_version,
            r.part_number, r.serial_number, r.detail)


def _reading(row: tuple[Any, ...]) -> VersionReading:
    ecu, source, read_at, answered, hw, sw, part, serial, detail = row
    return VersionReading(ecu=ecu, source=cast(Source, source), read_at=read_at, answered=bool(answered),
                          hardware_version=hw, software_version=sw, part_number=part,
                          serial_number=serial, detail=detail)
