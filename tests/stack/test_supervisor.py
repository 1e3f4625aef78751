"""The bench supervisor with real daemon processes: up, status, down; failures say why."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.errors import TransportError
from agent.ipc.sync import SyncClient
from agent.runtime.supervisor import DAEMONS, Supervisor, select_daemons
from bench.scenario import PARKED, Scenario

pytestmark = pytest.mark.e2e


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "(zombie)" not in status


def otactl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_up_status_down_with_every_installed_daemon(scenario: Scenario) -> None:
    env = scenario.env
    up = otactl(env, "daemons", "up", "--config", str(scenario.stack_config), "--json")
    try:
        reports = {r["daemon"]: r for r in json.loads(up.stdout)["daemons"]}
        for spec in DAEMONS:  # installed ones start, the others are reported missing by name
            expected = "started" if spec.module() is not None else "missing"
            assert reports[spec.name]["state"] == expected, (spec.name, up.stdout, up.stderr)
        assert up.returncode == (0 if all(s.module() for s in DAEMONS) else 1)
        started = {n: r["pid"] for n, r in reports.items() if r["state"] == "started"}
        assert {"update_agent", "dmclient", "system_agent", "hmi_agent"} <= set(started)
        record = json.loads((scenario.runtime_dir / "supervisor.json").read_text())
        assert {n: e["pid"] for n, e in record["daemons"].items()} == started
        for name in started:
            with SyncClient(scenario.runtime_dir / f"{name}.sock", daemon=name) as c:
                assert c.call("daemon.ping")["pid"] == started[name]

        again = otactl(env, "daemons", "up", "--config", str(scenario.stack_config), "--json")
        assert {r["daemon"]: r["state"] for r in json.loads(again.stdout)["daemons"]
                if r["daemon"] in started} == dict.fromkeys(started, "running")

        status = otactl(env, "daemons", "status", "--config", str(scenario.stack_config), "--json")
        states = {r["daemon"]: r for r in json.loads(status.stdout)["daemons"]}
        assert all(states[n]["state"] == "running" and states[n]["pid"] == pid for n, pid in started.items())
    finally:
        down = otactl(env, "daemons", "down", "--config", str(scenario.stack_config), "--json")
    assert down.returncode == 0, down.stderr
    stopped = {r["daemon"]: r["state"] for r in json.loads(down.stdout)["daemons"]}
    assert stopped == dict.fromkeys(started, "stopped")
    assert not any(alive(pid) for pid in started.values())
    assert not (scenario.runtime_dir / "supervisor.json").exists()
    status = otactl(env, "daemons", "status", "--config", str(scenario.stack_config), "--json")
    assert status.returncode == 1
    assert {r["daemon"]: r["state"] for r in json.loads(status.stdout)["daemons"]
            if r["daemon"] in started} == dict.fromkeys(started, "not-running")


def test_daemon_failing_at_start_is_reported_with_its_log(scenario: Scenario, tmp_path: Path) -> None:
    doc = yaml.safe_load(scenario.stack_config.read_text())
    doc["hmi_agent"]["policy"] = "always"
    bad = tmp_path / "stack.yaml"
    bad.write_text(yaml.safe_dump(doc))
    sup = Supervisor(bad, env=scenario.env, daemons=select_daemons("system_agent", "hmi_agent"))
    try:
        with pytest.raises(TransportError, match=r"ota-hmi-agent did not get ready: exited with code 2") as info:
            sup.up()
        assert "policy" in str(info.value)  # the log's tail names the bad key
        # all or nothing: the system agent, started before it, was stopped again
        assert [(r.name, r.state) for r in sup.status()] == [("system_agent", "not-running"),
                                                             ("hmi_agent", "not-running")]
    finally:
        sup.down()


def test_ota_mode_lease_expires_when_not_renewed(scenario: Scenario,
                                                 supervisor_for: Callable[..., Supervisor]) -> None:
    """The engine 'crashes' (never renews): the system agent leaves OTA mode by itself."""
    supervisor_for("update_agent", "system_agent").up()
    with SyncClient(scenario.runtime_dir / "system_agent.sock", daemon="system_agent") as sa, \
            sa.subscribe("system_agent.ota_mode.changed") as changes:
        entered = sa.call("system_agent.ota_mode.enter", {"campaign_id": "c-lease", "lease_s": 1.0})
        assert entered["active"] and entered["errors"] == []  # the update agent sent them on the bench bus
        on = changes.get(timeout=10).params
        assert (on["active"], on["campaign_id"], on["reason"]) == (True, "c-lease", "enter")
        off = changes.get(timeout=20).params
        assert (off["active"], off["campaign_id"], off["reason"]) == (False, "c-lease", "lease_expired")
        status = sa.call("system_agent.ota_mode.status")
        assert not status["active"] and status["errors"] == []


def test_preconditions_follow_the_bench_vehicle(scenario: Scenario,
                                               supervisor_for: Callable[..., Supervisor]) -> None:
    """The bench state file drives the vehicle simulator; the system agent reads its signals from the bus.

    (Issue 7: the system agent no longer reads the file itself; a removed file silences the simulator,
    so the signals go stale and count as unknown.)"""
    supervisor_for("system_agent").up()

    def verdict_once(sa: SyncClient, verdicts: Any, ok: bool) -> dict[str, Any]:
        verdict: dict[str, Any] = sa.call("system_agent.preconditions.check", {"phase": "install"})
        while verdict["ok"] != ok:
            event = verdicts.get(timeout=20).params
            verdict = event if event["phase"] == "install" else verdict
        return verdict

    try:
        with SyncClient(scenario.runtime_dir / "system_agent.sock", daemon="system_agent") as sa, \
                sa.subscribe("system_agent.preconditions.verdict") as verdicts:
            verdict_once(sa, verdicts, True)
            scenario.set_vehicle_state({**PARKED, "vehicle_speed": 30, "gear": "D"})
            verdict = verdict_once(sa, verdicts, False)
            assert {(f["rule"], json.dumps(f["value"])) for f in verdict["failed"]} == \
                {("parked", "30"), ("gear", '"D"')}
            assert sa.call("system_agent.preconditions.check", {"phase": "download"})["ok"]
            os.unlink(scenario.state_file)
            gone = sa.call("system_agent.preconditions.check", {"phase": "install"})
            while {f["rule"] for f in gone["failed"]} != {"parked", "gear", "ignition", "battery"}:
                event = verdicts.get(timeout=20).params
                gone = event if event["phase"] == "install" else gone
            assert not gone["ok"] and "stale (counted as unknown)" in gone["state_source"]
    finally:
        scenario.set_vehicle_state(PARKED)


def test_down_kills_a_daemon_that_ignores_sigterm(scenario: Scenario,
                                                  supervisor_for: Callable[..., Supervisor]) -> None:
    """A hung daemon (stopped with SIGSTOP: SIGTERM stays pending) is SIGKILLed after the grace period."""
    sup = supervisor_for("hmi_agent")
    (report,) = sup.up()
    assert report.pid is not None
    said: list[str] = []
    hung = Supervisor(scenario.stack_config, env=scenario.env, daemons=select_daemons("hmi_agent"), grace=1.0,
                      say=said.append)
    os.kill(report.pid, signal.SIGSTOP)
    (down,) = hung.down()
    assert (down.state, down.pid) == ("killed", report.pid)
    assert "SIGKILL" in down.detail and any("killing" in line for line in said)
    assert not alive(report.pid)


def test_ota_mode_survives_a_system_agent_restart(scenario: Scenario,
                                                  supervisor_for: Callable[..., Supervisor]) -> None:
    supervisor_for("update_agent").up()
    system = supervisor_for("system_agent")
    system.up()
    sock = scenario.runtime_dir / "system_agent.sock"
    with SyncClient(sock, daemon="system_agent") as sa:
        assert sa.call("system_agent.ota_mode.enter", {"campaign_id": "c-restart", "lease_s": 60})["active"]
    system.down()
    system.up()  # a new process: the lease still runs, so OTA mode is restored
    with SyncClient(sock, daemon="system_agent") as sa:
        status = sa.call("system_agent.ota_mode.status")
        assert (status["active"], status["campaign_id"]) == (True, "c-restart")
        assert 0 < status["lease_remaining_s"] <= 60
        assert not sa.call("system_agent.ota_mode.exit", {"campaign_id": "c-restart"})["active"]
