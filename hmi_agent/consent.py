"""Driver consent as a persisted flow, with an audit trail, in SQLite.

:class:`ConsentBook` holds one row per campaign offer (the offer, the current
decision, its source and time, how often it was postponed) and an append-only
audit table with every decision (time, campaign, decision, source, detail).
Both change in one transaction, so the audit trail never misses a decision the
offers table shows. The policy:

* ``auto_accept`` (bench, workshop): a new offer is accepted at once, source
  ``policy:auto_accept``;
* ``ask``: a new offer is ``pending`` until :meth:`ConsentBook.answer`.

Asking again for the same campaign returns the recorded decision (an engine
restarted mid-campaign gets the driver's answer, not a second question); a
``postponed`` offer asked again becomes ``pending`` (a new question, counted).
``declined`` is final for that campaign. The clock is injected; stdlib sqlite3
(WAL, synchronous=FULL) because the store is a handful of rows.
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
from agent.errors import ConfigurationError, VehicleStateError

POLICIES = ("auto_accept", "ask")
ANSWERS = ("accepted", "postponed", "declined")
SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS consents (
    campaign_id   TEXT PRIMARY KEY,
    offer         TEXT NOT NULL,
    decision      TEXT NOT NULL,
    source        TEXT NOT NULL,
    decided_at    REAL,
    offered_at    REAL NOT NULL,
    postponements INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          REAL NOT NULL,
    campaign_id TEXT NOT NULL,
    decision    TEXT NOT NULL,
    source      TEXT NOT NULL,
    detail      TEXT
);
"""


class ConsentError(VehicleStateError):
    """A consent answer that cannot apply (no such offer, already final, ambiguous)."""


@dataclass(frozen=True)
class Consent:
    campaign_id: str
    decision: str
    source: str
    decided_at: float | None
    offer: dict[str, Any]
    postponements: int

    def to_json(self) -> dict[str, Any]:
        return {"campaign_id": self.campaign_id, "decision": self.decision, "source": self.source,
                "decided_at": self.decided_at, "offer": self.offer, "postponements": self.postponements}


class ConsentBook:
    """Offers, decisions and the audit trail; see the module docstring."""

    def __init__(self, path: Path, policy: str, *, clock: Callable[[], float] = time.time) -> None:
        if policy not in POLICIES:
            raise ConfigurationError(f"consent policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        self.policy = policy
        self.clock = clock
        self._lock = threading.Lock()
        self._db = open_database(path, what="the consent database", program="HMI agent", schema=_SCHEMA,
                                 version=SCHEMA_VERSION)

    def close(self) -> None:
        self._db.close()

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(self._db, self._lock)

    # -- the flow ---------------------------------------------------------------------------------
    def request(self, campaign_id: str, offer: Mapping[str, Any]) -> tuple[Consent, bool]:
        """The decision for ``campaign_id`` (deciding by policy if new); True if it changed now."""
        now = self.clock()
        with self._tx() as db:
            current = self._get(db, campaign_id)
            if current is not None and current.decision != "postponed":
                return current, False
            if current is not None:  # postponed: ask again
                self._set(db, campaign_id, "pending", "offer:again", None, now, "offered again after postponement")
            elif self.policy == "auto_accept":
                db.execute("INSERT INTO consents (campaign_id, offer, decision, source, decided_at, offered_at) "
                           "VALUES (?, ?, 'accepted', 'policy:auto_accept', ?, ?)",
                           (campaign_id, json.dumps(dict(offer)), now, now))
                self._audit(db, now, campaign_id, "accepted", "policy:auto_accept", "accepted by policy")
            else:
                db.execute("INSERT INTO consents (campaign_id, offer, decision, source, decided_at, offered_at) "
                           "VALUES (?, ?, 'pending', 'policy:ask', NULL, ?)",
                           (campaign_id, json.dumps(dict(offer)), now))
                self._audit(db, now, campaign_id, "pending", "policy:ask", "offered to the driver")
            got = self._get(db, campaign_id)
        assert got is not None
        return got, True

    def answer(self, campaign_id: str | None, decision: str, source: str) -> Consent:
        """Record an answer to a pending (or postponed) offer; ``campaign_id`` None: the one pending offer."""
        if decision not in ANSWERS:
            raise ConsentError(f"decision must be one of {', '.join(ANSWERS)}, got {decision!r}")
        now = self.clock()
        with self._tx() as db:
            if campaign_id is None:
                rows = db.execute("SELECT campaign_id FROM consents WHERE decision IN ('pending', 'postponed') "
                                  "ORDER BY offered_at DESC").fetchall()
                if not rows:
                    raise ConsentError("no offer is waiting for an answer")
                if len(rows) > 1:
                    raise ConsentError("several offers wait for an answer; name one with --campaign: "
                                       + ", ".join(r[0] for r in rows))
                campaign_id = str(rows[0][0])
            current = self._get(db, campaign_id)
            if current is None:
                raise ConsentError(f"no offer for campaign {campaign_id!r}")
            if current.decision in ("accepted", "declined"):
                raise ConsentError(f"campaign {campaign_id!r} was already {current.decision} "
                                   f"by {current.source}; that decision is final")
            self._set(db, campaign_id, decision, source, now, now, None)
            got = self._get(db, campaign_id)
        assert got is not None
        return got

    # -- reading ----------------------------------------------------------------------------------
    def get(self, campaign_id: str) -> Consent | None:
        with self._lock:
            return self._get(self._db, campaign_id)

    def consents(self, campaign_id: str | None = None) -> list[Consent]:
        with self._lock:
            query = "SELECT * FROM consents" + (" WHERE campaign_id = ?" if campaign_id else "") \
                    + " ORDER BY offered_at DESC"
            rows = self._db.execute(query, (campaign_id,) if campaign_id else ()).fetchall()
        return [self._row(r) for r in rows]

    def audit(self, campaign_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The audit trail, newest first."""
        with self._lock:
            where = " WHERE campaign_id = ?" if campaign_id else ""
            rows = self._db.execute(f"SELECT at, campaign_id, decision, source, detail FROM audit{where} "
                                    "ORDER BY id DESC LIMIT ?",
                                    (*((campaign_id,) if campaign_id else ()), limit)).fetchall()
        return [{"at": r[0], "campaign_id": r[1], "decision": r[2], "source": r[3], "detail": r[4]} for r in rows]

    # -- internals --------------------------------------------------------------------------------
    @staticmethod
    def _row(r: tuple[Any, ...]) -> Consent:
        return Consent(campaign_id=r[0], offer=json.loads(r[1]), decision=r[2], source=r[3], decided_at=r[4],
                       postponements=r[6])

    def _get(self, db: sqlite3.Connection, campaign_id: str) -> Consent | None:
        row = db.execute("SELECT * FROM consents WHERE campaign_id = ?", (campaign_id,)).fetchone()
        return self._row(row) if row is not None else None

    def _set(self, db: sqlite3.Connection, campaign_id: str, decision: str, source: str, decided_at: float | None,
             now: float, detail: str | None) -> None:
        db.execute("UPDATE consents SET decision = ?, source = ?, decided_at = ?, "
                   "postponements = postponements + ? WHERE campaign_id = ?",
                   (decision, source, decided_at, 1 if decision == "postponed" else 0, campaign_id))
        self._audit(db, now, campaign_id, decision, source, detail)

    @staticmethod
    def _audit(db: sqlite3.Connection, at: float, campaign_id: str, decision: str, source: str,
               detail: str | None) -> None:
        db.execute("INSERT INTO audit (at, campaign_id, decision, source, detail) VALUES (?, ?, ?, ?, ?)",
                   (at, campaign_id, decision, source, detail))
