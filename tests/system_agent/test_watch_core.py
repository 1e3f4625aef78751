"""The campaign core's watch path: a precondition violated before or during installation."""

from __future__ import annotations

from agent.engine.campaign import Action, CampaignCore, Decision, Outcome, Policy
from tests.engine.sim import NEW, OLD, TOPOLOGY, MemJournal, Vehicle

CORE = CampaignCore(TOPOLOGY)
POLICY = Policy(flash_attempts=2, rollback_attempts=2, loop_limit=3)
LOW_BATTERY = "battery (seen {'battery_voltage': 11.4, 'state_of_charge': 25}, wants battery_voltage >= 12.2 or " \
              "state_of_charge >= 40)"


def violate(journal: MemJournal, text: str = LOW_BATTERY) -> None:
    """What the driver journals when the system agent's install verdict fails."""
    idx = journal.begin(Action("watch", None, {"phase": "install"}))
    journal.end(idx, "failed", {"failed": [{"rule": "battery"}]}, text)


def run_until(journal: MemJournal, v: Vehicle, stop: tuple[str, str | None], policy: Policy = POLICY,
              ) -> tuple[Decision, list[tuple[Action, int]]]:
    """Drive the core until it asks to start ``stop``; that step and its siblings are journalled as started."""
    for _ in range(100):
        d = CORE.decide(journal.snapshot(policy))
        assert d.finished is None, d.finished
        started = [(a, journal.begin(a)) for a in d.actions]
        if any(a.key == stop for a, _ in started):
            return d, started
        for a, idx in started:
            journal.end(idx, *v.run(a))
    raise AssertionError(f"{stop} never started")


def finish(journal: MemJournal, v: Vehicle, running: list[tuple[Action, int]], policy: Policy = POLICY,
           ) -> Outcome:
    for a, idx in running:
        journal.end(idx, *v.run(a))
    for _ in range(100):
        d = CORE.decide(journal.snapshot(policy))
        if d.finished is not None:
            return d.finished
        for a in d.actions:
            idx = journal.begin(a)
            journal.end(idx, *v.run(a))
    raise AssertionError("the campaign did not end")


def test_violation_before_ota_mode_ends_failed_without_touching_the_vehicle() -> None:
    journal, v = MemJournal(), Vehicle()
    _, running = run_until(journal, v, ("preconditions", None))
    for a, idx in running:
        journal.end(idx, *v.run(a))
    violate(journal)
    outcome = finish(journal, v, [])
    assert outcome.result == "failed"
    assert outcome.detail.startswith("preconditions violated before OTA mode: battery (seen")
    assert "11.4" in outcome.detail
    assert not any(s in ("ota_mode_on", "flash") for s, _ in v.order)
    assert v.vehicle_version() == OLD


def test_violation_while_entering_ota_mode_starts_no_flash_and_leaves_ota_mode() -> None:
    journal, v = MemJournal(), Vehicle()
    _, running = run_until(journal, v, ("ota_mode_on", None))
    violate(journal)
    assert CORE.decide(journal.snapshot(POLICY), [a.key for a, _ in running]).waiting  # OTA mode entry finishes
    outcome = finish(journal, v, running)
    assert outcome.result == "failed" and "preconditions violated during installation: battery" in outcome.detail
    assert [s for s, _ in v.order if s in ("flash", "rollback")] == []
    assert v.order[-2:] == [("ota_mode_off", None), ("report", None)] and not v.ota_mode


def test_violation_during_a_flash_lets_it_finish_then_rolls_back_every_touched_ecu() -> None:
    """Low battery while engine and body flash (two buses): both finish, brake never starts, both roll back."""
    journal, v = MemJournal(), Vehicle()
    d, running = run_until(journal, v, ("flash", "engine"))
    assert {a.ecu for a, _ in running} == {"engine", "body"}
    violate(journal)
    d = CORE.decide(journal.snapshot(POLICY), [a.key for a, _ in running])
    assert d.waiting and d.ending is not None and "battery" in d.ending  # the running flashes finish first
    outcome = finish(journal, v, running)
    assert outcome.result == "rolled_back"
    assert outcome.detail.startswith("preconditions violated during installation: battery (seen")
    assert ("flash", "brake") not in v.order
    assert sorted(str(e) for s, e in v.order if s == "rollback") == ["body", "engine"]
    assert outcome.ecus == {"engine": "rolled_back", "body": "rolled_back", "brake": "untouched"}
    assert v.vehicle_version() == OLD and not v.ota_mode


def test_violation_during_the_last_flash_still_rolls_back() -> None:
    """Nothing is left to start when the battery drops during the last flash: it finishes, then the
    vehicle goes back to the old version rather than on to verify."""
    journal, v = MemJournal(), Vehicle()
    _, running = run_until(journal, v, ("flash", "brake"))
    assert [a.ecu for a, _ in running] == ["brake"]
    violate(journal)
    outcome = finish(journal, v, running)
    assert outcome.result == "rolled_back" and v.vehicle_version() == OLD
    assert ("verify", None) not in v.order


def test_violation_rolls_back_every_touched_ecu_even_when_the_policy_keeps_installed_ones() -> None:
    policy = Policy(flash_attempts=2, rollback_attempts=2, loop_limit=3, all_or_nothing=False)
    journal, v = MemJournal(), Vehicle()
    _, running = run_until(journal, v, ("flash", "engine"), policy)
    violate(journal)
    outcome = finish(journal, v, running, policy)
    assert outcome.result == "rolled_back" and v.vehicle_version() == OLD


def test_violation_after_the_installation_is_not_acted_on() -> None:
    """Once every ECU is installed (verify running) the campaign completes: rolling back would be worse."""
    journal, v = MemJournal(), Vehicle()
    _, running = run_until(journal, v, ("verify", None))
    violate(journal)
    outcome = finish(journal, v, running)
    assert outcome.result == "succeeded" and v.vehicle_version() == NEW


def test_a_resumed_campaign_still_sees_the_violation() -> None:
    """The violation is in the journal: an engine restarted mid-flash does not start the next ECU."""
    journal, v = MemJournal(), Vehicle()
    run_until(journal, v, ("flash", "engine"))
    violate(journal)
    d = CORE.decide(journal.snapshot(POLICY))  # nothing running: the flashes were interrupted
    assert all(a.step != "flash" for a in d.actions)
    ok, why = CORE.can_cancel(journal.snapshot(POLICY))
    assert not ok and "battery" in why


def test_the_download_step_waits_for_its_preconditions_network_included() -> None:
    """No download starts while the download phase's rules fail (the backend unreachable); the step fails
    naming the rule and the value seen."""
    import asyncio
    from pathlib import Path

    from agent.engine.steps import Steps

    calls: list[str] = []

    async def call(daemon: str, method: str, params: object) -> object:
        calls.append(method)
        assert method == "system_agent.preconditions.check"
        return {"ok": False, "phase": "download", "state_source": "CAN",
                "failed": [{"rule": "network", "value": False, "expected": "network_reachable == True"}]}

    steps = Steps("c1", call, lambda *a: None, baseline=Path("/b.xml"), ota_mode_lease=30, poll_interval=0.01,
                  job_timeout=60)
    outcome = asyncio.run(steps.run(Action("download", None, {"ecus": ["engine"]}),
                                    {"check": {"assignment": {"ecus": []}}}))
    assert outcome.state == "failed"
    assert outcome.error == "download preconditions not met: network (seen False, wants network_reachable == True)"
    assert calls == ["system_agent.preconditions.check"]
