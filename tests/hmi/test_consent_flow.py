"""The consent flow on an injected clock: postpone (bounded, asked again), schedule, deadline, policies, restarts."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from hmi_agent.consent import ConsentBook, ConsentError, Rules
from hmi_agent.windows import parse_window

OFFER: dict[str, Any] = {"from_version": "BV OS D 1.0.0", "to_version": "BV OS D 1.1.0", "ecus": ["engine"],
                         "size_bytes": 40_000, "est_install_s": 60.0}
HOUR = 3600.0


def t(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


class Clock:
    def __init__(self, start: str = "2026-11-21T10:00:00") -> None:
        self.now = t(start)

    def __call__(self) -> float:
        return self.now


def book(tmp_path: Path, clock: Clock, policy: str = "ask", **rules: Any) -> ConsentBook:
    windows = tuple(parse_window(w, timezone.utc) for w in rules.pop("windows", ()))
    return ConsentBook(tmp_path / "hmi.db", policy, clock=clock, tz=timezone.utc,
                       rules=Rules(maintenance_windows=windows, **rules))


def trail(b: ConsentBook, cid: str = "c1") -> list[tuple[str, str]]:
    return [(a["decision"], a["source"]) for a in reversed(b.audit(cid))]


def test_postpone_waits_its_interval_then_asks_again_up_to_the_limit(tmp_path: Path) -> None:
    clock = Clock()
    b = book(tmp_path, clock, postpone_limit=2, postpone_interval=HOUR)
    b.request("c1", OFFER)
    postponed = b.answer("c1", "postponed", "hmi:driver")
    assert postponed.decision == "postponed" and postponed.not_before == clock.now + HOUR
    assert b.next_wake() == clock.now + HOUR
    clock.now += HOUR - 1
    assert b.tick() == [] and b.request("c1", OFFER) == (b.get("c1"), False)  # still postponed
    clock.now += 1
    (again,) = b.tick()
    assert again.decision == "pending" and again.postponements == 1 and b.next_wake() is None
    b.answer("c1", "postponed", "hmi:driver")
    clock.now += HOUR
    b.tick()
    with pytest.raises(ConsentError, match="postponed 2 times; the limit is 2"):
        b.answer("c1", "postponed", "hmi:driver")
    assert b.answer("c1", "accepted", "hmi:driver").decision == "accepted"
    assert trail(b) == [("pending", "policy:ask"), ("postponed", "hmi:driver"), ("pending", "offer:again"),
                        ("postponed", "hmi:driver"), ("pending", "offer:again"), ("accepted", "hmi:driver")]


def test_schedule_is_accepted_when_the_window_opens_and_survives_a_restart(tmp_path: Path) -> None:
    clock = Clock("2026-11-21T20:00:00")
    b = book(tmp_path, clock)
    b.request("c1", OFFER)
    scheduled = b.answer(None, "scheduled", "cli:alice", window="02:00-04:00")
    assert scheduled.decision == "scheduled" and scheduled.not_before == t("2026-11-22T02:00:00")
    b.close()  # the HMI agent restarts while the update waits for its window
    clock.now = t("2026-11-22T02:00:00")
    b = book(tmp_path, clock)
    (accepted,) = b.tick()
    assert accepted.decision == "accepted" and accepted.source == "schedule"
    assert b.audit("c1")[0]["detail"] == "window 02:00-04:00 opened (scheduled by cli:alice)"


def test_schedule_into_an_open_window_accepts_at_once_a_passed_one_is_refused(tmp_path: Path) -> None:
    clock = Clock("2026-11-21T10:00:00")
    b = book(tmp_path, clock)
    b.request("c1", OFFER)
    with pytest.raises(ConsentError, match="has passed"):
        b.answer("c1", "scheduled", "cli:alice", window="2026-11-21T08:00:00+00:00/2026-11-21T09:00:00+00:00")
    with pytest.raises(ConsentError, match="expected HH:MM-HH:MM"):
        b.answer("c1", "scheduled", "cli:alice", window="soon")
    now = b.answer("c1", "scheduled", "cli:alice", window="09:00-11:00")
    assert now.decision == "accepted" and now.source == "schedule"


def test_a_daily_window_missed_while_the_hmi_agent_was_down_moves_to_its_next_opening(tmp_path: Path) -> None:
    clock = Clock("2026-11-21T20:00:00")
    b = book(tmp_path, clock)
    b.request("c1", OFFER)
    b.answer("c1", "scheduled", "cli:alice", window="02:00-04:00")
    clock.now = t("2026-11-22T05:00:00")
    (moved,) = b.tick()
    assert moved.decision == "scheduled" and moved.not_before == t("2026-11-23T02:00:00")
    assert "passed unseen" in (b.audit("c1")[0]["detail"] or "")


def test_mandatory_past_its_deadline_proceeds_at_the_next_maintenance_window_without_asking(tmp_path: Path) -> None:
    clock = Clock("2026-11-21T10:00:00")
    b = book(tmp_path, clock, mandatory=True, deadline_after=2 * HOUR, postpone_interval=HOUR, windows=["02:00-04:00"])
    offered, _ = b.request("c1", OFFER)
    assert offered.mandatory and offered.deadline == clock.now + 2 * HOUR
    with pytest.raises(ConsentError, match="mandatory update: it cannot be declined"):
        b.answer("c1", "declined", "hmi:driver")
    with pytest.raises(ConsentError, match="opens after that"):
        b.answer("c1", "scheduled", "hmi:driver", window="2026-11-25T10:00:00+00:00/2026-11-25T11:00:00+00:00")
    b.answer("c1", "postponed", "hmi:driver")
    clock.now += HOUR
    b.tick()  # asked again; the driver does not answer
    assert b.next_wake() == t("2026-11-21T12:00:00")
    clock.now = t("2026-11-21T12:00:00")
    (due,) = b.tick()
    assert due.decision == "scheduled" and due.source == "policy:deadline"
    assert due.not_before == t("2026-11-22T02:00:00")
    with pytest.raises(ConsentError, match="past its deadline"):
        b.answer("c1", "postponed", "hmi:driver")
    clock.now = t("2026-11-22T02:00:00")
    (go,) = b.tick()
    assert go.decision == "accepted" and go.source == "policy:deadline"
    assert trail(b)[-2:] == [("scheduled", "policy:deadline"), ("accepted", "policy:deadline")]
    assert "mandatory update proceeds without asking at the next maintenance window 02:00-04:00" in \
        (b.audit("c1")[1]["detail"] or "")


def test_mandatory_past_its_deadline_without_windows_proceeds_at_once(tmp_path: Path) -> None:
    clock = Clock()
    b = book(tmp_path, clock)
    b.request("c1", {**OFFER, "mandatory": True, "deadline": clock.now + 10})
    clock.now += 10
    (go,) = b.tick()
    assert (go.decision, go.source) == ("accepted", "policy:deadline")
    assert "no maintenance window configured" in (b.audit("c1")[0]["detail"] or "")


def test_the_offers_mandatory_and_deadline_win_over_the_configured_fallback(tmp_path: Path) -> None:
    clock = Clock()
    b = book(tmp_path, clock, mandatory=True, deadline_after=HOUR)
    said_no, _ = b.request("c1", {**OFFER, "mandatory": False})  # the signed release says: not mandatory
    assert not said_no.mandatory and said_no.deadline is None
    assert b.answer("c1", "declined", "hmi").decision == "declined"
    own, _ = b.request("c2", {**OFFER, "mandatory": True, "deadline": clock.now + 5 * HOUR})
    assert own.mandatory and own.deadline == clock.now + 5 * HOUR  # its own deadline, not deadline_after
    silent, _ = b.request("c3", OFFER)  # the release does not say: the configuration decides
    assert silent.mandatory and silent.deadline == clock.now + HOUR


def test_maintenance_window_policy_schedules_new_offers_without_asking(tmp_path: Path) -> None:
    clock = Clock("2026-11-21T10:00:00")
    b = book(tmp_path, clock, "maintenance_window", windows=["02:00-04:00"])
    offered, changed = b.request("c1", OFFER)
    assert changed and offered.decision == "scheduled" and offered.source == "policy:maintenance_window"
    clock.now = t("2026-11-22T02:30:00")
    assert b.request("c1", OFFER)[0].decision == "accepted"
    assert trail(b) == [("scheduled", "policy:maintenance_window"), ("accepted", "policy:maintenance_window")]


def test_a_schema_1_database_is_upgraded_in_place(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "hmi.db")
    db.executescript("""
        CREATE TABLE consents (campaign_id TEXT PRIMARY KEY, offer TEXT NOT NULL, decision TEXT NOT NULL,
            source TEXT NOT NULL, decided_at REAL, offered_at REAL NOT NULL, postponements INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, campaign_id TEXT NOT NULL,
            decision TEXT NOT NULL, source TEXT NOT NULL, detail TEXT);
        INSERT INTO consents VALUES ('c0', '{}', 'accepted', 'cli:alice', 1.0, 1.0, 0);
        PRAGMA user_version=1;""")
    db.close()
    b = book(tmp_path, Clock())
    old = b.get("c0")
    assert old is not None and old.decision == "accepted" and old.window is None and not old.mandatory
    assert b.request("c1", OFFER)[0].decision == "pending"


def test_a_mandatory_update_waiting_for_its_window_follows_changed_maintenance_windows(tmp_path: Path) -> None:
    clock = Clock("2026-11-21T10:00:00")
    b = book(tmp_path, clock, mandatory=True, deadline_after=60, windows=["02:00-04:00"])
    b.request("c1", OFFER)
    clock.now += 60
    (due,) = b.tick()
    assert due.not_before == t("2026-11-22T02:00:00")
    assert b.tick() == []  # nothing more until the window opens
    b.close()  # the workshop adds a maintenance window now; the HMI agent restarts with it
    b = book(tmp_path, clock, mandatory=True, deadline_after=60, windows=["02:00-04:00", "10:30-11:00"])
    (moved,) = b.tick()
    assert (moved.decision, moved.window, moved.not_before) == ("scheduled", "10:30-11:00", t("2026-11-21T10:30:00"))
    clock.now = t("2026-11-21T10:30:00")
    (go,) = b.tick()
    assert (go.decision, go.source) == ("accepted", "policy:deadline")


def test_config_reads_the_rules_and_names_file_and_key_of_a_bad_window(tmp_path: Path) -> None:
    from agent.errors import ConfigurationError
    from agent.runtime.config import load_config
    from hmi_agent.config import HmiConfig

    good = tmp_path / "good.yaml"
    good.write_text(f"hmi_agent: {{db: {tmp_path}/hmi.db, policy: maintenance_window, mandatory: true,\n"
                    "  deadline_after: 600, postpone: {limit: 2, interval: 30},\n"
                    "  maintenance_windows: ['02:00-04:00']}\n")
    cfg = load_config(HmiConfig, "hmi_agent", good, {})
    assert cfg.policy == "maintenance_window" and cfg.rules.postpone_limit == 2
    assert cfg.rules.postpone_interval == 30 and cfg.rules.deadline_after == 600 and cfg.rules.mandatory
    assert [w.spec for w in cfg.rules.maintenance_windows] == ["02:00-04:00"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"hmi_agent: {{db: {tmp_path}/hmi.db, maintenance_windows: ['02:00-4']}}\n")
    with pytest.raises(ConfigurationError, match=r"bad\.yaml.*maintenance_windows\[0\].*HH:MM-HH:MM"):
        load_config(HmiConfig, "hmi_agent", bad, {})
    lonely = tmp_path / "lonely.yaml"
    lonely.write_text(f"hmi_agent: {{db: {tmp_path}/hmi.db, policy: maintenance_window}}\n")
    with pytest.raises(ConfigurationError, match="needs at least one entry in maintenance_windows"):
        load_config(HmiConfig, "hmi_agent", lonely, {})
