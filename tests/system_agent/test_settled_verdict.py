"""The system agent's verdict right after a start: it waits for the first frames of signals not heard yet
(a restart alone never fails a rule), and fails on them once they stayed silent for one full timeout.

In process, on the real :class:`SystemDaemon` verdict path and :class:`CanStateSource` model; the frames
are handed to the source as its bus listener would (no bus here, so their arrival is under test control).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import can
import yaml

from agent.config.vehicle import VehicleConfig
from agent.runtime.config import load_config
from system_agent.can_source import CanStateSource
from system_agent.config import SystemConfig
from system_agent.daemon import SystemDaemon, _set_from_thread
from system_agent.preconditions import Verdict
from system_agent.signals import DEFAULT_SIGNALS
from system_agent.vehicle_state import VehicleState
from update_agent.version_frame import load_dbc

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
DBC_PATH = CONFIGS / "bench-vehicle.dbc"
DBC = load_dbc(DBC_PATH)
PARKED: dict[str, dict[str, Any]] = {"VEHICLE_DYNAMICS": {"VehicleSpeed": 0, "Gear": "P"},
          "BATTERY_STATUS": {"BatteryVoltage": 12.8, "StateOfCharge": 80, "Charging": 0},
          "POWER_MODE": {"Ignition": "on"},
          "DOOR_STATUS": {"DoorDriver": 0, "DoorPassenger": 0, "DoorRearLeft": 0, "DoorRearRight": 0, "Tailgate": 0}}


def daemon(tmp_path: Path) -> SystemDaemon:
    rules = yaml.safe_load((CONFIGS / "bench-stack.yaml").read_text())["system_agent"]["rules"]
    path = tmp_path / "stack.yaml"
    path.write_text(yaml.safe_dump({"system_agent": {"rules": rules}}))
    return SystemDaemon(load_config(SystemConfig, "system_agent", path), env={})


def frames(state: dict[str, dict[str, Any]]) -> list[can.Message]:
    out = []
    for name, signals in state.items():
        m = DBC.get_message_by_name(name)
        out.append(can.Message(arbitration_id=m.frame_id, data=m.encode(signals), is_extended_id=False))
    return out


async def verdict_with(tmp_path: Path, stale_after: float, arriving: list[can.Message]
                       ) -> tuple[bool, VehicleState, Verdict]:
    """Ask for the install verdict on a source just started; once the question waits, ``arriving`` frames
    come in. Returns whether it was still waiting then, and its answer."""
    d = daemon(tmp_path)
    loop = asyncio.get_running_loop()
    source = CanStateSource(VehicleConfig("test", {}, {}), DBC_PATH, DBC, DEFAULT_SIGNALS, stale_factor=5.0,
                            stale_after=stale_after, on_frame=lambda: _set_from_thread(loop, d._state_wake))
    source.start()  # no buses: frames arrive below
    d.source = d.can = source
    watch = asyncio.create_task(d._watch())
    try:
        check = asyncio.create_task(d.settled_verdict("install"))
        for _ in range(3):
            await asyncio.sleep(0)  # let it evaluate and start waiting (no I/O on this path)
        waiting = not check.done()
        for frame in arriving:
            source._receive(frame)
        snapshot, verdict = await asyncio.wait_for(check, 30)
        return waiting, snapshot, verdict
    finally:
        watch.cancel()


def test_a_verdict_asked_before_the_first_frames_waits_for_them_and_passes(tmp_path: Path) -> None:
    waiting, snapshot, verdict = asyncio.run(verdict_with(tmp_path, 30.0, frames(PARKED)))
    assert waiting  # nothing heard: no verdict on the silence of the first cycle
    assert verdict.ok and snapshot.values["gear"] == "P"


def test_a_verdict_that_fails_on_a_known_value_waits_only_for_the_signals_not_heard(tmp_path: Path) -> None:
    driving: dict[str, dict[str, Any]] = {**PARKED, "VEHICLE_DYNAMICS": {"VehicleSpeed": 30, "Gear": "D"}}
    waiting, _, verdict = asyncio.run(verdict_with(tmp_path, 30.0, frames(driving)))
    assert waiting and not verdict.ok  # everything heard once: the answer comes without the full wait
    assert {(f.rule, f.value) for f in verdict.failed} == {("parked", 30), ("gear", "D")}


def test_signals_silent_for_a_full_timeout_after_the_start_fail_as_unknown(tmp_path: Path) -> None:
    waiting, snapshot, verdict = asyncio.run(verdict_with(tmp_path, 0.2, []))
    assert waiting and not verdict.ok
    assert {f.rule for f in verdict.failed} == {"parked", "gear", "ignition", "battery"}
    assert all(f.value in (None, {"battery_voltage": None, "state_of_charge": None}) for f in verdict.failed)
    assert snapshot.problem is not None and "never received" in snapshot.problem
