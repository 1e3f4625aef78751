"""A fake vehicle and a minimal driver loop around the pure campaign core, for its tests.

The driver does what :mod:`agent.engine.driver` does, with the daemons replaced by a
model: journal a step as started, carry it out on the model, journal its end; ask the
core again. ``crash_at`` stops the loop before the given journal transition (a SIGKILL
of the engine); ``effect_on_crash`` says whether the step that was in flight still took
effect (the update agent finished the job while the engine was dead).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.engine.campaign import Action, CampaignCore, EcuInfo, Outcome, Policy, Snapshot, StepRow

OLD = "BV OS D 1.0.0"
NEW = "BV OS D 1.1.0"
TOPOLOGY = {"engine": EcuInfo("powertrain", "single"), "brake": EcuInfo("powertrain", "ab"),
            "body": EcuInfo("body", "single")}


class Crash(Exception):
    pass


@dataclass
class MemJournal:
    rows: list[dict[str, Any]] = field(default_factory=list)
    transitions: int = 0
    crash_at: int | None = None
    cancel_requested: bool = False

    def _tick(self) -> None:
        if self.crash_at is not None and self.transitions >= self.crash_at:
            raise Crash()
        self.transitions += 1

    def begin(self, action: Action) -> int:
        self._tick()
        for r in self.rows:
            if (r["step"], r["ecu"]) == action.key and r["state"] == "started":
                r["state"] = "interrupted"
        self.rows.append({"step": action.step, "ecu": action.ecu, "state": "started", "data": dict(action.data),
                          "result": None, "error": None})
        return len(self.rows) - 1

    def end(self, idx: int, state: str, result: Mapping[str, Any] | None, error: str | None) -> None:
        self._tick()
        self.rows[idx].update(state=state, result=dict(result) if result is not None else None, error=error)

    def snapshot(self, policy: Policy) -> Snapshot:
        return Snapshot("c1", policy, tuple(StepRow(r["step"], r["ecu"], r["state"], r["data"], r["result"],
                                                    r["error"]) for r in self.rows), self.cancel_requested)


@dataclass
class Vehicle:
    """The daemons and the car, as far as the core's steps can see."""

    ecus: tuple[str, ...] = ("engine", "brake", "body")
    fail_flash: dict[str, int] = field(default_factory=dict)   # ECU -> flash attempts that fail
    fail_rollback: dict[str, int] = field(default_factory=dict)
    fail_steps: dict[str, str] = field(default_factory=dict)   # step -> error
    interrupt_flash: dict[str, int] = field(default_factory=dict)  # ECU -> jobs cut short by an update-agent crash
    consent: str = "accepted"
    versions: dict[str, str] = field(default_factory=dict)
    jobs: dict[str, str] = field(default_factory=dict)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # job -> its result (the update agent's record)
    ota_mode: bool = False
    flashes: list[str] = field(default_factory=list)
    order: list[tuple[str, str | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.versions = {e: "old" for e in TOPOLOGY}

    def check_result(self) -> dict[str, Any]:
        return {"status": "update", "vehicle_version": OLD,
                "assignment": {"target_vehicle_version": NEW, "ecus": [{"ecu": e} for e in self.ecus]},
                "ecu_versions": {e: f"{e}-old" for e in TOPOLOGY}}

    def switch_bank(self, ecu: str, job: str, expected: str | None) -> tuple[str, dict[str, Any] | None, str | None]:
        """The update agent's switch_bank job on an A/B ECU: a failed flash never activated its bank."""
        if self.versions[ecu] == "old":
            if expected == f"{ecu}-old":
                self.jobs[job] = "succeeded"
                return "done", {"job_id": job, "job": {"bank_switch": "not_needed"}}, None
            # a blind revert: the bootloader refuses to boot the unvalidated other bank
            self.jobs[job] = "failed"
            return "failed", None, "ProtocolError: brake: step 'revert' (routine 0211): status 0x01"
        self.versions[ecu] = "old"
        self.jobs[job] = "succeeded"
        return "done", {"job_id": job, "job": {"bank_switch": "switched" if expected else None}}, None

    def run(self, action: Action) -> tuple[str, dict[str, Any] | None, str | None]:
        """Carry out one step: (state, result, error)."""
        step, ecu = action.step, action.ecu
        self.order.append((step, ecu))
        if step in self.fail_steps:
            return "failed", None, self.fail_steps[step]
        if step == "check":
            return "done", self.check_result(), None
        if step == "download":
            return "done", {"images": {e: {"path": f"/cache/{e}-new.hex"} for e in self.ecus},
                            "previous": {e: {"path": f"/cache/{e}-old.hex"} for e in self.ecus}}, None
        if step == "consent":
            return "done", {"decision": self.consent}, None
        if step == "ota_mode_on":
            self.ota_mode = True
        if step == "ota_mode_off":
            self.ota_mode = False
        if step in ("flash", "rollback"):
            assert ecu is not None
            prev = action.data.get("previous_job")
            if prev is not None and self.jobs.get(prev) == "succeeded":
                return "done", self.results.get(prev, {"job_id": prev}), None
            job = str(action.data["job_id"])
            if step == "flash" and self.interrupt_flash.get(ecu, 0) > 0:
                self.interrupt_flash[ecu] -= 1
                self.jobs[job] = "failed"
                return "interrupted", {"job_id": job}, "Interrupted: the update agent restarted"
            budget = (self.fail_flash if step == "flash" else self.fail_rollback)
            if budget.get(ecu, 0) > 0:
                budget[ecu] -= 1
                self.jobs[job] = "failed"
                if step == "flash" and TOPOLOGY[ecu].banks == "single":
                    self.versions[ecu] = "broken"
                return "failed", None, f"NegativeResponseError: {ecu} refused the download"
            if step == "rollback" and action.data.get("method") == "switch_bank":
                state, result, error = self.switch_bank(ecu, job, action.data.get("expected_version"))
                if result is not None:
                    self.results[job] = result
                return state, result, error
            self.jobs[job] = "succeeded"
            self.versions[ecu] = "new" if step == "flash" else "old"
            if step == "flash":
                self.flashes.append(ecu)
            return "done", {"job_id": job}, None
        if step == "verify":
            bad = [e for e in self.ecus if self.versions[e] != "new"]
            return ("failed", None, f"differs: {bad}") if bad else ("done", {"vehicle_version": NEW}, None)
        if step == "verify_rollback":
            bad = [e for e, v in self.versions.items() if v != "old"]
            return ("failed", None, f"differs: {bad}") if bad else ("done", {"vehicle_version": OLD}, None)
        return "done", {}, None

    def vehicle_version(self) -> str:
        values = set(self.versions[e] for e in self.ecus)
        if values == {"new"}:
            return NEW
        if set(self.versions.values()) == {"old"}:
            return OLD
        return "mixed"


def drive(core: CampaignCore, journal: MemJournal, vehicle: Vehicle, policy: Policy, *,
          parallel: bool = False, max_rounds: int = 500) -> Outcome:
    """Run the campaign to its end (or raise Crash at ``journal.crash_at``).

    Each step passes three crash points: before its start is journalled, after that but
    before the daemon carried it out, and after it was carried out but before its end is
    journalled. ``parallel``: start every action of a decision before completing any (as
    the real driver does), and note in ``vehicle.order`` which ran together."""
    for _ in range(max_rounds):
        d = core.decide(journal.snapshot(policy))
        if d.finished is not None:
            return d.finished
        assert d.actions, f"the core waits with nothing running: {d}"
        started = [(action, journal.begin(action)) for action in d.actions]
        if parallel and len(started) > 1:
            vehicle.order.append(("parallel", ",".join(str(a.ecu) for a, _ in started)))
        for action, idx in started:
            journal._tick()
            state, result, error = vehicle.run(action)
            journal.end(idx, state, result, error)
    raise AssertionError("the campaign did not end")
