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

from agent.errors import OtaTimeoutError
from agent.ipc.sync import SyncClient
from agent.runtime.supervisor import Supervisor
from bench.scenario import SW_BASELINE, V1, V2, V3, Scenario, ScenarioOptions, failing_flash

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

CAMPAIGN_TIMEOUT = 180.0


class Stack:
    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.sup = Supervisor(scenario.stack_config, env=scenario.env, ready_timeout=60, grace=10)

    def client(self, daemon: str) -> SyncClient:
        client = SyncClient.for_daemon(daemon, runtime_dir=self.scenario.runtime_dir, call_timeout=120.0)
        client.connect()
        return client

    def otactl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "agent.cli.main", *args], env=self.scenario.env,
                              capture_output=True, text=True, timeout=CAMPAIGN_TIMEOUT + 60)

    def vehicle_version(self) -> str | None:
        with self.client("update_agent") as ua:
            match = ua.call("update_agent.baseline.match", {"software_baseline": str(SW_BASELINE), "refresh": True})
        return match.get("vehicle_version") if match["matched"] else None

    def journal_rows(self) -> list[tuple[Any, ...]]:
        db = sqlite3.connect(self.scenario.dir / "vehicle" / "journal.db")
        try:
            return db.execute("SELECT campaign, step, ecu, state FROM steps ORDER BY id").fetchall()
        finally:
            db.close()

    def log_tails(self, lines: int = 25) -> str:
        """The end of every daemon's and bench process's log, for a failure message."""
        out = []
        for log in sorted([*self.scenario.logs.glob("*.log"), *(self.scenario.runtime_dir / "logs").glob("*.log")]):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {log.name}\n" + "\n".join(tail))
        return "\n".join(out)

    def wait_end(self, campaign_id: str) -> dict[str, Any]:
        """Wait (on events, with a timeout) until the campaign has ended; its history record."""
        try:
            return self._wait_end(campaign_id)
        except OtaTimeoutError as e:
            raise AssertionError(f"campaign {campaign_id} did not end: {e}\n{self.log_tails()}") from e

    def _wait_end(self, campaign_id: str) -> dict[str, Any]:
        # any state or progress event shows the campaign alive; CAMPAIGN_TIMEOUT s of silence fails
        with self.client("agent") as agent, \
                agent.subscribe("agent.campaign.state", "agent.campaign.progress") as events:
            while True:
                record = next(c for c in agent.call("agent.history", {"limit": 20})["campaigns"]
                              if c["id"] == campaign_id)
                if record["state"] == "ended":
                    return record
                event = events.get(timeout=CAMPAIGN_TIMEOUT)
                while not (event.params["campaign_id"] == campaign_id and event.params.get("state") == "done"):
                    event = events.get(timeout=CAMPAIGN_TIMEOUT)


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
    # the last check found nothing more to do
    assert campaigns[0]["result"] == "nothing"
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


def test_otactl_says_clearly_when_the_engine_is_not_running(tmp_path: Path) -> None:
    env = {**os.environ, "OTA_RUNTIME_DIR": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "agent.cli.main", "status"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode != 0 and "error: ota-agent is not running" in r.stderr


@pytest.mark.parametrize("phase", ["download", "ota_mode_on", "flash", "report"])
def test_sigkill_of_the_engine_then_restart_ends_on_a_whole_vehicle_version(make_stack: Any, phase: str) -> None:
    stack = make_stack(start_version=V2)
    with stack.client("agent") as agent, agent.subscribe("agent.campaign.state") as events:
        pid = agent.call("daemon.ping")["pid"]
        cid = agent.call("agent.update", {"yes": True})["campaign_id"]
        while True:
            event = events.get(timeout=CAMPAIGN_TIMEOUT)
            assert event.params["state"] != "done", f"the campaign ended before {phase}: {event.params}"
            if event.params["state"] == phase:
                os.kill(pid, signal.SIGKILL)
                break
    stack.sup.up()  # the supervisor starts what is not running: the engine takes the campaign up
    record = stack.wait_end(cid)
    assert record["attempts"] >= 2
    version = stack.vehicle_version()
    assert version in (V2, V3)
    assert (record["result"], version) in (("succeeded", V3), ("rolled_back", V2))
    rows = [r for r in stack.journal_rows() if r[0] == cid]
    assert all(state != "started" for *_, state in rows)
    # no ECU is left between two baselines and OTA mode is off
    with stack.client("system_agent") as sa:
        assert sa.call("system_agent.ota_mode.status")["active"] is False


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
