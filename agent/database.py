"""The stack's SQLite files: opened one way, written one way.

Every daemon keeps its durable state in SQLite (stdlib): the engine's
campaign journal, dmclient's download state and Uptane records, the update
agent's job table and version store, the HMI agent's consent trail. Each is
opened by :func:`open_database`:

* the parent directory is created (mode 0700);
* ``journal_mode=WAL`` and ``synchronous=FULL``: a committed transaction
  survives a power cut;
* the schema version lives in ``PRAGMA user_version``; a file written by a
  newer program is refused, never touched;
* the schema (``CREATE ... IF NOT EXISTS`` statements) is applied in one
  transaction, statement by statement (``executescript`` would commit early);
* an unusable file (not a database, unreadable) is a
  :class:`~agent.errors.ConfigurationError` naming the file.

Writes go through :func:`transaction`: ``BEGIN IMMEDIATE`` ... ``COMMIT``,
``ROLLBACK`` on any error, on an autocommit connection shared by threads
under one lock.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from agent.errors import ConfigurationError


def open_database(path: str | Path, *, what: str, program: str, schema: str, version: int,
                  foreign_keys: bool = False) -> sqlite3.Connection:
    """Open (creating if needed) the SQLite file at ``path`` for ``program`` (e.g. "engine").

    ``what`` names the file in errors ("the campaign journal").
    """
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        db = sqlite3.connect(str(p), check_same_thread=False, isolation_level=None, timeout=10.0)
    except (OSError, sqlite3.Error) as e:
        raise ConfigurationError(f"cannot open {what}, the file is not usable: {e}", source=str(p)) from e
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        if foreign_keys:
            db.execute("PRAGMA foreign_keys=ON")
        (found,) = db.execute("PRAGMA user_version").fetchone()
        if found > version:
            raise ConfigurationError(f"{what} schema {found} is newer than this {program} understands "
                                     f"({version}); refusing to touch it", source=str(p))
        with transaction(db):
            for statement in filter(None, (s.strip() for s in schema.split(";"))):
                db.execute(statement)
            db.execute(f"PRAGMA user_version={int(version)}")
    except sqlite3.Error as e:
        db.close()
        raise ConfigurationError(f"cannot open {what}, the file is not usable: {e}", source=str(p)) from e
    except BaseException:
        db.close()
        raise
    return db


@contextmanager
def transaction(db: sqlite3.Connection, lock: threading.Lock | threading.RLock | None = None
                ) -> Iterator[sqlite3.Connection]:
    """One durable write: ``BEGIN IMMEDIATE`` ... ``COMMIT``; ``ROLLBACK`` if the block raises."""
    with lock if lock is not None else nullcontext():
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
