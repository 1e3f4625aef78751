"""The system agent with the daemons and the vehicle simulator on one bench: scenarios, verdicts, outcomes.

One bench (:mod:`bench.scenario`) and one set of daemons for the module; each test switches
the vehicle simulator's scripted scenario (:meth:`Scenario.start_vehicle`). The evidence is
what a user would see: the campaign's result and detail, the journal, the vehicle version
read from the ECUs, and the frames on the bench bus (an observer node decodes them with
the DBC).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any

import can
import pytest

from bench.canbus.paths import ENV_DIR
from bench.scenario import DBC, V1, V2, Scenario, ScenarioOptions
from bench.vehicle.scenarios import PARKED, SCENARIOS
from tests.engine.killkit import sigkill
from tests.engine.test_engine_e2e import CAMPAIGN_TIMEOUT, Stack
from update_agent.version_frame import load_dbc

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

DB = load_dbc(DBC)
OTA_MODE = DB.get_message_by_name("OTA_MODE")
class BusObserver:
    """A node on the bench bus recording every decoded frame of the vehicle messages (receive time, name, signals)."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.bus = can.Bus(interface="benchhub", channel=channel)
        self.frames: list[tuple[float, str, dict[str, Any]]] = []
        self._lock = threading.Condition()
        self._marks: dict[int, threading.Event] = {}
        self.notifier = can.Notifier(self.bus, [self._on], timeout=0.1)

    def _on(self, msg: can.Message) -> None:
        if msg.arbitration_id in self._marks:
            self._marks[msg.arbitration_id].set()
            return
        try:
            m = DB.get_message_by_frame_id(msg.arbitration_id)
        except KeyError:
            return
        if m.name in ("OTA_MODE", "HEADUNIT_STATUS", "BODY_STATUS", "GATEWAY_STATUS"):
            decoded = m.decode(bytes(msg.data))
            assert isinstance(decoded, dict)
            with self._lock:
                self.frames.append((msg.timestamp, m.name, dict(decoded)))
                self._lock.notify_all()

    def wait_for(self, name: str, signal: str, value: str, timeout: float = 30.0) -> float:
        """Wait until a ``name`` frame with ``signal`` == ``value`` arrives (or has); its receive time."""
        def found() -> float | None:
            return next((t for t, n, d in self.frames if n == name and str(d.get(signal)) == value), None)

        with self._lock:
            assert self._lock.wait_for(lambda: found() is not None, timeout), \
                f"no {name} frame with {signal}={value} within {timeout} s"
            at = found()
        assert at is not None
        return at

    def of(self, name: str) -> list[tuple[float, dict[str, Any]]]:
        with self._lock:
            return [(t, d) for t, n, d in self.frames if n == name]

    def sync(self) -> float:
        """Send a marker frame and wait until it came back through the hub: every frame sent before it
        has been recorded. Returns the time it came back."""
        marker_id = 0x7FF
        event = threading.Event()
        self._marks[marker_id] = event
        peer = can.Bus(interface="benchhub", channel=self.channel)
        try:
            peer.send(can.Message(arbitration_id=marker_id, is_extended_id=False, data=b"\x01"))
            assert event.wait(10), "the marker frame did not come back through the hub"
        finally:
            peer.shutdown()
            del self._marks[marker_id]
        return time.time()

    def close(self) -> None:
        self.notifier.stop()
        self.bus.shutdown()


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    scenario = Scenario(ScenarioOptions(stack_overrides={"agent": {"ota_mode_lease": 3}}))
    scenario.up()
    stack = Stack(scenario)
    try:
        stack.sup.up(parallel=True)
        yield stack
    finally:
        try:
            stack.sup.down()
        finally:
            scenario.down()


@pytest.fixture
def body_bus(stack: Stack) -> Iterator[BusObserver]:
    old = os.environ.get(ENV_DIR)
    os.environ[ENV_DIR] = stack.scenario.env[ENV_DIR]
    observer = BusObserver("body")
    try:
        yield observer
    finally:
        observer.close()
        if old is None:
            os.environ.pop(ENV_DIR, None)
        else:
            os.environ[ENV_DIR] = old


def wait_verdict(stack: Stack, ok: bool) -> dict[str, Any]:
    """The install verdict once it is ``ok`` (events, with a timeout that fails loudly)."""
    with stack.client("system_agent") as sa, sa.subscribe("system_agent.preconditions.verdict") as verdicts:
        verdict: dict[str, Any] = sa.call("system_agent.preconditions.check", {"phase": "install"})
        while verdict["ok"] != ok:
            event = verdicts.get(timeout=20).params
            if event["phase"] == "install":
                verdict = event
        return verdict


def update(stack: Stack) -> dict[str, Any]:
    with stack.client("agent") as agent:
        cid = agent.call("agent.update", {"yes": True})["campaign_id"]
    return stack.wait_end(cid)


def rows(stack: Stack, cid: str) -> list[tuple[str, str | None, str]]:
    return [(s, e, st) for c, s, e, st in stack.journal_rows() if c == cid]


def step_times(stack: Stack, cid: str) -> list[tuple[str, str | None, float, float]]:
    db = sqlite3.connect(stack.scenario.dir / "vehicle" / "journal.db")
    try:
        return db.execute("SELECT step, ecu, started, ended FROM steps WHERE campaign = ? ORDER BY id",
                          (cid,)).fetchall()
    finally:
        db.close()


def test_stale_signals_never_read_as_safe(stack: Stack) -> None:
    assert wait_verdict(stack, True)["ok"]
    stack.scenario.set_vehicle_state({})  # the vehicle goes silent: the last values were all "safe"
    verdict = wait_verdict(stack, False)
    assert {f["rule"] for f in verdict["failed"]} == {"parked", "gear", "ignition", "battery"}
    assert all(f["value"] in (None, {"battery_voltage": None, "state_of_charge": None}) for f in verdict["failed"])
    assert "stale (counted as unknown)" in verdict["state_source"]
    with stack.client("system_agent") as sa, sa.subscribe("system_agent.state.changed") as changes:
        state = sa.call("system_agent.state.get")
        while set(state["values"]) != {"network_reachable"}:  # the doors (200 ms cycle) go stale last
            state = changes.get(timeout=20).params
        state = sa.call("system_agent.state.get")
    assert state["values"] == {"network_reachable": True}  # the backend probe; no vehicle signal is left
    assert state["signals"]["vehicle_speed"]["stale"] and state["signals"]["vehicle_speed"]["value"] == 0


def test_driving_no_flash_starts_and_the_result_names_the_rules(stack: Stack, body_bus: BusObserver) -> None:
    stack.scenario.set_vehicle_state(SCENARIOS["driving"].start)
    wait_verdict(stack, False)
    record = update(stack)
    assert record["result"] == "failed", record
    assert "preconditions not met: parked (seen 50, wants vehicle_speed == 0)" in record["detail"]
    assert "gear (seen 'D'" in record["detail"]
    steps = {s for s, _e, _st in rows(stack, record["id"])}
    assert not steps & {"ota_mode_on", "flash"}
    body_bus.sync()
    assert body_bus.of("OTA_MODE") == []  # OTA mode was never entered
    assert stack.vehicle_version() == V1


def test_low_battery_during_a_flash_finishes_it_then_rolls_back_and_stops(stack: Stack,
                                                                          body_bus: BusObserver) -> None:
    stack.scenario.start_vehicle("low_battery_mid_update")
    wait_verdict(stack, True)
    record = update(stack)
    assert record["result"] == "rolled_back", record
    assert record["detail"].startswith("preconditions violated during installation: battery (seen "
                                       "{'battery_voltage': 11.4, 'state_of_charge': 25}"), record["detail"]
    journal = rows(stack, record["id"])
    # the flash running when the battery dropped finished (not cut short), then the engine was rolled back
    assert [st for s, e, st in journal if (s, e) == ("flash", "engine")] == ["done"]
    assert [st for s, e, st in journal if (s, e) == ("rollback", "engine")] == ["done"]
    assert ("watch", None, "failed") in journal
    assert stack.vehicle_version() == V1
    ended = body_bus.sync()
    # the OTA-mode frame was on the bus from before the flash started until after the rollback ended
    times = {(s, e): (a, b) for s, e, a, b in step_times(stack, record["id"])}
    ota = [t for t, _ in body_bus.of("OTA_MODE")]
    assert ota and ota[0] < times[("flash", "engine")][0] and ota[-1] > times[("rollback", "engine")][1]
    assert ota[-1] < times[("ota_mode_off", None)][1] < ended
    with stack.client("system_agent") as sa:
        assert sa.call("system_agent.ota_mode.status")["active"] is False
    assert not stack.scenario.power_hold_file.exists()


def test_ignition_off_mid_update_holds_power_until_the_ecu_is_safe(stack: Stack, body_bus: BusObserver) -> None:
    stack.scenario.start_vehicle("ignition_off_mid_update")
    wait_verdict(stack, True)
    record = update(stack)
    assert record["result"] == "rolled_back", record
    assert "preconditions violated during installation: ignition (seen 'off'" in record["detail"]
    journal = rows(stack, record["id"])
    assert [st for s, e, st in journal if (s, e) == ("flash", "engine")] == ["done"]
    assert stack.vehicle_version() == V1
    times = {(s, e): (a, b) for s, e, a, b in step_times(stack, record["id"])}
    body_bus.wait_for("GATEWAY_STATUS", "PowerState", "asleep")  # the gateway noticed the hold released
    events = json.loads(stack.scenario.vehicle_status.read_text())["events"]
    held = [t for t, e in events if e == "gateway power held"]
    asleep = [t for t, e in events if e == "gateway power asleep"]
    # the gateway held power (ignition off, keep-awake) from before the flash ended until OTA mode ended;
    # only then did the vehicle go to sleep
    assert held and held[0] < times[("flash", "engine")][1], events
    assert asleep and asleep[0] > times[("rollback", "engine")][1] and asleep[0] >= times[("ota_mode_off", None)][0]


def test_parked_install_broadcasts_ota_mode_and_the_nodes_react(stack: Stack, body_bus: BusObserver) -> None:
    stack.scenario.set_vehicle_state(PARKED)  # (the last scenario's trigger has fired: it stays quiet)
    wait_verdict(stack, True)
    record = update(stack)
    assert record["result"] == "succeeded", record
    assert stack.vehicle_version() == V2
    ended = body_bus.sync()
    times = {(s, e): (a, b) for s, e, a, b in step_times(stack, record["id"])}
    ota = [t for t, _ in body_bus.of("OTA_MODE")]
    assert ota[0] < times[("flash", "engine")][0] and ota[-1] > times[("flash", "engine")][1]
    assert ota[-1] < ended
    # the head unit dimmed and the body controller kept its battery lock while the frame was on the bus
    dimmed = [t for t, d in body_bus.of("HEADUNIT_STATUS") if d["DisplayDimmed"] == 1]
    locked = [t for t, d in body_bus.of("BODY_STATUS") if d["BatteryLock"] == 1]
    assert dimmed and locked and ota[0] <= dimmed[0] and ota[0] <= locked[0]


def test_a_restarted_system_agent_answers_on_the_vehicle_not_on_its_first_silence(stack: Stack) -> None:
    """Asked the moment it is back (a power cut, a crash), the system agent waits for the frames of one
    cycle instead of failing every rule on signals it has not heard yet."""
    wait_verdict(stack, True)
    pid = stack.sup.running_pid("system_agent")
    assert pid is not None
    assert not sigkill({"system_agent": pid})
    stack.sup.up()
    with stack.client("system_agent") as sa:
        verdict = sa.call("system_agent.preconditions.check", {"phase": "install"})
        download = sa.call("system_agent.preconditions.check", {"phase": "download"})
    assert verdict["ok"], verdict
    assert download["ok"], download  # the backend probe answered first


def test_ota_mode_frame_stops_after_the_engine_is_killed(stack: Stack, body_bus: BusObserver) -> None:
    """The engine dies mid-install: it stops renewing the lease; the system agent leaves OTA mode by itself,
    the frame stops and the power hold is released. (Last test: the engine stays down.)"""
    wait_verdict(stack, True)
    with stack.client("agent") as agent, agent.subscribe("agent.campaign.state") as events, \
            stack.client("system_agent") as sa, sa.subscribe("system_agent.ota_mode.changed") as modes:
        pid = agent.call("daemon.ping")["pid"]
        agent.call("agent.update", {"yes": True})
        while (state := events.get(timeout=CAMPAIGN_TIMEOUT).params)["state"] != "flash":
            assert state["state"] != "done", state
        assert stack.scenario.power_hold_file.exists()
        os.kill(pid, signal.SIGKILL)
        killed = body_bus.sync()
        change = modes.get(timeout=30).params
        while change["active"]:
            change = modes.get(timeout=30).params
        assert change["reason"] == "lease_expired"
    after = body_bus.sync()
    ota = [t for t, _ in body_bus.of("OTA_MODE")]
    assert ota and ota[0] < killed < ota[-1]  # still sent after the kill, until the lease ran out
    assert not [t for t in ota if t > after]
    assert not stack.scenario.power_hold_file.exists()
