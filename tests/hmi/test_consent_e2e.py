"""Consent on the bench: postpone / accept, schedule, deadline lead to the campaign timing they should.

One bench (:mod:`bench.scenario`: HTTPS backend, simulated ECUs speaking UDS over ISO-TP)
and the five daemons as processes for the module; each test runs one campaign (an update
while there is one, else a rollback of the last) and judges it by the HMI agent's audit
trail and the engine's journal: the campaign does not leave the consent step (OTA mode is
entered only after the acceptance) and the acceptance comes from the expected source, not
before the time it is due. The engine and the HMI agent are restarted while a campaign
waits for its window; the decision and the wait survive both.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import yaml

from agent.errors import OtaTimeoutError
from bench.scenario import Scenario, ScenarioOptions
from tests.engine.test_engine_e2e import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

TIMEOUT = 120.0
POSTPONE_S = 2.0


class Bench(Stack):
    """The engine tests' stack helpers, plus consent, journal and restart helpers."""

    def start_campaign(self) -> str:
        """An update while the route has one, else a rollback of the last successful campaign."""
        with self.client("agent") as agent:
            if agent.call("agent.check")["status"] == "update":
                return str(agent.call("agent.update", {})["campaign_id"])
            return str(agent.call("agent.rollback", {})["campaign_id"])

    def wait_consent(self, cid: str, *decisions: str) -> dict[str, Any]:
        """Wait (on hmi_agent.consent.changed) until the campaign's consent is one of ``decisions``."""
        with self.client("hmi_agent") as hmi, hmi.subscribe("hmi_agent.consent.changed") as changes:
            while True:
                consents = hmi.call("hmi_agent.consent.status", {"campaign_id": cid, "audit_limit": 0})["consents"]
                if consents and consents[0]["decision"] in decisions:
                    return dict(consents[0])
                try:
                    changes.get(timeout=TIMEOUT)
                except OtaTimeoutError as e:
                    raise AssertionError(f"consent of {cid} never became {decisions}\n{self.log_tails()}") from e

    def audit(self, cid: str) -> list[dict[str, Any]]:
        """The campaign's audit trail, oldest first."""
        with self.client("hmi_agent") as hmi:
            return list(reversed(hmi.call("hmi_agent.consent.status", {"campaign_id": cid})["audit"]))

    def steps(self, cid: str) -> list[tuple[str, str, float]]:
        """(step, state, started) of the campaign's steps in journal order."""
        db = sqlite3.connect(self.scenario.dir / "vehicle" / "journal.db")
        try:
            return db.execute("SELECT step, state, started FROM steps WHERE campaign = ? ORDER BY id",
                              (cid,)).fetchall()
        finally:
            db.close()

    def restart_daemon(self, name: str, sig: signal.Signals) -> None:
        """Stop daemon ``name`` with ``sig``, wait until it is gone, start it again (same config file)."""
        pid = self.sup.running_pid(name)
        assert pid is not None, f"{name} is not running"
        fd = os.pidfd_open(pid)
        try:
            os.kill(pid, sig)
            assert select.select([fd], [], [], 30)[0], f"{name} (pid {pid}) did not exit on {sig.name}"
        finally:
            os.close(fd)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        self.sup.up()
        assert self.sup.running_pid(name) not in (None, pid)


@pytest.fixture(scope="module")
def bench() -> Iterator[Bench]:
    options = ScenarioOptions(stack_overrides={"hmi_agent": {
        "policy": "ask", "postpone": {"limit": 1, "interval": POSTPONE_S}}})
    with Scenario(options) as scenario:
        b = Bench(scenario)
        try:
            b.sup.up()
            yield b
        finally:
            b.sup.down()


def step_started(journal: list[tuple[str, str, float]], step: str) -> float:
    return next(started for s, _state, started in journal if s == step)


def soon(seconds: int) -> float:
    """A whole second at least ``seconds`` from now (windows are written to the second)."""
    return float(int(time.time()) + 1 + seconds)


def iso_window(start: float, end: float) -> str:
    return "/".join(datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds") for t in (start, end))


def test_terminal_hmi_postpones_is_asked_again_then_accepts_and_shows_progress(bench: Bench) -> None:
    cid = bench.start_campaign()
    shown = bench.otactl("hmi", "--answer", "postpone", "--answer", "postpone", "--answer", "accept",
                         "--until-result", "--timeout", str(TIMEOUT))
    assert shown.returncode == 0, shown.stdout + shown.stderr + bench.log_tails()
    out = shown.stdout
    # the offer as the driver sees it, twice (asked again after the postponement)
    assert out.count("estimated install time") == 2 and "Release notes" in out and "cannot be started" in out
    assert "You can postpone it 1 more time(s)" in out and "You can postpone it 0 more time(s)" in out
    assert "not taken" in out and "the limit is 1" in out  # the second postponement is refused
    assert "flash " in out and "succeeded" in out  # live progress per ECU, then the result
    record = bench.wait_end(cid)
    assert record["result"] == "succeeded", record
    trail = bench.audit(cid)
    assert [(a["decision"], a["source"].split(":")[0]) for a in trail] == [
        ("pending", "policy"), ("postponed", "hmi"), ("pending", "offer"), ("accepted", "hmi")]
    postponed, asked_again, accepted = trail[1], trail[2], trail[3]
    assert asked_again["at"] >= postponed["at"] + POSTPONE_S  # not asked again before the interval ran out
    journal = bench.steps(cid)
    assert step_started(journal, "ota_mode_on") >= accepted["at"]  # nothing installed before the answer


def test_schedule_waits_for_its_window_across_engine_and_hmi_restarts(bench: Bench) -> None:
    cid = bench.start_campaign()
    bench.wait_consent(cid, "pending")
    now = time.time()
    far = bench.otactl("consent", "schedule", iso_window(now + 3600, now + 7200))
    assert far.returncode == 0 and "scheduled" in far.stdout, far.stdout + far.stderr
    bench.restart_daemon("agent", signal.SIGKILL)  # the engine dies while the campaign waits for its window
    bench.restart_daemon("hmi_agent", signal.SIGTERM)  # and the HMI agent restarts
    with bench.client("agent") as agent:
        status = agent.call("agent.status")
    assert status["campaign"]["id"] == cid and status["campaign"]["result"] is None
    assert bench.wait_consent(cid, "scheduled", "accepted")["decision"] == "scheduled"  # still waiting
    assert "ota_mode_on" not in [s for s, _st, _t in bench.steps(cid)]
    start = soon(2)
    near = bench.otactl("consent", "schedule", iso_window(start, start + 600), "--campaign", cid)
    assert near.returncode == 0, near.stdout + near.stderr
    record = bench.wait_end(cid)
    assert record["result"] == "succeeded", record
    trail = bench.audit(cid)
    assert [(a["decision"], a["source"].split(":")[0]) for a in trail] == [
        ("pending", "policy"), ("scheduled", "cli"), ("scheduled", "cli"), ("accepted", "schedule")]
    accepted = trail[-1]
    assert accepted["at"] >= start
    journal = bench.steps(cid)
    consent_rows = [st for s, st, _t in journal if s == "consent"]
    assert len(consent_rows) >= 2 and consent_rows[-1] == "done"  # the wait was taken up after the kill
    assert step_started(journal, "ota_mode_on") >= accepted["at"]


def set_hmi_rules(bench: Bench, **rules: Any) -> None:
    """Rewrite the hmi_agent section of the stack config and have the HMI agent reload it (SIGHUP)."""
    doc = yaml.safe_load(bench.scenario.stack_config.read_text())
    doc["hmi_agent"].update(rules)
    bench.scenario.stack_config.write_text(yaml.safe_dump(doc, sort_keys=False))
    pid = bench.sup.running_pid("hmi_agent")
    assert pid is not None
    with bench.client("hmi_agent") as hmi, hmi.subscribe("daemon.state") as states:
        os.kill(pid, signal.SIGHUP)
        while (state := states.get(timeout=TIMEOUT).params)["state"] != "ready":
            pass
    assert "detail" not in state, state  # no "reload failed"


def test_mandatory_update_past_its_deadline_proceeds_at_the_maintenance_window_without_asking(bench: Bench) -> None:
    now = time.time()
    set_hmi_rules(bench, mandatory=True, deadline_after=1, maintenance_windows=[iso_window(now + 3600, now + 7200)])
    cid = bench.start_campaign()
    due = bench.wait_consent(cid, "scheduled", "accepted")  # nobody answers; the deadline passes
    assert (due["decision"], due["source"]) == ("scheduled", "policy:deadline") and due["mandatory"]
    refused = bench.otactl("consent", "decline", "--campaign", cid)
    assert refused.returncode == 6 and "cannot be declined" in refused.stderr, refused.stdout + refused.stderr
    assert "ota_mode_on" not in [s for s, _st, _t in bench.steps(cid)]  # it waits for the window
    window_start = soon(2)  # the workshop opens a maintenance window (configuration reload)
    set_hmi_rules(bench, maintenance_windows=[iso_window(window_start, window_start + 600)])
    record = bench.wait_end(cid)
    assert record["result"] == "succeeded", record
    trail = bench.audit(cid)
    assert all(a["source"].startswith("policy:") for a in trail), trail  # nobody answered
    decisions = [(a["decision"], a["source"]) for a in trail]
    assert decisions[:2] == [("pending", "policy:ask"), ("scheduled", "policy:deadline")]
    assert decisions[-1] == ("accepted", "policy:deadline")
    # moved to the new window, unless that was open already when the reload was applied
    assert set(decisions[2:-1]) <= {("scheduled", "policy:deadline")}
    assert "proceeds without asking at the next maintenance window" in trail[1]["detail"]
    accepted = trail[-1]
    assert accepted["at"] >= max(due["deadline"], window_start)
    assert step_started(bench.steps(cid), "ota_mode_on") >= accepted["at"]


MANDATORY_TO = "BV OS D 1.3.0"


def publish_mandatory_release(bench: Bench, current: str, deadline: str) -> str:
    """Build release bv-1.3.0 (body 2.2.0) marked mandatory with ``deadline``; route ``current`` to it."""
    from bench.appimage import to_hex
    from bench.repository.builder import build_release
    from bench.scenario import ECU_VERSIONS, SW_BASELINE

    d = bench.scenario.dir
    body = bench.scenario.vehicle_template["ecus"]["body"]
    (d / "images" / "body-2.2.0.hex").write_text(
        to_hex(bench.scenario.image_bytes("body", "2.2.0"), int(body["memory"]["regions"][0]["start"])))
    versions = {**ECU_VERSIONS[current], "body": "2.2.0"}
    entry = "".join(f'<ecu id="{e}" name="{e}"><softwareVersion>{v}</softwareVersion></ecu>'
                    for e, v in versions.items())
    (d / "baseline-1.3.0.xml").write_text(SW_BASELINE.read_text().replace(
        "</softwareBaseline>", f'<vehicleVersion sequence="4" version="{MANDATORY_TO}"><description>Mandatory body '
                               f'fix</description>{entry}</vehicleVersion></softwareBaseline>'))
    (d / "bv-1.3.0.yaml").write_text(yaml.safe_dump({
        "format": 1, "release": "bv-1.3.0", "target_vehicle_version": MANDATORY_TO, "baseline": "baseline-1.3.0.xml",
        "targets": [{"ecu": "body", "hardware_id": body["sim"]["part_number"], "software_version": "2.2.0",
                     "release_counter": 3, "image": "images/body-2.2.0.hex", "flash_script": body["flash_script"]}],
        "mandatory": True, "deadline": deadline}, sort_keys=False))
    build_release(d / "bv-1.3.0.yaml", d / "image-repo")
    (d / "route.yaml").write_text(yaml.safe_dump({"format": 1, "route": "bv-mainline", "edges": [
        {"from": current, "to": MANDATORY_TO, "release": "bv-1.3.0", "stage": "published"}]}, sort_keys=False))
    return "bv-1.3.0"


def test_release_marked_mandatory_with_a_past_deadline_installs_at_the_next_window_without_an_answer(
        bench: Bench) -> None:
    now = time.time()
    # the HMI configuration's fallback says "not mandatory" and a far deadline: what happens comes from the release
    set_hmi_rules(bench, mandatory=False, deadline_after=30 * 86400,
                  maintenance_windows=[iso_window(now + 3600, now + 7200)])
    with bench.client("agent") as agent:
        current = str(agent.call("agent.check")["vehicle_version"])
    deadline = "2020-01-01T00:00:00Z"
    publish_mandatory_release(bench, current, deadline)
    with bench.client("agent") as agent:
        check = agent.call("agent.check")
        assert (check["status"], check["target_vehicle_version"]) == ("update", MANDATORY_TO), check
        cid = str(agent.call("agent.update", {})["campaign_id"])
    due = bench.wait_consent(cid, "scheduled", "accepted")  # nobody answers; the signed deadline has passed
    assert (due["decision"], due["source"]) == ("scheduled", "policy:deadline"), due
    assert due["mandatory"] and due["deadline"] == datetime.fromisoformat(deadline).timestamp()
    refused = bench.otactl("consent", "decline", "--campaign", cid)
    assert refused.returncode == 6 and "cannot be declined" in refused.stderr, refused.stdout + refused.stderr
    assert "ota_mode_on" not in [s for s, _st, _t in bench.steps(cid)]  # it waits for the window
    window_start = soon(2)
    set_hmi_rules(bench, maintenance_windows=[iso_window(window_start, window_start + 600)])
    record = bench.wait_end(cid)
    assert record["result"] == "succeeded", record
    trail = bench.audit(cid)
    decisions = [(a["decision"], a["source"]) for a in trail]
    assert decisions[:2] == [("pending", "policy:ask"), ("scheduled", "policy:deadline")], decisions
    assert decisions[-1] == ("accepted", "policy:deadline") and all(s.startswith("policy:") for _d, s in decisions)
    assert "deadline 2020-01-01" in trail[1]["detail"] and "without asking" in trail[1]["detail"]
    assert trail[-1]["at"] >= window_start
    assert step_started(bench.steps(cid), "ota_mode_on") >= trail[-1]["at"]
    assert record["to_version"] == MANDATORY_TO  # verified against the release's baseline after the flash
