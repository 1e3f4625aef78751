"""Driver consent as a persisted flow, with an audit trail, in SQLite.

:class:`ConsentBook` holds one row per campaign offer (the offer, the current
decision, its source and time, how often it was postponed, the scheduled window,
whether the update is mandatory and its deadline) and an append-only audit table
with every decision (time, campaign, decision, source, detail). Both change in one
transaction, so the audit trail never misses a decision the offers table shows.

Decisions: ``pending`` (asked, no answer), ``accepted``, ``postponed`` (until
``not_before``; then asked again), ``scheduled`` (for a :mod:`window
<hmi_agent.windows>`; accepted when it opens), ``declined`` (final). The engine
proceeds on ``accepted`` only and waits for a change otherwise.

The policy decides a new offer: ``auto_accept`` (bench, workshop: accepted at once),
``ask`` (pending until :meth:`ConsentBook.answer`), ``maintenance_window`` (scheduled
for the next configured maintenance window, no question). :class:`Rules` bound the
answers: at most ``postpone_limit`` postponements of ``postpone_interval`` s each;
whether an update is mandatory and its deadline come from the offer (the release's
policy, signed by the Director) and only when the offer does not say from the rules
(``mandatory``, ``deadline_after``: the bench fallback);
a mandatory update cannot be declined, nor scheduled past its deadline; once its
deadline has passed it is no longer asked: it proceeds at the next maintenance
window (at once if none is configured or one is open), and the audit says so.

Time moves the flow on only in :meth:`ConsentBook.tick` (also run by every request
and answer): a postponement that ran out becomes ``pending`` again, a scheduled
window that opened becomes ``accepted``, a passed deadline schedules the mandatory
update. :meth:`ConsentBook.next_wake` says when the next such change is due, so the
daemon sleeps on a timer, not in a poll loop. Asking again for the same campaign
returns the recorded decision (an engine restarted mid-campaign gets the driver's
answer, not a second question). The clock is injected; stdlib sqlite3 (WAL,
synchronous=FULL) because the store is a handful of rows.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path
from typing import Any

from agent.database import open_database, transaction
from agent.errors import ConfigurationError, VehicleStateError
from hmi_agent.windows import Window, WindowError, iso, next_opening, parse_window

POLICIES = ("auto_accept", "ask", "maintenance_window")
ANSWERS = ("accepted", "postponed", "scheduled", "declined")
DECISIONS = ("pending", *ANSWERS)
#: decisions still open: the engine waits, time or an answer moves them on
OPEN = ("pending", "postponed", "scheduled")
SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS consents (
    campaign_id   TEXT PRIMARY KEY,
    offer         TEXT NOT NULL,
    decision      TEXT NOT NULL,
    source        TEXT NOT NULL,
    decided_at    REAL,
    offered_at    REAL NOT NULL,
    postponements INTEGER NOT NULL DEFAULT 0,
    window        TEXT,
    not_before    REAL,
    mandatory     INTEGER NOT NULL DEFAULT 0,
    deadline      REAL
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
#: columns schema 1 lacked (added in place when an older file is opened)
_ADDED = {"window": "TEXT", "not_before": "REAL", "mandatory": "INTEGER NOT NULL DEFAULT 0", "deadline": "REAL"}
_COLUMNS = ("campaign_id, offer, decision, source, decided_at, offered_at, postponements, window, not_before, "
            "mandatory, deadline")


class ConsentError(VehicleStateError):
    """A consent answer that cannot apply (no such offer, already final, over a limit, a bad window)."""


@dataclass(frozen=True)
class Rules:
    """The configured bounds of the flow (see the module docstring)."""

    postpone_limit: int = 3
    postpone_interval: float = 0.0
    maintenance_windows: tuple[Window, ...] = ()
    #: an offer that does not say whether it is mandatory is (bench); an offer that says wins
    mandatory: bool = False
    #: s after the first offer when a mandatory offer without its own deadline must proceed
    deadline_after: float | None = None


@dataclass(frozen=True)
class Consent:
    campaign_id: str
    decision: str
    source: str
    decided_at: float | None
    offer: dict[str, Any]
    postponements: int
    window: str | None = None
    not_before: float | None = None
    mandatory: bool = False
    deadline: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"campaign_id": self.campaign_id, "decision": self.decision, "source": self.source,
                "decided_at": self.decided_at, "offer": self.offer, "postponements": self.postponements,
                "window": self.window, "not_before": self.not_before, "mandatory": self.mandatory,
                "deadline": self.deadline}


class ConsentBook:
    """Offers, decisions and the audit trail; see the module docstring."""

    def __init__(self, path: Path, policy: str, *, clock: Callable[[], float] = time.time,
                 rules: Rules | None = None, tz: tzinfo | None = None) -> None:
        self.rules = rules or Rules()
        self.policy = policy
        self._check_policy(policy, self.rules)
        self.clock = clock
        #: the zone of daily windows and audit times (None: the machine's local time)
        self.tz = tz
        self._lock = threading.RLock()
        self._db = open_database(path, what="the consent database", program="HMI agent", schema=_SCHEMA,
                                 version=SCHEMA_VERSION)
        have = {r[1] for r in self._db.execute("PRAGMA table_info(consents)")}
        with self._tx() as db:
            for column, kind in _ADDED.items():
                if column not in have:
                    db.execute(f"ALTER TABLE consents ADD COLUMN {column} {kind}")

    @staticmethod
    def _check_policy(policy: str, rules: Rules) -> None:
        if policy not in POLICIES:
            raise ConfigurationError(f"consent policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        if policy == "maintenance_window" and not rules.maintenance_windows:
            raise ConfigurationError("consent policy maintenance_window needs maintenance_windows")

    def configure(self, policy: str, rules: Rules) -> None:
        """A new policy and rules (configuration reload); decisions already taken stay."""
        self._check_policy(policy, rules)
        self.policy, self.rules = policy, rules

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
            if current is not None:
                changed = self._advance(db, current, now)
                got = self._get(db, campaign_id)
                assert got is not None
                return got, changed
            # the offer's values (the release's, signed by the Director) win; the rules are the fallback
            said = offer.get("mandatory")
            mandatory = bool(said) if said is not None else self.rules.mandatory
            deadline = offer.get("deadline")
            if mandatory and deadline is None and self.rules.deadline_after is not None:
                deadline = now + self.rules.deadline_after
            db.execute("INSERT INTO consents (campaign_id, offer, decision, source, decided_at, offered_at, "
                       "mandatory, deadline) VALUES (?, ?, 'pending', ?, NULL, ?, ?, ?)",
                       (campaign_id, json.dumps(dict(offer)), f"policy:{self.policy}", now, int(mandatory),
                        deadline))
            what = "mandatory update" + (f", deadline {self._iso(deadline)}" if deadline is not None else "") \
                if mandatory else "update"
            if self.policy == "auto_accept":
                self._set(db, campaign_id, "accepted", "policy:auto_accept", now, f"{what} accepted by policy")
            elif self.policy == "maintenance_window":
                opening = next_opening(self.rules.maintenance_windows, now)
                if opening is None:
                    self._audit(db, now, campaign_id, "pending", "policy:maintenance_window",
                                f"{what}: no maintenance window is left; offered to the driver")
                else:
                    w, start, _end = opening
                    self._set(db, campaign_id, "scheduled", "policy:maintenance_window", now,
                              f"{what} scheduled for maintenance window {w} (opens {self._iso(start)})",
                              window=w.spec, not_before=start)
            else:
                self._audit(db, now, campaign_id, "pending", "policy:ask", f"{what} offered to the driver")
            current = self._get(db, campaign_id)
            assert current is not None
            self._advance(db, current, now)  # a deadline already passed, a window already open
            got = self._get(db, campaign_id)
        assert got is not None
        return got, True

    def answer(self, campaign_id: str | None, decision: str, source: str, *, window: str | None = None) -> Consent:
        """Record an answer to an open offer; ``campaign_id`` None: the one open offer.

        ``scheduled`` needs ``window`` (see :mod:`hmi_agent.windows`).
        """
        if decision not in ANSWERS:
            raise ConsentError(f"decision must be one of {', '.join(ANSWERS)}, got {decision!r}")
        if (decision == "scheduled") != (window is not None):
            raise ConsentError("a schedule needs a window, and only a schedule takes one")
        now = self.clock()
        with self._tx() as db:
            self._tick(db, now)
            if campaign_id is None:
                rows = db.execute("SELECT campaign_id FROM consents WHERE decision IN ('pending', 'postponed', "
                                  "'scheduled') ORDER BY offered_at DESC").fetchall()
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
            overdue = current.mandatory and current.deadline is not None and now >= current.deadline
            if decision == "declined" and current.mandatory:
                raise ConsentError(f"campaign {campaign_id!r} is a mandatory update: it cannot be declined; "
                                   "postpone or schedule it")
            if decision in ("postponed", "scheduled") and overdue:
                raise ConsentError(f"campaign {campaign_id!r} is a mandatory update past its deadline "
                                   f"({self._iso(current.deadline or 0)}): it proceeds at the next maintenance window")
            if decision == "accepted":
                self._set(db, campaign_id, "accepted", source, now, None)
            elif decision == "declined":
                self._set(db, campaign_id, "declined", source, now, None)
            elif decision == "postponed":
                limit = self.rules.postpone_limit
                if current.postponements >= limit:
                    raise ConsentError(f"campaign {campaign_id!r} was postponed {current.postponements} times; "
                                       f"the limit is {limit}: accept or schedule it")
                until = now + self.rules.postpone_interval
                self._set(db, campaign_id, "postponed", source, now,
                          f"postponed until {self._iso(until)} ({current.postponements + 1} of {limit})",
                          not_before=until, postponed=True)
            else:
                assert window is not None
                w, start = self._window(window, now, current)
                self._set(db, campaign_id, "scheduled", source, now, f"scheduled for {w} (opens {self._iso(start)})",
                          window=w.spec, not_before=start)
                scheduled = self._get(db, campaign_id)
                assert scheduled is not None
                self._advance(db, scheduled, now)  # a window open now is accepted at once
            got = self._get(db, campaign_id)
        assert got is not None
        return got

    def _window(self, spec: str, now: float, current: Consent) -> tuple[Window, float]:
        try:
            w = parse_window(spec, self.tz)
        except WindowError as e:
            raise ConsentError(str(e)) from e
        occ = w.occurrence(now)
        if occ is None:
            raise ConsentError(f"window {spec!r} has passed")
        if current.mandatory and current.deadline is not None and occ[0] > current.deadline:
            raise ConsentError(f"campaign {current.campaign_id!r} is a mandatory update due by "
                               f"{self._iso(current.deadline)}; window {spec!r} opens after that ({self._iso(occ[0])})")
        return w, occ[0]

    def _iso(self, t: float) -> str:
        return iso(t, self.tz)

    def tick(self) -> list[Consent]:
        """Apply what time changed (see the module docstring); the consents that changed."""
        with self._tx() as db:
            return self._tick(db, self.clock())

    def next_wake(self) -> float | None:
        """When :meth:`tick` next has something to do (seconds since the epoch); None: nothing is due."""
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM consents WHERE decision IN "
                                    "('pending', 'postponed', 'scheduled')").fetchall()
        times: list[float] = []
        for c in map(self._row, rows):
            if c.decision in ("postponed", "scheduled") and c.not_before is not None:
                times.append(c.not_before)
            if c.mandatory and c.deadline is not None and not (c.decision == "scheduled"
                                                               and c.source == "policy:deadline"):
                times.append(c.deadline)
        return min(times) if times else None

    def _tick(self, db: sqlite3.Connection, now: float) -> list[Consent]:
        rows = db.execute(f"SELECT {_COLUMNS} FROM consents WHERE decision IN ('pending', 'postponed', "
                          "'scheduled') ORDER BY offered_at").fetchall()
        changed = []
        for current in map(self._row, rows):
            if self._advance(db, current, now):
                got = self._get(db, current.campaign_id)
                assert got is not None
                changed.append(got)
        return changed

    def _advance(self, db: sqlite3.Connection, c: Consent, now: float) -> bool:
        """Move one open offer on by time; True if it changed."""
        if c.decision not in OPEN:
            return False
        if c.mandatory and c.deadline is not None and now >= c.deadline:
            return self._past_deadline(db, c, now)
        if c.not_before is None or now < c.not_before:
            return False
        if c.decision == "postponed":
            self._set(db, c.campaign_id, "pending", "offer:again", None,
                      f"postponed until {self._iso(c.not_before)}; offered again", at=now)
            return True
        if c.decision == "scheduled" and c.window is not None:
            w = parse_window(c.window, self.tz)
            occ = w.occurrence(now)
            source = c.source if c.source.startswith("policy:") else "schedule"
            if occ is not None and occ[0] <= now:
                self._set(db, c.campaign_id, "accepted", source, now,
                          f"window {w} opened (scheduled by {c.source})")
            elif occ is not None:  # the window passed unseen (the HMI agent was down): its next occurrence
                self._set(db, c.campaign_id, "scheduled", c.source, now,
                          f"window {w} passed unseen; moved to its next opening {self._iso(occ[0])}",
                          window=w.spec, not_before=occ[0], keep_time=True)
            else:
                self._set(db, c.campaign_id, "pending", "offer:again", None,
                          f"scheduled window {w} passed; offered again", at=now)
            return True
        return False

    def _past_deadline(self, db: sqlite3.Connection, c: Consent, now: float) -> bool:
        """A mandatory offer past its deadline: at once in (or without) a maintenance window, else at the next.

        Follows the configured windows: after a configuration change it moves to the new next window.
        """
        passed = f"deadline {self._iso(c.deadline or 0)} passed"
        windows = self.rules.maintenance_windows
        opening = next_opening(windows, now)
        if opening is None:
            why = "no maintenance window is left" if windows else "no maintenance window configured"
            self._set(db, c.campaign_id, "accepted", "policy:deadline", now,
                      f"{passed}: mandatory update proceeds now ({why})")
            return True
        w, start, _end = opening
        if start <= now:
            self._set(db, c.campaign_id, "accepted", "policy:deadline", now,
                      f"{passed}: mandatory update proceeds now, in maintenance window {w}")
            return True
        by_deadline = c.decision == "scheduled" and c.source == "policy:deadline"
        if by_deadline and (c.window, c.not_before) == (w.spec, start):
            return False
        self._set(db, c.campaign_id, "scheduled", "policy:deadline", now,
                  f"{passed}: mandatory update proceeds without asking at the next maintenance window "
                  f"{w} (opens {self._iso(start)})", window=w.spec, not_before=start)
        return True

    # -- reading ----------------------------------------------------------------------------------
    def get(self, campaign_id: str) -> Consent | None:
        with self._lock:
            return self._get(self._db, campaign_id)

    def consents(self, campaign_id: str | None = None) -> list[Consent]:
        with self._lock:
            query = f"SELECT {_COLUMNS} FROM consents" + (" WHERE campaign_id = ?" if campaign_id else "") \
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
                       postponements=r[6], window=r[7], not_before=r[8], mandatory=bool(r[9]), deadline=r[10])

    def _get(self, db: sqlite3.Connection, campaign_id: str) -> Consent | None:
        row = db.execute(f"SELECT {_COLUMNS} FROM consents WHERE campaign_id = ?", (campaign_id,)).fetchone()
        return self._row(row) if row is not None else None

    def _set(self, db: sqlite3.Connection, campaign_id: str, decision: str, source: str, decided_at: float | None,
             detail: str | None, *, window: str | None = None, not_before: float | None = None,
             postponed: bool = False, at: float | None = None, keep_time: bool = False) -> None:
        """Change the decision and audit it (at ``decided_at``, or ``at`` for a pending offer)."""
        now = at if at is not None else decided_at
        assert now is not None
        db.execute("UPDATE consents SET decision = ?, source = ?, "
                   + ("" if keep_time else "decided_at = ?, ")
                   + "window = ?, not_before = ?, postponements = postponements + ? WHERE campaign_id = ?",
                   (decision, source, *(() if keep_time else (decided_at,)), window, not_before, int(postponed),
                    campaign_id))
        self._audit(db, now, campaign_id, decision, source, detail)

    @staticmethod
    def _audit(db: sqlite3.Connection, at: float, campaign_id: str, decision: str, source: str,
               detail: str | None) -> None:
        db.execute("INSERT INTO audit (at, campaign_id, decision, source, detail) VALUES (?, ?, ?, ?, ?)",
                   (at, campaign_id, decision, source, detail))
