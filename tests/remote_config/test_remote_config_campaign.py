"""Configuration changes in the campaign core (pure): sequenced after the flash, a configuration-only
campaign, a failed change rolling the flashes back, and a later failure putting the configuration back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.engine.campaign import Action, CampaignCore, Policy, Snapshot, StepRow
from tests.engine.sim import NEW, OLD, TOPOLOGY, MemJournal, Vehicle, drive

CORE = CampaignCore(TOPOLOGY)
POLICY = Policy(flash_attempts=2, rollback_attempts=2, loop_limit=3)


@dataclass
class ConfigVehicle(Vehicle):
    """The modelled car, plus configuration values held by the ECUs and an update agent that gates
    ``launch_control`` on the engine running the new software (as the real one does on 1.1.0)."""

    config: dict[str, str] = field(default_factory=lambda: {"launch_control": "off", "drive_mode": "normal"})
    change: dict[str, str] = field(default_factory=lambda: {"launch_control": "on"})
    values: dict[str, str] = field(default_factory=lambda: {"launch_control": "off", "drive_mode": "normal"})
    refuse: bool = False
    crash_configure: bool = False
    #: per configure_rollback: the values it had to write (ECUs not on the journalled ones)
    restored: list[dict[str, str]] = field(default_factory=list)

    def check_result(self) -> dict[str, Any]:
        result = super().check_result()
        result["assignment"]["config"] = {"values": dict(self.change)}
        return result

    def run(self, action: Action) -> tuple[str, dict[str, Any] | None, str | None]:
        if action.step == "config_read":
            self.order.append(("config_read", None))
            return "done", {"values": [{"item": k, "ecu": "engine", "value": self.values[k], "raw": "00", "error": None}
                                       for k in action.data["items"]]}, None
        if action.step == "configure":
            self.order.append(("configure", None))
            values = dict(action.data["values"])
            if "launch_control" in values and self.versions["engine"] != "new":
                return "failed", {"state": "refused"}, "refused before writing: launch_control needs engine 1.1.0"
            if self.refuse:  # the update agent put its own change back
                return "failed", {"state": "rolled_back"}, "speed_limit: body refused the write"
            if self.crash_configure:  # the engine died after the update agent wrote: no result journalled
                self.crash_configure = False
                self.values.update(values)
                return "interrupted", None, "the engine restarted"
            entries = [{"item": k, "ecu": "engine", "previous": self.values[k], "read_back": v, "state": "confirmed"}
                       for k, v in values.items()]
            self.values.update(values)
            return "done", {"state": "applied", "ecus": entries}, None
        if action.step == "configure_rollback":
            self.order.append(("configure_rollback", None))
            written = {p["item"]: p["value"] for p in action.data["previous"] if self.values[p["item"]] != p["value"]}
            self.values.update(written)
            self.restored.append(written)
            return "done", {"state": "rolled_back"}, None
        return super().run(action)


def run(v: Vehicle) -> tuple[Any, MemJournal]:
    journal = MemJournal()
    return drive(CORE, journal, v, POLICY), journal


def steps_of(v: Vehicle) -> list[str]:
    return [s if e is None else f"{s}:{e}" for s, e in v.order]


def test_gated_change_is_applied_after_the_flash_in_the_same_campaign() -> None:
    v = ConfigVehicle()
    outcome, journal = run(v)
    assert outcome.result == "succeeded"
    assert steps_of(v) == ["check", "download", "consent", "preconditions", "ota_mode_on", "flash:engine",
                           "flash:body", "flash:brake", "config_read", "configure", "verify", "ota_mode_off",
                           "report"]
    assert v.values["launch_control"] == "on" and v.vehicle_version() == NEW
    configure = next(r for r in journal.rows if r["step"] == "configure")
    assert configure["data"] == {"values": {"launch_control": "on"}}
    read = next(r for r in journal.rows if r["step"] == "config_read")
    assert read["result"]["values"][0]["value"] == "off"  # journalled before the write: what a rollback restores


def test_configuration_campaign_has_no_download_flash_or_version_to_verify() -> None:
    v = ConfigVehicle(ecus=(), change={"drive_mode": "sport"})
    outcome, _ = run(v)
    assert outcome.result == "succeeded", outcome.detail
    # no OTA mode either: nothing is flashed (the install preconditions are checked before the write)
    assert steps_of(v) == ["check", "consent", "preconditions", "config_read", "configure", "report"]
    assert v.values["drive_mode"] == "sport"


def test_configuration_campaign_refused_by_an_ecu_ends_rolled_back_naming_it() -> None:
    v = ConfigVehicle(ecus=(), change={"drive_mode": "sport"}, refuse=True)
    outcome, _ = run(v)
    assert outcome.result == "rolled_back", outcome.detail
    assert "configuration change failed: speed_limit: body refused the write" in outcome.detail
    assert steps_of(v) == ["check", "consent", "preconditions", "config_read", "configure", "configure_rollback",
                           "report"]
    assert v.values["drive_mode"] == "normal"


def test_configuration_campaign_cancel_is_taken_before_the_read_and_refused_while_writing() -> None:
    v = ConfigVehicle(ecus=(), change={"drive_mode": "sport"})
    rows = tuple(StepRow(step, None, "done", {}, result) for step, result in (
        ("check", v.check_result()), ("consent", {"decision": "accepted"}), ("preconditions", {})))
    ok, why = CORE.can_cancel(Snapshot("c", POLICY, rows))
    assert ok, why
    cancelled = CORE.decide(Snapshot("c", POLICY, rows, cancel_requested=True))
    assert [(a.step, a.data["result"]) for a in cancelled.actions] == [("report", "cancelled")]  # nothing read
    writing = (*rows, StepRow("config_read", None, "done", {}, {"values": []}), StepRow("configure", None, "started"))
    ok, why = CORE.can_cancel(Snapshot("c", POLICY, writing), [("configure", None)])
    assert not ok and "configuration change is being applied" in why


def test_configuration_campaign_refused_by_the_gate_changes_nothing() -> None:
    v = ConfigVehicle(ecus=())
    outcome, _ = run(v)
    assert outcome.result == "failed"
    assert "launch_control needs engine 1.1.0" in outcome.detail
    assert v.values["launch_control"] == "off" and "flash" not in {s for s, _ in v.order}


def test_failed_change_rolls_the_flashes_back() -> None:
    v = ConfigVehicle(change={"drive_mode": "sport"}, refuse=True)
    outcome, _ = run(v)
    assert outcome.result == "rolled_back"
    assert "configuration change failed: speed_limit: body refused" in outcome.detail
    assert v.vehicle_version() == OLD and v.values["drive_mode"] == "normal"
    order = steps_of(v)
    assert order.index("configure") < order.index("configure_rollback") < order.index("rollback:brake")
    assert v.restored == [{}]  # the update agent had put its own change back: nothing left to write


def test_failure_after_the_change_puts_the_configuration_back_before_the_flashes() -> None:
    v = ConfigVehicle(change={"drive_mode": "sport"}, fail_steps={"verify": "differs: ['body']"})
    outcome, journal = run(v)
    assert outcome.result == "rolled_back"
    order = steps_of(v)
    assert order.index("configure") < order.index("configure_rollback") < order.index("rollback:brake")
    assert v.values["drive_mode"] == "normal" and v.vehicle_version() == OLD
    restore = next(r for r in journal.rows if r["step"] == "configure_rollback")
    assert restore["data"] == {"previous": [{"item": "drive_mode", "ecu": "engine", "value": "normal"}]}
    assert v.restored == [{"drive_mode": "normal"}]


def test_change_cut_short_by_a_crash_is_taken_up_and_rolled_back_to_the_journalled_values() -> None:
    """The engine died while the update agent wrote; the change is applied again on resume, and when the
    campaign then fails, the values journalled before the first attempt are put back (not the ones the
    second attempt found)."""
    v = ConfigVehicle(change={"drive_mode": "sport"}, crash_configure=True, fail_steps={"verify": "differs"})
    outcome, journal = run(v)
    assert outcome.result == "rolled_back"
    assert [r["state"] for r in journal.rows if r["step"] == "configure"] == ["interrupted", "done"]
    assert v.restored == [{"drive_mode": "normal"}] and v.values["drive_mode"] == "normal"


def test_consent_offer_of_a_configuration_campaign_lists_the_values_and_no_flash() -> None:
    from agent.engine.offer import consent_offer

    check = ConfigVehicle(ecus=(), change={"drive_mode": "sport", "comfort_lights": "on"}).check_result()
    offer = consent_offer(check, {})
    assert offer["ecus"] == [] and offer["size_bytes"] == 0
    assert offer["release_notes"] == "configuration: comfort_lights = on\nconfiguration: drive_mode = sport"
