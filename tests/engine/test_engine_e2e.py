"""The engine with every daemon as a process on the bench: campaigns, rollback, SIGKILL and resume.

Real processes and protocols throughout (:mod:`bench.scenario`: HTTPS backend with Uptane
repositories, simulated ECUs speaking UDS over ISO-TP on the bench bus; the supervisor
starts the five daemons). The tests drive the engine over IPC like ``otactl`` does and
judge the vehicle by its baseline match read from the ECUs.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.scenario import V1, V2, V3, Scenario, ScenarioOptions, failing_flash
from tests.engine.killkit import KillBench

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

CAMPAIGN_TIMEOUT = 180.0


class Stack(KillBench):
    """The bench with the daemons (:class:`tests.engine.killkit.KillBench`) plus ``otactl`` and raw journal rows."""

    def otactl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "agent.cli.main", *args], env=self.scenario.env,
                              capture_output=True, text=True, timeout=CAMPAIGN_TIMEOUT + 60)

    def journal_rows(self) -> list[tuple[Any, ...]]:
        db = sqlite3.connect(self.scenario.dir / "vehicle" / "journal.db")
        try:
            return db.execute("SELECT campaign, step, ecu, state FROM steps ORDER BY id").fetchall()
        finally:
            db.close()


@pytest.fixture
def make_stack() -> Iterator[Any]:
    stacks: list[tuple[Scenario, Stack]] = []

    def make(**options: Any) -> Stack:
        scenario = Scenario(ScenarioOptions(**options))
        scenario.up()
        stack = Stack(scenario)
        stacks.append((scenario, stack))
        try:
            stack.sup.up()
        except BaseException:
            scenario.down()
            raise
        return stack

    yield make
    for scenario, stack in stacks:
        try:
            stack.sup.down()
        finally:
            scenario.down()


def test_campaigns_move_the_vehicle_along_the_route_and_flash_all_three_ecus(make_stack: Any) -> None:
    stack = make_stack(stack_overrides={"agent": {"campaign": {"repeat": True}}})
    assert stack.vehicle_version() == V1
    check = stack.otactl("check")
    assert check.returncode == 0 and f"update available: {V1} -> {V2}" in check.stdout, check.stdout + check.stderr
    done = stack.otactl("update", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "BV OS D 1.0.0 -> BV OS D 1.1.0" in done.stdout
    # repeat: the engine checked again and continued along the route to the last node
    with stack.client("agent") as agent:
        first = agent.call("agent.history", {"limit": 10})["campaigns"]
    latest = first[0]
    if latest["state"] == "running":
        latest = stack.wait_end(latest["id"])
    assert latest["result"] == "succeeded", latest
    assert (latest["from_version"], latest["to_version"]) == (V2, V3)
    assert {e: s["outcome"] for e, s in latest["ecus"].items()} == {"brake": "installed", "body": "installed"}
    assert stack.vehicle_version() == V3
    with stack.client("agent") as agent:
        campaigns = agent.call("agent.history", {"limit": 10})["campaigns"]
    results = [(c["from_version"], c["to_version"], c["result"]) for c in campaigns]
    assert (V1, V2, "succeeded") in results and (V2, V3, "succeeded") in results
    # the last check found nothing more to do (that repeat may still be checking: wait for its end)
    last = campaigns[0] if campaigns[0]["state"] == "ended" else stack.wait_end(campaigns[0]["id"])
    assert last["result"] == "nothing"
    assert all(state != "started" for *_, state in stack.journal_rows())
    status = stack.otactl("status", "--json")
    assert status.returncode == 0 and '"state": "idle"' in status.stdout

    # otactl rollback: back to the previous vehicle version with the kept previous images
    back = stack.otactl("rollback", "--yes")
    assert back.returncode == 0, back.stdout + back.stderr
    assert stack.vehicle_version() == V2
    with stack.client("agent") as agent:
        record = agent.call("agent.history", {"limit": 1})["campaigns"][0]
    assert (record["kind"], record["from_version"], record["to_version"], record["result"]) == \
        ("rollback", V3, V2, "succeeded")


def test_a_failing_ecu_rolls_the_whole_vehicle_back(make_stack: Any) -> None:
    # body (single bank, bus body) fails both flash attempts; brake (A/B, powertrain) flashes fine
    stack = make_stack(start_version=V2, faults={"body": failing_flash(times=2)})
    assert stack.vehicle_version() == V2
    done = stack.otactl("update", "--yes")
    assert done.returncode == 3, done.stdout + done.stderr  # rolled back
    with stack.client("agent") as agent:
        record = agent.call("agent.history", {"limit": 1})["campaigns"][0]
    assert record["result"] == "rolled_back"
    assert "flashing body failed 2 times" in record["detail"]
    assert {e: s["outcome"] for e, s in record["ecus"].items()} == {"brake": "rolled_back", "body": "rolled_back"}
    # flash attempts: the rollback of each ECU is not counted as one
    assert {e: s["attempts"] for e, s in record["ecus"].items()} == {"brake": 1, "body": 2}
    # the brake had been updated (its new bank active): it was switched back
    assert {e: s["note"] for e, s in record["ecus"].items()} == {
        "brake": "rolled back: bank switched", "body": "rolled back: previous image reflashed"}
    assert stack.vehicle_version() == V2
    steps = [(s, e) for _c, s, e, _st in stack.journal_rows()]
    assert ("rollback", "brake") in steps and ("rollback", "body") in steps
    with stack.client("system_agent") as sa:
        assert sa.call("system_agent.ota_mode.status")["active"] is False


def test_a_failing_ab_ecu_is_rolled_back_on_its_old_bank_and_the_vehicle_with_it(make_stack: Any) -> None:
    """The A/B brake fails every flash attempt before activating its new bank: it still runs its old
    image, so its rollback switches nothing (the bootloader would refuse the revert); body, updated
    meanwhile on the other bus, is reflashed; the campaign ends rolled back on the old version."""
    stack = make_stack(start_version=V2, faults={"brake": failing_flash()})
    assert stack.vehicle_version() == V2
    done = stack.otactl("update", "--yes")
    assert done.returncode == 3, done.stdout + done.stderr  # rolled back, not failed
    with stack.client("agent") as agent:
        record = agent.call("agent.history", {"limit": 1})["campaigns"][0]
    assert record["result"] == "rolled_back", record
    assert "flashing brake failed 2 times" in record["detail"]
    assert "brake (already on previous bank)" in record["detail"]
    assert {e: (s["outcome"], s["note"]) for e, s in record["ecus"].items()} == {
        "brake": ("rolled_back", "rolled back: already on previous bank"),
        "body": ("rolled_back", "rolled back: previous image reflashed")}
    assert stack.vehicle_version() == V2
    # the rollback job on the brake asked the ECU (expected_version) and needed no second attempt
    rows = [(s, e, st) for _c, s, e, st in stack.journal_rows()]
    assert [st for s, e, st in rows if (s, e) == ("rollback", "brake")] == ["done"]
    status = stack.otactl("status", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    assert json.loads(status.stdout)["last"]["ecus"]["brake"]["note"] == "rolled back: already on previous bank"


#: brake's RoutineControl requests in its flash script: check_preconditions, erase, check_memory,
#: check_dependencies, activate. Erase and check_dependencies answer late (body fails twice meanwhile);
#: the activate sets the pending bank and its answer is lost: the update agent, waiting for it, is killed
#: then (the ECU itself is not busy, so the rollback after the restart finds it ready)
BRAKE_ACTIVATE_UNANSWERED = {
    "pending_storm": [{"service": 0x31, "count": 2, "pendings": 25, "times": 1},
                      {"service": 0x31, "count": 4, "pendings": 25, "times": 1}],
    "drop_response": {"service": 0x31, "count": 5, "times": 1},
}


def test_a_pending_ab_activation_is_switched_back_when_the_campaign_rolls_back(make_stack: Any) -> None:
    """The brake's new bank is activated (pending until the next reset) when the update agent dies under
    the job, and body has already failed for good: the engine does not flash the brake again but rolls
    back; the rollback finds the brake still on its old version, resets it, sees the pending activation
    take effect, and switches back."""
    stack = make_stack(start_version=V2, image_size=1024,
                       faults={"body": failing_flash(times=2), "brake": BRAKE_ACTIVATE_UNANSWERED})
    ua = stack.pids(["update_agent"])
    with stack.client("agent") as agent, \
            agent.subscribe("agent.campaign.progress", "agent.campaign.state") as events:
        cid = agent.call("agent.update", {"yes": True})["campaign_id"]
        while True:
            p = stack.next_event(events, "the brake's activate step").params
            assert p.get("state") != "done", f"the campaign ended before the brake's activate step: {p}"
            if p.get("ecu") == "brake" and p.get("step") == "activate":
                break
        body = [r.state for r in stack.journal(cid) if r.key == ("flash", "body")]
        assert body == ["failed", "failed"], f"body had not failed twice before the brake's activate: {body}"
        stack.kill(ua)
    brake = json.loads((stack.scenario.dir / "sim-state" / "brake" / "status.json").read_text())
    assert brake["pending_bank"] is not None and brake["pending_bank"] != brake["active_bank"], brake
    stack.restart()
    record = stack.wait_end(cid)
    assert record["result"] == "rolled_back", record
    assert stack.vehicle_version() == V2
    rows = stack.journal(cid)
    assert [r.state for r in rows if r.key == ("flash", "brake")] == ["interrupted"]  # not flashed again
    rollback = [r for r in rows if r.key == ("rollback", "brake")]
    assert [r.state for r in rollback] == ["done"]
    job = stack.call("update_agent", "update_agent.job.status", {"job_id": rollback[0].result_job})
    # it ran the old version when asked (3.4.0), yet had to switch: the activation was pending
    assert (job["result"]["running_before"], job["result"]["bank_switch"]) == ("3.4.0", "switched"), job
    assert record["ecus"]["brake"]["note"] == "rolled back: bank switched"
    brake = json.loads((stack.scenario.dir / "sim-state" / "brake" / "status.json").read_text())
    assert (brake["pending_bank"], brake["application_valid"]) == (None, True), brake


def test_otactl_says_clearly_when_the_engine_is_not_running(tmp_path: Path) -> None:
    env = {**os.environ, "OTA_RUNTIME_DIR": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "agent.cli.main", "status"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode != 0 and "error: ota-agent is not running" in r.stderr


# SIGKILL of the engine at each journal transition: tests/engine/test_kill_transitions_e2e.py


def test_cancel_while_waiting_for_consent_changes_nothing_and_is_refused_when_idle(make_stack: Any) -> None:
    stack = make_stack(start_version=V2, stack_overrides={"hmi_agent": {"policy": "ask"}})
    with stack.client("agent") as agent, agent.subscribe("agent.campaign.state") as events:
        cid = agent.call("agent.update", {})["campaign_id"]
        while events.get(timeout=CAMPAIGN_TIMEOUT).params["state"] != "consent":
            pass
        cancel = stack.otactl("cancel")
        assert cancel.returncode == 0 and "before OTA mode" in cancel.stdout, cancel.stdout + cancel.stderr
    record = stack.wait_end(cid)
    assert record["result"] == "cancelled"
    assert stack.vehicle_version() == V2
    steps = {s for c, s, _e, _st in stack.journal_rows() if c == cid}
    assert not steps & {"ota_mode_on", "flash"}
    again = stack.otactl("cancel")
    assert again.returncode != 0 and "no campaign is running" in again.stderr
    watch = stack.otactl("watch")
    assert watch.returncode == 0 and "idle" in watch.stdout


def test_sigkill_of_the_update_agent_mid_flash_reflashes_that_ecu_and_succeeds(make_stack: Any) -> None:
    stack = make_stack(start_version=V2)
    with stack.client("update_agent") as ua:
        ua_pid = ua.call("daemon.ping")["pid"]
    with stack.client("agent") as agent, agent.subscribe("agent.campaign.progress") as progress:
        cid = agent.call("agent.update", {"yes": True})["campaign_id"]
        while True:
            p = progress.get(timeout=CAMPAIGN_TIMEOUT).params
            if p["ecu"] is not None and p["bytes_done"] > 0:
                os.kill(ua_pid, signal.SIGKILL)  # mid-transfer of an ECU
                break
    stack.sup.up()  # the update agent comes back; its job reports failed/Interrupted
    record = stack.wait_end(cid)
    assert record["result"] == "succeeded", record
    assert stack.vehicle_version() == V3
    attempts = {e: s["attempts"] for e, s in record["ecus"].items()}
    assert max(attempts.values()) >= 2  # the interrupted ECU was flashed again from the start


def test_install_from_a_release_directory_verifies_it_offline(make_stack: Any) -> None:
    import shutil

    stack = make_stack(start_version=V2, encrypt=False)
    repo = stack.scenario.dir / "image-repo"
    # a tampered copy: one byte of brake's image changed after signing
    bad = stack.scenario.dir / "tampered-repo"
    shutil.copytree(repo, bad)
    target = next((bad / "targets" / "brake").glob("*.brake-3.5.0.hex"))
    data = bytearray(target.read_bytes())
    data[20] ^= 0x01
    target.write_bytes(bytes(data))
    refused = stack.otactl("install", str(bad), "--release", "bv-1.2.0", "--yes")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "check failed" in refused.stdout and "VerificationError" in refused.stdout
    assert stack.vehicle_version() == V2

    done = stack.otactl("install", str(repo), "--release", "bv-1.2.0", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert stack.vehicle_version() == V3
