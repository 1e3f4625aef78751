"""OTA mode under a lease: entry / exit requests, renewal, expiry, restore after restart (clock injected)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from agent.errors import TransportError, VehicleStateError
from system_agent.ota_mode import OtaMode


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Bus:
    """Records the functional requests; can be made to fail, or to have ECUs answer otherwise than
    positively (``answers``: request -> the non-positive answers, as ``update_agent.functional`` gives them)."""

    def __init__(self, answers: dict[str, list[dict[str, Any]]] | None = None) -> None:
        self.sent: list[str] = []
        self.down = False
        self.answers = answers or {}

    async def __call__(self, request: str) -> dict[str, Any]:
        if self.down:
            raise TransportError("ota-update-agent is not running")
        self.sent.append(request)
        return {"buses": ["body"], "requests": [], "answers": self.answers.get(request, [])}


def answer(outcome: str, request: str, nrc: int | None = None, nrc_name: str | None = None) -> dict[str, Any]:
    return {"bus": "body", "ecu": "body", "request": request, "outcome": outcome, "nrc": nrc, "nrc_name": nrc_name,
            "waited_s": 0.05}


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(tmp_path: Path, clock: Clock, bus: Bus) -> OtaMode:
    return OtaMode(tmp_path / "ota_mode.json", bus, clock=clock, max_lease=600)


def test_enter_disables_communication_and_dtcs_exit_restores(tmp_path: Path, clock: Clock) -> None:
    bus = Bus()
    mode = make(tmp_path, clock, bus)
    assert run(mode.enter("c1", 30)) is True
    assert bus.sent == ["communication_control_disable", "dtc_setting_off"]
    assert mode.to_json()["active"] and mode.remaining() == 30
    assert run(mode.exit("c1")) is True
    assert bus.sent[2:] == ["dtc_setting_on", "communication_control_enable"]
    assert not mode.to_json()["active"]
    assert run(mode.exit("c1")) is False  # nothing to undo twice


def test_other_campaign_is_refused_same_campaign_renews(tmp_path: Path, clock: Clock) -> None:
    bus = Bus()
    mode = make(tmp_path, clock, bus)
    run(mode.enter("c1", 30))
    with pytest.raises(VehicleStateError, match="held by campaign 'c1'"):
        run(mode.enter("c2", 30))
    with pytest.raises(VehicleStateError, match="held by"):
        run(mode.renew("c2", 30))
    clock.now += 20
    assert run(mode.enter("c1", 30)) is False  # renewal, no second disable
    assert bus.sent == ["communication_control_disable", "dtc_setting_off"]
    assert mode.remaining() == 30
    with pytest.raises(VehicleStateError, match="lease"):
        run(mode.renew("c1", 10_000))


def test_lease_expiry_exits(tmp_path: Path, clock: Clock) -> None:
    bus = Bus()
    mode = make(tmp_path, clock, bus)
    run(mode.enter("c1", 30))
    clock.now += 29.9
    assert run(mode.expire()) is False and mode.state.active
    run(mode.renew("c1", 30))
    clock.now += 29.9
    assert run(mode.expire()) is False
    clock.now += 0.2
    assert run(mode.expire()) is True
    assert not mode.state.active
    assert bus.sent[-2:] == ["dtc_setting_on", "communication_control_enable"]


def test_restart_restores_running_lease_and_ends_expired_one(tmp_path: Path, clock: Clock) -> None:
    run(make(tmp_path, clock, Bus()).enter("c1", 30))
    # the system agent restarts within the lease: OTA mode kept, requests sent again
    bus = Bus()
    again = make(tmp_path, clock, bus)
    assert again.state.active and again.state.campaign_id == "c1"
    assert run(again.restore()) == "restored"
    assert bus.sent == ["communication_control_disable", "dtc_setting_off"]
    # ...or after it: OTA mode ended at start
    clock.now += 31
    bus = Bus()
    late = make(tmp_path, clock, bus)
    assert run(late.restore()) == "ended_after_restart"
    assert bus.sent == ["dtc_setting_on", "communication_control_enable"]
    assert run(make(tmp_path, clock, Bus()).restore()) is None  # persisted as inactive


def test_unreachable_update_agent_is_reported_and_mode_still_ends(tmp_path: Path, clock: Clock) -> None:
    bus = Bus()
    mode = make(tmp_path, clock, bus)
    run(mode.enter("c1", 30))
    bus.down = True
    assert run(mode.exit("c1")) is True
    assert not mode.state.active
    assert [e.split(":")[0] for e in mode.to_json()["errors"]] == ["dtc_setting_on", "communication_control_enable"]


def test_corrupt_state_file_is_treated_as_expired(tmp_path: Path, clock: Clock) -> None:
    (tmp_path / "ota_mode.json").write_text("{not json")
    bus = Bus()
    mode = make(tmp_path, clock, bus)
    assert run(mode.restore()) == "ended_after_restart"
    assert bus.sent == ["dtc_setting_on", "communication_control_enable"]


def test_an_ecu_refusing_to_go_quiet_undoes_the_entry_naming_ecu_and_nrc(tmp_path: Path, clock: Clock) -> None:
    bus = Bus({"communication_control_disable": [answer("negative", "280301", 0x22, "conditionsNotCorrect")]})
    mode = make(tmp_path, clock, bus)
    assert run(mode.enter("c1", 30)) is True
    # DTC setting is not switched off after the refusal; what was changed is undone
    assert bus.sent == ["communication_control_disable", "dtc_setting_on", "communication_control_enable"]
    state = mode.to_json()
    assert not state["active"] and state["campaign_id"] == "c1"
    assert state["errors"] == ["communication_control_disable: body (bus body) refused 280301: "
                               "NRC 0x22 conditionsNotCorrect"]
    assert not make(tmp_path, clock, Bus()).state.active  # persisted inactive: nothing to end after a restart
    assert run(mode.exit("c1")) is False  # the engine's ota_mode_off then has nothing left to do


def test_an_ecu_not_answering_is_reported_and_the_entry_holds(tmp_path: Path, clock: Clock) -> None:
    bus = Bus({"dtc_setting_off": [answer("no_answer", "8502")]})
    mode = make(tmp_path, clock, bus)
    assert run(mode.enter("c1", 30)) is True
    assert bus.sent == ["communication_control_disable", "dtc_setting_off"]
    assert mode.to_json()["active"]
    assert mode.to_json()["errors"] == ["dtc_setting_off: body (bus body): no answer to 8502 within 0.050 s"]
