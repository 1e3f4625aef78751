"""Consent: policies, answers, the audit trail; persisted across a restart of the HMI agent."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.errors import ConfigurationError
from agent.ipc.sync import SyncClient
from agent.runtime.supervisor import Supervisor, select_daemons
from hmi_agent.consent import ConsentBook, ConsentError

OFFER: dict[str, Any] = {"from_version": "BV OS D 1.0.0", "to_version": "BV OS D 1.1.0", "ecus": ["engine"],
                         "size_bytes": 40_000, "est_install_s": 30.0, "release_notes": "Engine calibration"}


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


def test_auto_accept_decides_at_once_and_audits(tmp_path: Path) -> None:
    book = ConsentBook(tmp_path / "hmi.db", "auto_accept", clock=Clock())
    consent, changed = book.request("c1", OFFER)
    assert changed and consent.decision == "accepted" and consent.source == "policy:auto_accept"
    again, changed = book.request("c1", OFFER)
    assert not changed and again == consent  # an engine asking again gets the same answer
    assert [(a["decision"], a["source"]) for a in book.audit()] == [("accepted", "policy:auto_accept")]


def test_ask_waits_for_an_answer_postpone_asks_again_decline_is_final(tmp_path: Path) -> None:
    book = ConsentBook(tmp_path / "hmi.db", "ask", clock=Clock())
    assert book.request("c1", OFFER)[0].decision == "pending"
    assert book.answer(None, "postponed", "cli:alice").decision == "postponed"
    again, changed = book.request("c1", OFFER)
    assert changed and again.decision == "pending" and again.postponements == 1
    declined = book.answer("c1", "declined", "hmi:driver")
    assert declined.decision == "declined" and declined.decided_at is not None
    with pytest.raises(ConsentError, match="already declined by hmi:driver"):
        book.answer("c1", "accepted", "cli:alice")
    assert book.request("c1", OFFER)[0].decision == "declined"
    trail = [(a["decision"], a["source"]) for a in reversed(book.audit("c1"))]
    assert trail == [("pending", "policy:ask"), ("postponed", "cli:alice"), ("pending", "offer:again"),
                     ("declined", "hmi:driver")]
    times = [a["at"] for a in reversed(book.audit("c1"))]
    assert times == sorted(times) and len(set(times)) == 4


def test_answer_without_campaign_needs_exactly_one_waiting(tmp_path: Path) -> None:
    book = ConsentBook(tmp_path / "hmi.db", "ask", clock=Clock())
    with pytest.raises(ConsentError, match="no offer is waiting"):
        book.answer(None, "accepted", "cli:alice")
    book.request("c1", OFFER)
    book.request("c2", OFFER)
    with pytest.raises(ConsentError, match=r"several offers.*c2, c1"):
        book.answer(None, "accepted", "cli:alice")
    with pytest.raises(ConsentError, match="no offer for campaign 'c9'"):
        book.answer("c9", "accepted", "cli:alice")


def test_decisions_survive_reopening(tmp_path: Path) -> None:
    book = ConsentBook(tmp_path / "hmi.db", "ask", clock=Clock())
    book.request("c1", OFFER)
    book.answer("c1", "accepted", "cli:alice")
    book.close()
    reopened = ConsentBook(tmp_path / "hmi.db", "auto_accept", clock=Clock())  # policy changed since
    consent = reopened.get("c1")
    assert consent is not None and consent.decision == "accepted" and consent.source == "cli:alice"
    assert consent.offer == OFFER
    assert len(reopened.audit("c1")) == 2


def test_bad_policy_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="auto_accept, ask"):
        ConsentBook(tmp_path / "hmi.db", "always")


def otactl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=60)


@pytest.mark.e2e
def test_ask_answered_from_cli_and_audit_survives_hmi_restart(tmp_path: Path) -> None:
    """The HMI agent as a process (ask policy), answered with `otactl consent accept`, restarted."""
    run_dir = Path(tempfile.mkdtemp(prefix="ota-hmi-"))
    try:
        stack = tmp_path / "stack.yaml"
        stack.write_text(yaml.safe_dump({"runtime": {"dir": str(run_dir)},
                                         "hmi_agent": {"policy": "ask", "db": str(tmp_path / "hmi.db")}}))
        env = {**os.environ, "OTA_RUNTIME_DIR": str(run_dir)}
        sup = Supervisor(stack, env=env, daemons=select_daemons("hmi_agent"))
        sup.up()
        try:
            with SyncClient(run_dir / "hmi_agent.sock", daemon="hmi_agent") as hmi, \
                    hmi.subscribe("hmi_agent.consent.changed") as changes:
                first = hmi.call("hmi_agent.consent.request", {"campaign_id": "c1", "offer": OFFER})
                assert first["decision"] == "pending"
                assert changes.get(timeout=10).params["decision"] == "pending"
                done = otactl(env, "consent", "accept", "--json")
                assert done.returncode == 0, done.stderr
                event = changes.get(timeout=10).params
                assert event["campaign_id"] == "c1" and event["decision"] == "accepted"
                assert event["source"].startswith("cli:")
            sup.down()
            sup.up()  # a new HMI agent process on the same database
            with SyncClient(run_dir / "hmi_agent.sock", daemon="hmi_agent") as hmi:
                again = hmi.call("hmi_agent.consent.request", {"campaign_id": "c1", "offer": OFFER})
                assert again["decision"] == "accepted"
                status = hmi.call("hmi_agent.consent.status", {"campaign_id": "c1"})
            assert [a["decision"] for a in status["audit"]] == ["accepted", "pending"]
            shown = otactl(env, "consent", "status")
            assert shown.returncode == 0 and "accepted" in shown.stdout and "audit trail" in shown.stdout
            refused = otactl(env, "consent", "decline", "--campaign", "c1")
            assert refused.returncode == 6 and "already accepted" in refused.stderr
        finally:
            sup.down()
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
