"""The campaign state machine: a pure core, no I/O (CONVENTIONS item 1).

A campaign moves the vehicle from one vehicle software version to the next::

    check -> download -> consent -> preconditions -> ota_mode_on
          -> flash (per ECU) -> verify -> ota_mode_off -> report -> done

and on failure::

    flash failed -> flash again (bounded: Policy.flash_attempts)
                 -> roll back that ECU, and (all-or-nothing) every ECU already touched
                 -> verify_rollback (the old vehicle version) -> ota_mode_off -> report

The core holds no state of its own. Its input is the campaign's journal (a
:class:`Snapshot`: one :class:`StepRow` per attempt of every step, oldest first,
as :mod:`agent.engine.journal` stores them) plus the set of steps the driver is
running right now; its output (:meth:`CampaignCore.decide`) is the steps to start
next, or the outcome when the campaign is over. The driver journals a step
before it starts it and when it ends, then asks again. Resuming after a crash
is the same call with nothing running:

* a step whose last row is ``started`` (or ``interrupted``) but is not running
  was interrupted. Steps other than flash and rollback are idempotent at their
  daemon (dmclient resumes downloads, consent and OTA mode are keyed by campaign
  id, version reads and baseline matches are reads) and are started again;
* an interrupted flash or rollback is started again with a new job id and the
  old job id as ``previous_job``: the driver asks the update agent
  (``update_agent.job.status``) whether the old job finished: succeeded is
  taken as the result, still running is awaited, anything else (failed,
  ``Interrupted``, unknown) means the ECU's flash script runs again from its
  start under the new job id;
* the loop breaker: a step interrupted ``Policy.loop_limit`` times is not tried
  again; the campaign takes the failure path (rollback of what was touched,
  report) with the reason named. This is also how "a step that cannot be
  resumed leads to rollback" is met: every step here is either idempotent or
  taken up through its job record, so what cannot be resumed is a step that
  keeps failing to complete across restarts, and the loop breaker turns it into
  the rollback path instead of an endless loop.

Cancel (:meth:`CampaignCore.can_cancel`): taken before OTA mode (the campaign
ends ``cancelled``, nothing on the vehicle changed) and during installation
(no new flash starts; the flashes running finish; every ECU touched is rolled
back). Refused while OTA mode is being entered, once installation is complete
(verify, OTA mode off, report) and on the failure path, each with the reason.

Preconditions watched (the ``watch`` row): from the preconditions step until the
installation is complete the driver keeps asking the system agent for the install
verdict, and before each new flash; a violation is journalled as a failed ``watch`` row
naming each rule and the value seen. Before OTA mode it ends the campaign ``failed``
(nothing on the vehicle changed); during installation it acts as a cancel that cannot
be refused: no new flash starts, the flashes running finish (a half-written ECU is
worse than either image), then every ECU touched is rolled back (all-or-nothing,
whatever the policy; also when the violation came during the last flash) and the
campaign ends ``rolled_back`` with the rules in its detail. Once verify has started
and on the failure path it is not looked at.

Remote configuration (FAW paper 3.4): an assignment may carry a configuration change
(``assignment.config``: ``{"values": {item: value}}``, from a signed config target). The
``configure`` step applies it through the update agent after every flash is installed, so
an item that needs the new software is written only once that software runs (the update
agent refuses it before writing anything when an ECU is still too old). The update agent
writes, reads every ECU back and puts every ECU back on its previous value itself when one
refuses or does not confirm. Before it, ``config_read`` journals the values every ECU
concerned holds (a read: idempotent on resume). A failed ``configure`` ends the campaign on
the rollback path (the flashes are rolled back too); whenever the campaign takes the rollback
path after ``configure`` started (done, failed or cut short by a crash), ``configure_rollback``
puts the ECUs back on the journalled values - only those not on them are written - before
the flashes are rolled back. An assignment with a
configuration change and no ECU image is a configuration campaign (a configuration-only
release, for the vehicle version the car is on)::

    check -> consent (if the policy asks) -> preconditions (the install rules)
          -> config_read -> configure (written, read back) -> report -> done

no download, no OTA mode, no flash, no vehicle version to verify. The install preconditions
are checked once before anything is written and not watched after: the change takes a few UDS
writes and is all or nothing by itself. A cancel is taken until ``config_read`` starts. When
``configure`` fails, ``configure_rollback`` puts (and reads) every ECU back on its journalled
value and the campaign ends ``rolled_back`` with the update agent's reason (the item, the ECU
and its negative response).

Grouping: ECUs on different buses flash in parallel, ECUs on the same bus one
after another in assignment order; ECUs named in ``Policy.install_last`` (a
gateway) flash only after every other ECU is installed. Rollback runs in the
reverse order, parallel across buses.

Independent download (FAW paper 3.3): an assignment entry with ``independent`` is a Linux ECU
that downloads its image itself. It is not in the vehicle config's CAN topology: the core
adds it from the assignment (:func:`linux_topology`) as its own "bus" (``someip-<ecu>``, so it
installs in parallel with the CAN buses) with A/B slots. It is part of the same campaign and
journal as the CAN ECUs, step by step:

* ``download``: one step for every ECU. Its action names, per Linux ECU, the update agent's
  download job (``linux_jobs``: ``<campaign>-download-<ecu>-<n>``, a new id per attempt; the ECU
  keys the order by campaign and target, so a repeated order returns its status instead of
  downloading again). The CAN images go through the gateway's dmclient as before; the Linux ECU
  gets the order over SOME/IP from the update agent and downloads straight from the backend.
  A cancel during the download (the core allows it, as for any download) also cancels the
  ECU's download (the step does it when it is stopped);
* ``flash`` of a Linux ECU: the update agent's install job (the install script handed over,
  install, activate; status first, so a job run again does not install twice), scheduled and
  retried (``Policy.flash_attempts``) like a flash;
* ``rollback`` of a Linux ECU: method ``linux_rollback`` (the ECU's rollback call, back to the
  previous slot; ``expected_version`` from ``ecu_versions`` as for an A/B ECU), in the same
  all-or-nothing rollback as the CAN ECUs, whichever side failed;
* ``verify``: the update agent's baseline match reads the Linux ECU's running version over
  SOME/IP, so it counts in the vehicle version like any ECU the baseline XML lists;
* ``report`` of a campaign that did not succeed cancels the download a Linux ECU may still hold
  for it (downloaded, never installed). Should that be missed (the ECU unreachable then), the
  next campaign's order supersedes what the ECU holds of the ended one (see
  :mod:`update_agent.linux_ecu.daemon`);
* an encrypted Linux ECU image: the Director wrapped its content key to that ECU's own key; the
  download order carries the wrapped key and the ciphertext's url, the ECU decrypts.

An ECU marked independent that the vehicle config has as a CAN ECU is refused at the check.

Rollback images. A/B ECUs roll back with ``switch_bank`` (the previous image is
still in the other bank, if the new one was activated at all). Whether the banks
must be switched is not assumed here: a flash that failed before activation left
the ECU on its old bank, and the bootloader refuses to revert to the erased or
half-written other bank. So the rollback action of an A/B ECU carries
``expected_version``: the software version the ECU reported at the check step
(``ecu_versions`` in the check result, read before anything was flashed). The
update agent reads what the ECU runs and switches only when it is not already
that version, and verifies the version after a switch; the job's result says
which (``bank_switch``: ``switched`` | ``not_needed``), and the campaign's report
says it per ECU (:func:`rollback_notes`). A resumed rollback stays idempotent: a
second job finds the ECU on the expected version and switches nothing. A check
result without ``ecu_versions`` (journalled by an older engine) gives no
``expected_version`` and the update agent reverts unconditionally, as before.
Single-bank ECUs are reflashed with their previous
image, which the download step resolves and reports in its result
(``previous``): the image the engine recorded as installed on that ECU after
the last successful campaign (:meth:`agent.engine.journal.Journal.installed`,
kept pinned in dmclient's cache), or for the very first campaign on a vehicle
the factory image configured in the engine's ``initial_images``. A single-bank
ECU without a known previous image makes the campaign stop before OTA mode:
it could not be rolled back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: journal states of one step attempt
STEP_STATES = ("started", "done", "failed", "interrupted")
#: the steps, in campaign order (flash and rollback run per ECU)
STEPS = ("check", "download", "consent", "preconditions", "ota_mode_on", "flash", "verify",
         "rollback", "verify_rollback", "ota_mode_off", "report", "watch",
         "config_read", "configure", "configure_rollback")
#: how a campaign ends
RESULTS = ("succeeded", "nothing", "rolled_back", "partial", "failed", "cancelled", "postponed", "declined")

Key = tuple[str, "str | None"]


@dataclass(frozen=True)
class StepRow:
    """One attempt of one step, as journalled."""

    step: str
    ecu: str | None
    state: str
    data: Mapping[str, Any] = field(default_factory=dict)
    result: Mapping[str, Any] | None = None
    error: str | None = None

    @property
    def key(self) -> Key:
        return (self.step, self.ecu)


@dataclass(frozen=True)
class EcuInfo:
    """What the core needs to know about an ECU from the vehicle configuration."""

    bus: str
    banks: str = "single"  # single | ab
    kind: str = "can"  # can | linux (independent download over SOME/IP)


@dataclass(frozen=True)
class Policy:
    flash_attempts: int = 2
    rollback_attempts: int = 2
    loop_limit: int = 3
    all_or_nothing: bool = True
    install_last: tuple[str, ...] = ()
    consent: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"flash_attempts": self.flash_attempts, "rollback_attempts": self.rollback_attempts,
                "loop_limit": self.loop_limit, "all_or_nothing": self.all_or_nothing,
                "install_last": list(self.install_last), "consent": self.consent}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Policy:
        return cls(flash_attempts=int(data["flash_attempts"]), rollback_attempts=int(data["rollback_attempts"]),
                   loop_limit=int(data["loop_limit"]), all_or_nothing=bool(data["all_or_nothing"]),
                   install_last=tuple(data["install_last"]), consent=bool(data["consent"]))


@dataclass(frozen=True)
class Snapshot:
    """A campaign as its journal holds it."""

    campaign_id: str
    policy: Policy
    steps: tuple[StepRow, ...] = ()
    cancel_requested: bool = False


@dataclass(frozen=True)
class Action:
    """A step to journal as started and then run."""

    step: str
    ecu: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> Key:
        return (self.step, self.ecu)


@dataclass(frozen=True)
class Outcome:
    result: str
    detail: str
    #: per ECU: installed | rolled_back | rollback_failed | failed | untouched
    ecus: Mapping[str, str] = field(default_factory=dict)
    #: per ECU rolled back: how (:func:`rollback_notes`)
    notes: Mapping[str, str] = field(default_factory=dict)


#: how an ECU was rolled back, from the rollback job's result (method, bank_switch)
ROLLBACK_NOTES = {
    "not_needed": "rolled back: already on previous bank",
    "switched": "rolled back: bank switched",
    "reflash": "rolled back: previous image reflashed",
}


def rollback_note(row: StepRow) -> str:
    """How the (done) rollback ``row`` rolled its ECU back, as the report says it."""
    if row.data.get("method") == "reflash":
        return ROLLBACK_NOTES["reflash"]
    job = (row.result or {}).get("job") or {}
    # a job without bank_switch (no expected_version given) ran the revert script
    return ROLLBACK_NOTES["not_needed" if job.get("bank_switch") == "not_needed" else "switched"]


def rollback_notes(steps: Iterable[StepRow]) -> dict[str, str]:
    """Per ECU whose rollback is done: how it was rolled back (the last done rollback row)."""
    notes: dict[str, str] = {}
    for row in steps:
        if row.step == "rollback" and row.ecu is not None and row.state == "done":
            notes[row.ecu] = rollback_note(row)
    return notes


@dataclass(frozen=True)
class Decision:
    """What to do now: start ``actions``; or wait for running steps; or ``finished``."""

    phase: str
    actions: tuple[Action, ...] = ()
    finished: Outcome | None = None
    #: why the campaign is on its failure / end path (None on the way to success)
    ending: str | None = None

    @property
    def waiting(self) -> bool:
        return not self.actions and self.finished is None


def linux_topology(check: Mapping[str, Any]) -> dict[str, EcuInfo]:
    """The Linux ECUs of the assignment (independent download): each its own "bus", A/B slots."""
    return {str(e["ecu"]): EcuInfo(f"someip-{e['ecu']}", "ab", "linux")
            for e in (check.get("assignment") or {}).get("ecus", []) if e.get("independent")}


def config_change(check: Mapping[str, Any]) -> Mapping[str, str]:
    """The configuration change of the assignment (item -> value), empty when there is none."""
    config = (check.get("assignment") or {}).get("config") or {}
    return {str(k): str(v) for k, v in (config.get("values") or {}).items()}


def previous_values(config_read: Mapping[str, Any]) -> list[dict[str, str]]:
    """The values a ``config_read`` result journalled (``update_agent.config.get``), as
    ``update_agent.config.restore`` takes them."""
    return [{"item": str(v["item"]), "ecu": str(v["ecu"]), "value": str(v["value"])}
            for v in config_read.get("values") or [] if v.get("value") is not None]


class _Rows:
    """The journal rows folded per step key."""

    def __init__(self, rows: Iterable[StepRow], running: frozenset[Key]) -> None:
        self.by_key: dict[Key, list[StepRow]] = {}
        for row in rows:
            if row.state not in STEP_STATES:
                raise ValueError(f"journal row of {row.step}: unknown state {row.state!r}")
            self.by_key.setdefault(row.key, []).append(row)
        self.running = running

    def rows(self, key: Key) -> list[StepRow]:
        return self.by_key.get(key, [])

    def last(self, key: Key) -> StepRow | None:
        rows = self.by_key.get(key)
        return rows[-1] if rows else None

    def state(self, key: Key) -> str:
        """none | running | interrupted | done | failed."""
        row = self.last(key)
        if row is None:
            return "running" if key in self.running else "none"
        if row.state == "started":
            return "running" if key in self.running else "interrupted"
        return row.state

    def count(self, key: Key, state: str) -> int:
        return sum(1 for r in self.rows(key) if r.state == state)

    def interrupted(self, key: Key) -> int:
        """Interruptions of this step: closed as interrupted, plus an open row nobody runs."""
        n = self.count(key, "interrupted")
        last = self.last(key)
        if last is not None and last.state == "started" and key not in self.running:
            n += 1
        return n

    def previous_job(self, key: Key) -> str | None:
        """The job id of an interrupted flash/rollback attempt, for the driver to ask about."""
        last = self.last(key)
        if last is not None and self.state(key) == "interrupted":
            job = last.data.get("job_id")
            return str(job) if job is not None else None
        return None

    def touched(self, step: str) -> bool:
        return any(k[0] == step for k in self.by_key) or any(k[0] == step for k in self.running)


class _Gate:
    """The verdict on one sequential step."""

    def __init__(self, status: str, row: StepRow | None = None, error: str | None = None) -> None:
        self.status = status  # done | failed | pending (start it) | running
        self.row = row
        self.error = error


class CampaignCore:
    """Decides a campaign's next steps from its journal; see the module docstring."""

    def __init__(self, topology: Mapping[str, EcuInfo]) -> None:
        self.topology = dict(topology)

    # -- public --------------------------------------------------------------------------------
    def decide(self, snap: Snapshot, running: Iterable[Key] = ()) -> Decision:
        """The next steps for ``snap`` while the steps in ``running`` are in flight."""
        return _Decider(self, snap, _Rows(snap.steps, frozenset(running))).decide()

    def can_cancel(self, snap: Snapshot, running: Iterable[Key] = ()) -> tuple[bool, str]:
        """Whether a cancel is taken now, and what it will do (or why not)."""
        d = self.decide(snap, running)
        if d.finished is not None:
            return False, f"the campaign has ended ({d.finished.result})"
        if snap.cancel_requested:
            return False, "a cancel is already in progress"
        if d.ending is not None:
            return False, f"the campaign is already ending ({d.ending})"
        if d.phase in ("check", "download", "consent", "preconditions"):
            return True, "cancelled before OTA mode: nothing on the vehicle was changed"
        if d.phase == "ota_mode_on":
            return False, "OTA mode is being entered; cancel again once the installation runs"
        if d.phase == "config_read" and d.actions:
            return True, "cancelled before the configuration was read: nothing on the vehicle was changed"
        if d.phase in ("config_read", "configure"):
            return False, "the configuration change is being applied (all or nothing, read back on every ECU)"
        if d.phase == "flash":
            return True, ("the cancel takes effect between ECUs: ECUs being flashed finish, then every "
                          "ECU already updated is rolled back to the old vehicle version")
        return False, (f"the installation is complete ({d.phase} running); roll back with "
                       "'otactl rollback' after the campaign ends")


class _Decider:
    def __init__(self, core: CampaignCore, snap: Snapshot, rows: _Rows) -> None:
        self.core = core
        self.snap = snap
        self.policy = snap.policy
        self.rows = rows
        self.ecus: list[str] = []
        #: the vehicle's CAN ECUs plus the assignment's Linux ECUs (set by decide once the check is done)
        self.topology: dict[str, EcuInfo] = dict(core.topology)

    # -- helpers -------------------------------------------------------------------------------
    def gate(self, step: str, ecu: str | None = None) -> _Gate:
        key = (step, ecu)
        state = self.rows.state(key)
        if state in ("done", "failed"):
            row = self.rows.last(key)
            return _Gate(state, row, row.error if row is not None else None)
        if state == "running":
            return _Gate("running")
        n = self.rows.interrupted(key)
        # waiting for the driver is no work that could crash the engine: restarts (ignition cycles)
        # during a postponed or scheduled consent do not count towards the loop breaker
        if n >= self.policy.loop_limit and step != "consent":
            return _Gate("failed", self.rows.last(key),
                         f"loop breaker: {_name(step, ecu)} was interrupted {n} times")
        return _Gate("pending")

    def start(self, phase: str, action: Action, ending: str | None = None) -> Decision:
        return Decision(phase, (action,), ending=ending)

    def result(self, step: str) -> Mapping[str, Any]:
        row = self.rows.last((step, None))
        return row.result or {} if row is not None else {}

    @property
    def violation(self) -> str | None:
        """The rules the watch found violated (a failed ``watch`` row), if any."""
        row = self.rows.last(("watch", None))
        return (row.error or "preconditions violated") if row is not None and row.state == "failed" else None

    # -- the happy path ------------------------------------------------------------------------
    def decide(self) -> Decision:
        if self.snap.cancel_requested and not self.rows.touched("ota_mode_on") and not self.rows.touched("config_read"):
            return self.end("cancelled before OTA mode", "cancelled")
        g = self.gate("check")
        if g.status in ("pending", "running"):
            return self._run_or_wait("check", g)
        if g.status == "failed":
            return self.end(f"check failed: {g.error}", "failed")
        check = g.row.result or {} if g.row is not None else {}
        if check.get("status") == "nothing":
            return Decision("done", finished=Outcome("nothing", "no update for this vehicle"))
        ecus = self.ecus_of(check)
        linux = linux_topology(check)
        both = sorted(set(linux) & set(self.core.topology))
        if both:
            return self.end(f"the assignment has {', '.join(both)} download independently, but the vehicle "
                            "config has it as a CAN ECU", "failed")
        self.topology.update(linux)
        unknown = [e for e in ecus if e not in self.topology]
        if unknown:
            return self.end(f"the assignment names ECUs this vehicle has not configured: {', '.join(unknown)}",
                            "failed")
        self.ecus = ecus
        config = config_change(check)

        download: Mapping[str, Any] = {}
        if ecus or not config:  # a configuration campaign has nothing to download
            g = self.gate("download")
            if g.status in ("pending", "running"):
                data: dict[str, Any] = {"ecus": ecus}
                if linux:  # the update agent's download job per Linux ECU, a new id per attempt
                    n = len(self.rows.rows(("download", None))) + 1
                    data["linux_jobs"] = {e: f"{self.snap.campaign_id}-download-{e}-{n}" for e in ecus if e in linux}
                return self._run_or_wait("download", g, data)
            if g.status == "failed":
                return self.end(f"download failed: {g.error}", "failed")
            download = g.row.result or {} if g.row is not None else {}
            missing = self.missing_images(download)
            if missing:
                return self.end(missing, "failed")

        if self.policy.consent:
            g = self.gate("consent")
            if g.status in ("pending", "running"):
                return self._run_or_wait("consent", g, {"ecus": ecus})
            if g.status == "failed":
                return self.end(f"consent failed: {g.error}", "failed")
            decision = (g.row.result or {}).get("decision") if g.row is not None else None
            if decision in ("postponed", "declined"):
                return self.end(f"the driver {decision} the update", str(decision))
            if decision != "accepted":
                return self.end(f"consent answered {decision!r}", "failed")

        g = self.gate("preconditions")
        if g.status in ("pending", "running"):
            return self._run_or_wait("preconditions", g, {"phase": "install"})
        if g.status == "failed":
            return self.end(f"preconditions not met: {g.error}", "failed")
        if self.violation is not None and not self.rows.touched("ota_mode_on"):
            return self.end(f"preconditions violated before OTA mode: {self.violation}", "failed")

        if ecus or not config:  # a configuration campaign flashes nothing: no OTA mode
            g = self.gate("ota_mode_on")
            if g.status in ("pending", "running"):
                return self._run_or_wait("ota_mode_on", g)
            if g.status == "failed":
                return self.end(f"entering OTA mode failed: {g.error}", "failed")

            install = self.install(download)
            if isinstance(install, Decision):
                return install

        if config:
            g = self.gate("config_read")  # the previous values, journalled before anything is written
            if g.status in ("pending", "running"):
                return self._run_or_wait("config_read", g, {"items": sorted(config)})
            if g.status == "failed":
                return self.end(f"reading the configuration before the change failed: {g.error}", "failed",
                                rollback=True)
            g = self.gate("configure")
            if g.status in ("pending", "running"):
                return self._run_or_wait("configure", g, {"values": dict(config)})
            if g.status == "failed":
                return self.end(f"configuration change failed: {g.error}", "failed", rollback=True)
            if not ecus:
                return self.end("configuration applied and read back", "succeeded")

        g = self.gate("verify")
        if g.status in ("pending", "running"):
            to_version = str(check.get("assignment", {}).get("target_vehicle_version", ""))
            return self._run_or_wait("verify", g, {"vehicle_version": to_version})
        if g.status == "failed":
            return self.end(f"the vehicle does not match the target vehicle version: {g.error}", "failed",
                            rollback=True)
        return self.end("installed and verified", "succeeded")

    def _run_or_wait(self, step: str, g: _Gate, data: Mapping[str, Any] | None = None,
                     ending: str | None = None) -> Decision:
        if g.status == "running":
            return Decision(step, ending=ending)
        return self.start(step, Action(step, None, dict(data or {})), ending)

    @staticmethod
    def ecus_of(check: Mapping[str, Any]) -> list[str]:
        assignment = check.get("assignment") or {}
        return [str(e["ecu"]) for e in assignment.get("ecus", [])]

    def missing_images(self, download: Mapping[str, Any]) -> str | None:
        images = download.get("images") or {}
        previous = download.get("previous") or {}
        for ecu in self.ecus:
            if ecu not in images:
                return f"download gave no image for ECU {ecu}"
            if self.topology[ecu].banks != "ab" and not previous.get(ecu):
                return (f"no rollback image for single-bank ECU {ecu} (not recorded as installed and not "
                        "configured in initial_images): it could not be rolled back, so it is not updated")
        return None

    # -- install -------------------------------------------------------------------------------
    def install_order(self) -> tuple[list[str], list[str]]:
        last = [e for e in self.policy.install_last if e in self.ecus]
        return [e for e in self.ecus if e not in last], last

    def install(self, download: Mapping[str, Any]) -> Decision | None:
        """Schedule flashes; None once every ECU is installed."""
        images = download.get("images") or {}
        running: list[str] = []
        todo: list[str] = []
        abort: str | None = None
        for ecu in self.ecus:
            key = ("flash", ecu)
            state = self.rows.state(key)
            if state == "done":
                continue
            if state == "running":
                running.append(ecu)
                continue
            interrupted = self.rows.interrupted(key)
            failed = self.rows.count(key, "failed")
            if interrupted >= self.policy.loop_limit:
                abort = abort or f"loop breaker: flashing {ecu} was interrupted {interrupted} times"
            elif failed >= self.policy.flash_attempts:
                last_row = self.rows.last(key)
                abort = abort or f"flashing {ecu} failed {failed} times: {last_row.error if last_row else ''}"
            else:
                todo.append(ecu)
        if abort is None and self.violation is not None and not self.rows.touched("verify"):
            abort = f"preconditions violated during installation: {self.violation}"
        if abort is None and self.snap.cancel_requested and (todo or running):
            abort = "cancelled during installation"
        if abort is not None:
            if running:
                return Decision("flash", ending=abort)
            return self.end(abort, "cancelled" if abort.startswith("cancelled") else "failed", rollback=True)
        if not todo and not running:
            return None
        first, last = self.install_order()
        group = first if any(e in todo or e in running for e in first) else last
        busy = {self.topology[e].bus for e in running}
        actions: list[Action] = []
        for ecu in group:
            if ecu not in todo:
                continue
            bus = self.topology[ecu].bus
            if bus in busy:
                continue
            busy.add(bus)
            key = ("flash", ecu)
            actions.append(Action("flash", ecu, {
                "job_id": self.job_id("flash", ecu),
                "previous_job": self.rows.previous_job(key),
                "image": dict(images[ecu]),
            }))
        return Decision("flash", tuple(actions))

    def job_id(self, step: str, ecu: str) -> str:
        n = len(self.rows.rows((step, ecu))) + 1
        return f"{self.snap.campaign_id}-{step}-{ecu}-{n}"

    # -- the end path --------------------------------------------------------------------------
    def end(self, reason: str, result: str, *, rollback: bool = False) -> Decision:
        """Roll back (when asked), leave OTA mode (when entered), report, finish."""
        ecus: dict[str, str] = {}
        detail = reason
        if rollback:
            rb = self.rollback(reason)
            if isinstance(rb, Decision):
                return rb
            ecus, rb_result, rb_detail = rb
            if rb_result is not None:
                result = rb_result
            if rb_detail:
                detail = f"{reason}; {rb_detail}"
        else:
            ecus = self.ecu_outcomes()
        if self.rows.touched("ota_mode_on"):
            g = self.gate("ota_mode_off")
            if g.status in ("pending", "running"):
                return self._run_or_wait("ota_mode_off", g, ending=reason)
            if g.status == "failed":
                detail = f"{detail}; leaving OTA mode failed: {g.error}"
        g = self.gate("report")
        if g.status in ("pending", "running"):
            if g.status == "running":
                return Decision("report", ending=reason)
            return self.start("report", Action("report", None, {"result": result, "detail": detail,
                                                                 "ecus": ecus}), ending=reason)
        if g.status == "failed":
            detail = f"{detail}; the report failed: {g.error}"
        notes = {e: n for e, n in rollback_notes(self.snap.steps).items() if ecus.get(e) == "rolled_back"}
        return Decision("done", finished=Outcome(result, detail, ecus, notes),
                        ending=None if result == "succeeded" else reason)

    def ecu_outcomes(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for ecu in self.ecus:
            key = ("flash", ecu)
            if self.rows.state(key) == "done":
                out[ecu] = "installed"
            elif self.rows.rows(key):
                out[ecu] = "failed"
            else:
                out[ecu] = "untouched"
        return out

    def rollback_set(self) -> list[str]:
        touched = [e for e in self.ecus if self.rows.rows(("flash", e)) or ("flash", e) in self.rows.running]
        if self.policy.all_or_nothing or self.snap.cancel_requested or self.violation is not None:
            return touched
        return [e for e in touched if self.rows.state(("flash", e)) != "done"]

    def config_rollback(self, reason: str) -> Decision | str | None:
        """Put the ECUs back on the values ``config_read`` journalled, once ``configure`` was started at all
        (an attempt cut short may have written); runs before the flashes are rolled back."""
        if self.rows.state(("config_read", None)) != "done" or not self.rows.touched("configure"):
            return None
        if self.rows.state(("configure", None)) == "running":
            return Decision("configure", ending=reason)
        g = self.gate("configure_rollback")
        if g.status in ("pending", "running"):
            return self._run_or_wait("configure_rollback", g,
                                     {"previous": previous_values(self.result("config_read"))}, ending=reason)
        if g.status == "failed":
            return f"the configuration change could not be put back: {g.error}"
        return None

    def rollback(self, reason: str) -> Decision | tuple[dict[str, str], str | None, str]:
        """The configuration change first (it may need the new software), then the flashes."""
        restored = self.config_rollback(reason)
        if isinstance(restored, Decision):
            return restored
        out = self.rollback_ecus(reason)
        if isinstance(out, Decision):
            return out
        configure = self.rows.last(("configure", None))
        refused = configure is not None and (configure.result or {}).get("state") == "refused"  # nothing written
        if restored is None and not self.ecus and not refused \
                and self.rows.state(("configure_rollback", None)) == "done":
            return out[0], "rolled_back", "every ECU concerned is back on its previous configuration value (read back)"
        if restored is None:
            return out
        ecus, _, detail = out
        return ecus, "failed", f"{restored}; {detail}" if detail else restored

    def rollback_ecus(self, reason: str) -> Decision | tuple[dict[str, str], str | None, str]:
        targets = self.rollback_set()
        download = self.result("download")
        previous = download.get("previous") or {}
        before = self.result("check").get("ecu_versions") or {}
        first, last = self.install_order()
        order = [e for e in reversed(first + last) if e in targets]
        running: list[str] = []
        todo: list[str] = []
        failed_ecus: list[str] = []
        ecus = self.ecu_outcomes()
        for ecu in order:
            key = ("rollback", ecu)
            state = self.rows.state(key)
            if state == "done":
                ecus[ecu] = "rolled_back"
            elif state == "running":
                running.append(ecu)
            elif (self.rows.interrupted(key) >= self.policy.loop_limit
                  or self.rows.count(key, "failed") >= self.policy.rollback_attempts):
                ecus[ecu] = "rollback_failed"
                failed_ecus.append(ecu)
            else:
                todo.append(ecu)
        busy = {self.topology[e].bus for e in running}
        actions: list[Action] = []
        for ecu in order:
            if ecu not in todo:
                continue
            info = self.topology[ecu]
            if info.bus in busy:
                continue
            busy.add(info.bus)
            prev = previous.get(ecu)
            data: dict[str, Any] = {
                "job_id": self.job_id("rollback", ecu),
                "previous_job": self.rows.previous_job(("rollback", ecu)),
                "method": "linux_rollback" if info.kind == "linux" else "switch_bank" if info.banks == "ab"
                else "reflash",
                "image": dict(prev) if prev else None,
            }
            if info.banks == "ab" and before.get(ecu):
                # the update agent switches banks only if the ECU does not run this already
                data["expected_version"] = str(before[ecu])
            actions.append(Action("rollback", ecu, data))
        if actions or running:
            return Decision("rollback", tuple(actions), ending=reason)
        if failed_ecus:
            return ecus, "failed", (f"rollback failed on {', '.join(failed_ecus)}: the vehicle may be on a "
                                    "mixed baseline and needs a workshop")
        if not order:
            return ecus, None, "no ECU had been touched"
        if not (self.policy.all_or_nothing or self.snap.cancel_requested or self.violation is not None):
            kept = [e for e in self.ecus if ecus.get(e) == "installed"]
            return ecus, "partial", (f"rolled back {', '.join(order)}; kept {', '.join(kept) or 'none'} "
                                     "(the campaign is not all-or-nothing)")
        g = self.gate("verify_rollback")
        if g.status in ("pending", "running"):
            from_version = self.result("check").get("vehicle_version")
            return self._run_or_wait("verify_rollback", g, {"vehicle_version": from_version}, ending=reason)
        if g.status == "failed":
            return ecus, "failed", f"after the rollback the vehicle does not match its old version: {g.error}"
        notes = rollback_notes(self.snap.steps)
        how = ", ".join(f"{e} ({notes[e].removeprefix('rolled back: ')})" if e in notes else e for e in order)
        return ecus, "rolled_back" if not reason.startswith("cancelled") else "cancelled", \
            f"rolled back {how} to the old vehicle version"


def _name(step: str, ecu: str | None) -> str:
    return f"{step} of {ecu}" if ecu else step
