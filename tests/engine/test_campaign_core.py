"""The campaign state machine (pure core) against a modelled vehicle: every path a user sees."""

from __future__ import annotations

import copy

import pytest

from agent.engine.campaign import Action, CampaignCore, Policy, Snapshot, StepRow, rollback_note, rollback_notes
from tests.engine.sim import NEW, OLD, TOPOLOGY, Crash, MemJournal, Vehicle, drive

CORE = CampaignCore(TOPOLOGY)
POLICY = Policy(flash_attempts=2, rollback_attempts=2, loop_limit=3)


def run(vehicle: Vehicle, policy: Policy = POLICY, **kw: object):  # type: ignore[no-untyped-def]
    journal = MemJournal()
    outcome = drive(CORE, journal, vehicle, policy, **kw)  # type: ignore[arg-type]
    return outcome, journal


def steps_of(vehicle: Vehicle) -> list[str]:
    return [s if e is None else f"{s}:{e}" for s, e in vehicle.order]


def test_happy_path_runs_every_step_in_order_and_ends_on_the_new_version() -> None:
    v = Vehicle()
    outcome, _ = run(v)
    assert outcome.result == "succeeded"
    assert v.vehicle_version() == NEW and not v.ota_mode
    assert steps_of(v) == ["check", "download", "consent", "preconditions", "ota_mode_on",
                           "flash:engine", "flash:body", "flash:brake", "verify", "ota_mode_off", "report"]
    assert outcome.ecus == {"engine": "installed", "brake": "installed", "body": "installed"}


def test_nothing_to_do_ends_without_touching_the_vehicle() -> None:
    v = Vehicle()
    v.check_result = lambda: {"status": "nothing", "vehicle_version": OLD, "assignment": None}  # type: ignore
    outcome, _ = run(v)
    assert outcome.result == "nothing" and steps_of(v) == ["check"]


def test_flash_failure_is_retried_with_a_new_job_and_then_succeeds() -> None:
    v = Vehicle(fail_flash={"body": 1})
    outcome, journal = run(v)
    assert outcome.result == "succeeded" and v.vehicle_version() == NEW
    jobs = [r["data"]["job_id"] for r in journal.rows if r["step"] == "flash" and r["ecu"] == "body"]
    assert len(jobs) == 2 and jobs[0] != jobs[1]


def test_a_job_cut_short_by_an_update_agent_crash_does_not_use_up_the_flash_attempts() -> None:
    v = Vehicle(interrupt_flash={"body": 2}, fail_flash={"body": 1})
    outcome, journal = run(v)
    assert outcome.result == "succeeded" and v.vehicle_version() == NEW
    states = [r["state"] for r in journal.rows if r["step"] == "flash" and r["ecu"] == "body"]
    assert states == ["interrupted", "interrupted", "failed", "done"]


def test_flash_failing_every_attempt_rolls_back_every_touched_ecu() -> None:
    v = Vehicle(fail_flash={"brake": 5})
    outcome, _ = run(v)
    assert outcome.result == "rolled_back"
    assert v.vehicle_version() == OLD and not v.ota_mode
    rolled = [e for s, e in v.order if s == "rollback"]
    # engine and body were updated (all-or-nothing), brake failed: all three are rolled back
    assert sorted(rolled) == ["body", "brake", "engine"]
    assert steps_of(v)[-3:] == ["verify_rollback", "ota_mode_off", "report"]
    assert outcome.ecus == {"engine": "rolled_back", "brake": "rolled_back", "body": "rolled_back"}
    assert "flashing brake failed 2 times" in outcome.detail


def test_rollback_uses_switch_bank_on_ab_and_the_previous_image_on_single_bank() -> None:
    v = Vehicle(fail_flash={"brake": 5})
    _, journal = run(v)
    methods = {r["ecu"]: (r["data"]["method"], r["data"]["image"]) for r in journal.rows if r["step"] == "rollback"}
    assert methods["brake"][0] == "switch_bank"
    assert methods["engine"] == ("reflash", {"path": "/cache/engine-old.hex"})


def test_ab_ecu_whose_flash_never_activated_is_rolled_back_without_a_bank_switch() -> None:
    """The brake (A/B) fails its flash before activation: it still runs its old bank. Its rollback
    carries the version read at the check, so the update agent switches nothing; the car ends on OLD."""
    v = Vehicle(fail_flash={"brake": 5})
    outcome, journal = run(v)
    assert outcome.result == "rolled_back" and v.vehicle_version() == OLD
    rollbacks = {r["ecu"]: r["data"] for r in journal.rows if r["step"] == "rollback"}
    assert rollbacks["brake"]["method"] == "switch_bank"
    assert rollbacks["brake"]["expected_version"] == "brake-old"
    assert "expected_version" not in rollbacks["engine"]  # single bank: reflashed whatever it runs
    assert outcome.notes == {"brake": "rolled back: already on previous bank",
                             "engine": "rolled back: previous image reflashed",
                             "body": "rolled back: previous image reflashed"}
    assert "brake (already on previous bank)" in outcome.detail


def test_ab_ecu_that_was_updated_is_switched_back_when_another_ecu_fails() -> None:
    v = Vehicle(fail_flash={"body": 5})
    outcome, _ = run(v)
    assert outcome.result == "rolled_back" and v.vehicle_version() == OLD
    assert outcome.notes["brake"] == "rolled back: bank switched"
    assert "brake (bank switched)" in outcome.detail


def test_without_versions_from_the_check_the_ab_rollback_is_blind_and_a_refused_revert_is_reported() -> None:
    """A check journalled by an older engine has no ecu_versions: no expected_version is sent, the
    update agent reverts unconditionally; a refused revert is the mixed-baseline failure, said so."""
    v = Vehicle(fail_flash={"brake": 5})
    plain = v.check_result

    def old_check() -> dict[str, object]:
        result = plain()
        del result["ecu_versions"]
        return result
    v.check_result = old_check  # type: ignore[method-assign]
    outcome, journal = run(v)
    assert all("expected_version" not in r["data"] for r in journal.rows if r["step"] == "rollback")
    assert outcome.result == "failed" and "rollback failed on brake" in outcome.detail


def test_an_interrupted_ab_rollback_is_asked_again_with_the_same_expected_version() -> None:
    v = Vehicle(fail_flash={"brake": 5})
    journal = MemJournal()
    while True:  # up to the brake's rollback being journalled as started, then the engine dies
        d = CORE.decide(journal.snapshot(POLICY))
        a = d.actions[0]
        idx = journal.begin(a)
        if a.key == ("rollback", "brake"):
            break
        journal.end(idx, *v.run(a))
    d = CORE.decide(journal.snapshot(POLICY))
    again = next(a for a in d.actions if a.key == ("rollback", "brake"))
    assert again.data["expected_version"] == "brake-old"
    assert again.data["previous_job"] == "c1-rollback-brake-1" and again.data["job_id"] == "c1-rollback-brake-2"


def test_rollback_note_reads_the_job_result() -> None:
    def row(method: str, job: dict[str, object] | None) -> StepRow:
        return StepRow("rollback", "brake", "done", {"method": method}, {"job_id": "j", "job": job} if job else None)

    assert rollback_note(row("switch_bank", {"bank_switch": "not_needed"})) == "rolled back: already on previous bank"
    assert rollback_note(row("switch_bank", {"bank_switch": "switched"})) == "rolled back: bank switched"
    assert rollback_note(row("switch_bank", None)) == "rolled back: bank switched"  # an older update agent
    assert rollback_note(row("reflash", {})) == "rolled back: previous image reflashed"
    failed = StepRow("rollback", "engine", "failed", {"method": "reflash"})
    assert rollback_notes([row("switch_bank", {"bank_switch": "switched"}), failed]) == {
        "brake": "rolled back: bank switched"}


def test_not_all_or_nothing_rolls_back_only_the_failed_ecu() -> None:
    v = Vehicle(fail_flash={"body": 5})
    outcome, _ = run(v, Policy(all_or_nothing=False))
    assert [e for s, e in v.order if s == "rollback"] == ["body"]
    assert v.versions == {"engine": "new", "brake": "new", "body": "old"}
    assert outcome.result == "partial" and "kept engine, brake" in outcome.detail


def test_a_failing_rollback_is_reported_as_a_mixed_baseline() -> None:
    v = Vehicle(fail_flash={"brake": 5}, fail_rollback={"engine": 9})
    outcome, _ = run(v)
    assert outcome.result == "failed"
    assert "rollback failed on engine" in outcome.detail and "mixed baseline" in outcome.detail
    assert outcome.ecus["engine"] == "rollback_failed"
    assert not v.ota_mode  # OTA mode is left even then


def test_verify_mismatch_rolls_everything_back() -> None:
    v = Vehicle(fail_steps={"verify": "engine reports 9.9.9"})
    outcome, _ = run(v)
    assert outcome.result == "rolled_back" and v.vehicle_version() == OLD
    assert "does not match the target vehicle version" in outcome.detail


@pytest.mark.parametrize("step", ["check", "download", "preconditions"])
def test_failure_before_ota_mode_changes_nothing(step: str) -> None:
    v = Vehicle(fail_steps={step: "boom"})
    outcome, _ = run(v)
    assert outcome.result == "failed" and v.vehicle_version() == OLD
    assert not any(s in ("ota_mode_on", "flash") for s, _ in v.order)
    assert "boom" in outcome.detail


def test_ota_mode_failure_still_leaves_ota_mode() -> None:
    v = Vehicle(fail_steps={"ota_mode_on": "comm control refused"})
    outcome, _ = run(v)
    assert outcome.result == "failed"
    assert ("ota_mode_off", None) in v.order and ("flash", "engine") not in v.order


@pytest.mark.parametrize("decision", ["postponed", "declined"])
def test_consent_not_given_ends_before_ota_mode(decision: str) -> None:
    v = Vehicle(consent=decision)
    outcome, _ = run(v)
    assert outcome.result == decision
    assert ("ota_mode_on", None) not in v.order


def test_no_consent_step_when_policy_skips_it() -> None:
    v = Vehicle()
    run(v, Policy(consent=False))
    assert ("consent", None) not in v.order


def test_single_bank_ecu_without_rollback_image_is_refused_before_ota_mode() -> None:
    v = Vehicle()
    orig = v.run

    def run_step(action: Action):  # type: ignore[no-untyped-def]
        state, result, error = orig(action)
        if action.step == "download" and result is not None:
            result["previous"].pop("body")
        return state, result, error
    v.run = run_step  # type: ignore[method-assign]
    outcome, _ = run(v)
    assert outcome.result == "failed" and "no rollback image for single-bank ECU body" in outcome.detail
    assert ("ota_mode_on", None) not in v.order


def test_unknown_ecu_in_assignment_is_refused() -> None:
    v = Vehicle(ecus=("engine", "gearbox"))
    outcome, _ = run(v)
    assert outcome.result == "failed" and "gearbox" in outcome.detail


# -- grouping ------------------------------------------------------------------------------------

def test_different_buses_flash_in_parallel_same_bus_in_sequence() -> None:
    v = Vehicle()
    run(v, parallel=True)
    parallel = [e for s, e in v.order if s == "parallel"]
    assert parallel[0] == "engine,body"  # powertrain + body at once; brake waits for engine
    flashes = [e for s, e in v.order if s == "flash"]
    assert flashes.index("brake") > flashes.index("engine")


def test_never_two_flashes_on_one_bus() -> None:
    snap = Snapshot("c1", POLICY, (
        StepRow("check", None, "done", result=Vehicle().check_result()),
        StepRow("download", None, "done", result={"images": {e: {} for e in TOPOLOGY},
                                                   "previous": {e: {"path": "/p"} for e in TOPOLOGY}}),
        StepRow("consent", None, "done", result={"decision": "accepted"}),
        StepRow("preconditions", None, "done"),
        StepRow("ota_mode_on", None, "done"),
        StepRow("flash", "engine", "started", data={"job_id": "j1"}),
    ))
    d = CORE.decide(snap, running=[("flash", "engine")])
    assert [a.ecu for a in d.actions] == ["body"]
    d = CORE.decide(snap, running=[("flash", "engine"), ("flash", "body")])
    assert d.waiting and d.phase == "flash"


def test_install_last_waits_for_every_other_ecu() -> None:
    v = Vehicle()
    run(v, Policy(install_last=("engine",)), parallel=True)
    flashes = [e for s, e in v.order if s == "flash"]
    assert flashes[-1] == "engine"
    assert next(e for s, e in v.order if s == "parallel") == "brake,body"


# -- cancel --------------------------------------------------------------------------------------

def snapshot_after(steps: list[str], cancel: bool = False) -> Snapshot:
    """A journal that ran the happy path up to (not including) the first step in ``steps``' end."""
    journal = MemJournal()
    v = Vehicle()
    for _ in range(100):
        d = CORE.decide(journal.snapshot(POLICY))
        a = d.actions[0]
        if f"{a.step}:{a.ecu}" in steps or a.step in steps:
            journal.begin(a)
            break
        idx = journal.begin(a)
        journal.end(idx, *v.run(a))
    journal.cancel_requested = cancel
    return journal.snapshot(POLICY)


@pytest.mark.parametrize("at", ["download", "consent", "preconditions"])
def test_cancel_before_ota_mode_is_taken_and_ends_cancelled(at: str) -> None:
    snap = snapshot_after([at])
    ok, why = CORE.can_cancel(snap, running=[(at, None)])
    assert ok and "before OTA mode" in why
    d = CORE.decide(Snapshot(snap.campaign_id, snap.policy, snap.steps, True))
    assert d.actions[0].step == "report" and d.actions[0].data["result"] == "cancelled"


def test_cancel_between_ecus_rolls_back_the_updated_ones() -> None:
    journal = MemJournal()
    v = Vehicle()
    for _ in range(100):
        d = CORE.decide(journal.snapshot(POLICY))
        if d.finished:
            break
        for a in d.actions:
            if a.step == "flash" and a.ecu == "brake" and not journal.cancel_requested:
                ok, why = CORE.can_cancel(journal.snapshot(POLICY))
                assert ok and "between ECUs" in why
                journal.cancel_requested = True
                break
            idx = journal.begin(a)
            journal.end(idx, *v.run(a))
        else:
            continue
    outcome = CORE.decide(journal.snapshot(POLICY)).finished
    assert outcome is not None and outcome.result == "cancelled"
    assert v.vehicle_version() == OLD and not v.ota_mode
    assert ("flash", "brake") not in v.order


@pytest.mark.parametrize("at", ["ota_mode_on", "verify", "ota_mode_off", "report"])
def test_cancel_is_refused_outside_safe_points(at: str) -> None:
    snap = snapshot_after([at])
    ok, why = CORE.can_cancel(snap, running=[(at, None)])
    assert not ok and why


def test_cancel_refused_during_rollback() -> None:
    v = Vehicle(fail_flash={"brake": 5})
    journal = MemJournal()
    for _ in range(100):
        d = CORE.decide(journal.snapshot(POLICY))
        if d.actions and d.actions[0].step == "rollback":
            ok, why = CORE.can_cancel(journal.snapshot(POLICY))
            assert not ok and "already ending" in why
            return
        for a in d.actions:
            idx = journal.begin(a)
            journal.end(idx, *v.run(a))
    raise AssertionError("no rollback reached")


# -- resume --------------------------------------------------------------------------------------

SCENARIOS = {
    "success": dict(),
    "retry": dict(fail_flash={"body": 1}),
    "rollback": dict(fail_flash={"brake": 5}),
    "rollback_ab_switched": dict(fail_flash={"body": 5}),
}


def transitions(scenario: str) -> int:
    journal = MemJournal()
    drive(CORE, journal, Vehicle(**copy.deepcopy(SCENARIOS[scenario])), POLICY)  # type: ignore[arg-type]
    return journal.transitions


CASES = [(name, k) for name in SCENARIOS for k in range(transitions(name))]


@pytest.mark.parametrize(("scenario", "crash_at"), CASES, ids=[f"{n}-{k}" for n, k in CASES])
def test_resume_after_a_crash_at_each_transition_ends_like_an_uninterrupted_run(scenario: str,
                                                                               crash_at: int) -> None:
    reference = Vehicle(**copy.deepcopy(SCENARIOS[scenario]))  # type: ignore[arg-type]
    expected = drive(CORE, MemJournal(), reference, POLICY)

    v = Vehicle(**copy.deepcopy(SCENARIOS[scenario]))  # type: ignore[arg-type]
    journal = MemJournal(crash_at=crash_at)
    with pytest.raises(Crash):
        drive(CORE, journal, v, POLICY)
    journal.crash_at = None  # the engine restarts: nothing is running
    outcome = drive(CORE, journal, v, POLICY)
    assert (outcome.result, outcome.ecus, outcome.notes) == (expected.result, expected.ecus, expected.notes)
    assert v.versions == reference.versions and not v.ota_mode
    # no completed flash is done twice: a finished job is taken from the update agent
    assert sorted(v.flashes) == sorted(reference.flashes)
    # every step row is closed
    assert all(r["state"] != "started" for r in journal.rows)


def test_interrupted_flash_resumes_with_new_job_and_asks_about_the_old_one() -> None:
    snap = snapshot_after(["flash:engine"])
    d = CORE.decide(snap)
    a = next(a for a in d.actions if a.ecu == "engine")
    assert a.data["previous_job"] == "c1-flash-engine-1" and a.data["job_id"] == "c1-flash-engine-2"


def test_loop_breaker_stops_a_campaign_that_keeps_crashing_at_the_same_step() -> None:
    v = Vehicle()
    journal = MemJournal()
    crashes = 0
    while True:
        d = CORE.decide(journal.snapshot(POLICY))
        if d.finished:
            break
        for a in d.actions:
            idx = journal.begin(a)
            if a.step == "flash" and a.ecu == "body":
                crashes += 1  # the engine dies every time it flashes body
                break
            journal.end(idx, *v.run(a))
    assert crashes == POLICY.loop_limit
    assert d.finished.result == "rolled_back"
    assert "loop breaker: flashing body was interrupted 3 times" in d.finished.detail
    assert v.vehicle_version() == OLD and not v.ota_mode


def test_loop_breaker_before_ota_mode_fails_without_touching_the_vehicle() -> None:
    journal = MemJournal()
    v = Vehicle()
    for _ in range(20):
        d = CORE.decide(journal.snapshot(POLICY))
        if d.finished:
            break
        a = d.actions[0]
        idx = journal.begin(a)
        if a.step != "download":
            journal.end(idx, *v.run(a))
    assert d.finished is not None and d.finished.result == "failed"
    assert "download was interrupted 3 times" in d.finished.detail
