"""Runs one campaign: asks the pure core what to do, journals, carries the steps out.

The loop (:meth:`CampaignDriver.run`)::

    snapshot = journal.snapshot(id)
    decision = core.decide(snapshot, running)
    finished  -> journal.finish, event agent.campaign.state done
    actions   -> journal.begin(step)  (before it starts) ; spawn the step
    wait for a step to end (or a cancel) -> journal.end(step, done|failed)

A resumed campaign (engine restarted) is the same loop: ``running`` is empty, so
the core sees the steps that were open as interrupted (see
:mod:`agent.engine.campaign`). OTA mode held by the campaign is entered again
on take-up (the lease may have expired while the engine was down) and its lease
is renewed every lease/3 until the campaign leaves it.

The watch: while the campaign is entering OTA mode or installing (and not ending),
a task asks the system agent for the install verdict, and again on each of its
``system_agent.preconditions.verdict`` events for the install phase (relayed by the daemon, every
reconnection too) or after ``VERDICT_RECHECK_S`` without one (a lost event's backstop); the
loop asks once more right before it starts a flash or the verify step; a violation is journalled as a
failed ``watch`` row (the core then stops the installation, see
:mod:`agent.engine.campaign`). A system agent that cannot answer is logged and asked
again: the lease of OTA mode, not the watch, covers a system agent that is gone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from agent.engine.campaign import Action, CampaignCore, Decision, Key
from agent.engine.journal import Journal
from agent.engine.steps import VERDICT_RECHECK_S, StepOutcome, Steps, _woken, verdict_key

log = logging.getLogger(__name__)

PublishFn = Callable[[str, Mapping[str, Any]], Any]


class CampaignDriver:
    def __init__(self, campaign_id: str, journal: Journal, core: CampaignCore, steps: Steps,
                 publish: PublishFn) -> None:
        self.cid = campaign_id
        self.journal = journal
        self.core = core
        self.steps = steps
        self.publish = publish
        self.running: dict[Key, tuple[int, asyncio.Task[StepOutcome]]] = {}
        self.phase = "check"
        self.ending: str | None = None
        #: per ECU (None: the download) the last progress seen
        self.progress: dict[str | None, dict[str, Any]] = {}
        self._wake = asyncio.Event()
        self._renewer: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[StepOutcome] | None = None
        self.outcome: Any = None

    # -- called from the daemon ----------------------------------------------------------------
    def decide(self) -> Decision:
        return self.core.decide(self.journal.snapshot(self.cid), self.running.keys())

    def cancel(self) -> str:
        """Take a cancel if the core says this is a safe point; raises VehicleStateError otherwise."""
        from agent.errors import VehicleStateError

        ok, why = self.core.can_cancel(self.journal.snapshot(self.cid), self.running.keys())
        if not ok:
            raise VehicleStateError(f"cannot cancel campaign {self.cid} now: {why}")
        self.journal.request_cancel(self.cid)
        if self.phase in ("check", "download", "consent", "preconditions"):
            for key, (_row, task) in list(self.running.items()):
                log.info("campaign %s: cancel stops %s", self.cid, key[0])
                task.cancel()
        self._wake.set()
        return why

    def on_progress(self, ecu: str | None, step: str, done_bytes: int, total: int) -> None:
        now = {"step": step, "bytes_done": done_bytes, "bytes_total": total}
        if self.progress.get(ecu) == now:
            return
        self.progress[ecu] = now
        self.publish("agent.campaign.progress", {"campaign_id": self.cid, "ecu": ecu, "step": step,
                                                 "bytes_done": done_bytes, "bytes_total": total})

    # -- the loop --------------------------------------------------------------------------------
    async def run(self) -> Any:
        snap = self.journal.snapshot(self.cid)
        if _ota_mode_held(snap.steps):
            await self._take_up_ota_mode()
        try:
            while True:
                decision = self.decide()
                if decision.finished is not None:
                    await self._stop_renewer()
                    self._finish(decision)  # journalled before anyone hears it ended
                    self._phase(decision)
                    return decision.finished
                self._phase(decision)
                watch = decision.ending is None and decision.phase in ("ota_mode_on", "flash", "verify") \
                    and not _violation_journalled(self.journal.steps(self.cid))
                # asked once more before a flash or verify starts: no flash after a violation, and one
                # during the last flash is not missed between two polls of the watch
                if watch and any(a.step in ("flash", "verify") for a in decision.actions) \
                        and await self._violated_now():
                    continue  # journalled: decide again
                if watch and decision.phase != "verify":
                    self._start_watch()
                else:
                    await self._stop_watch()
                for action in decision.actions:
                    self._start(action)
                if self._watcher is None or not self._watcher.done():  # a wake it gave may be spent
                    await self._wait()
                self._take_watch()
        finally:
            await self._stop_watch()
            await self._stop_renewer()
            for _row, task in self.running.values():
                task.cancel()

    def _context(self) -> dict[str, Any]:
        ctx: dict[str, Any] = {}
        for row in self.journal.steps(self.cid):
            if row.ecu is None and row.state == "done" and row.step in ("check", "download"):
                ctx[row.step] = dict(row.result or {})
        return ctx

    def _start(self, action: Action) -> None:
        row = self.journal.begin(self.cid, action.step, action.ecu, action.data)
        log.info("campaign %s: %s%s started", self.cid, action.step, f" {action.ecu}" if action.ecu else "")
        self._step_event(action.key, "started", action.data.get("job_id"))
        task = asyncio.create_task(self.steps.run(action, self._context()),
                                   name=f"campaign:{self.cid}:{action.step}:{action.ecu}")
        task.add_done_callback(lambda _t: self._wake.set())
        self.running[action.key] = (row, task)

    async def _wait(self) -> None:
        if not any(task.done() for _row, task in self.running.values()):
            self._wake.clear()
            await self._wake.wait()
        for key, (row, task) in list(self.running.items()):
            if not task.done():
                continue
            del self.running[key]
            if task.cancelled():
                self.journal.end(row, "interrupted", None, "cancelled")
                self._step_event(key, "interrupted", None)
                continue
            outcome = task.result()
            self.journal.end(row, outcome.state, outcome.result, outcome.error)
            self._step_event(key, outcome.state, outcome.result.get("job_id"))
            log.info("campaign %s: %s%s %s%s", self.cid, key[0], f" {key[1]}" if key[1] else "", outcome.state,
                     f": {outcome.error}" if outcome.error else "")
            if key == ("check", None) and outcome.state == "done":
                assignment = outcome.result.get("assignment")
                self.journal.set_versions(self.cid, from_version=outcome.result.get("vehicle_version"),
                                          to_version=assignment.get("target_vehicle_version") if assignment else None,
                                          assignment=assignment)
            if key == ("ota_mode_on", None) and outcome.state == "done":
                self._start_renewer()
            if key == ("ota_mode_off", None):
                await self._stop_renewer()

    def _step_event(self, key: Key, state: str, job_id: Any) -> None:
        """agent.campaign.step: a journal transition, sent once the journal row is committed."""
        self.publish("agent.campaign.step", {"campaign_id": self.cid, "step": key[0], "ecu": key[1], "state": state,
                                             "job_id": str(job_id) if job_id is not None else None})

    def _phase(self, decision: Decision) -> None:
        if (decision.phase, decision.ending) != (self.phase, self.ending) or decision.finished is not None:
            self.phase, self.ending = decision.phase, decision.ending
            params: dict[str, Any] = {"campaign_id": self.cid, "state": decision.phase, "ending": decision.ending}
            if decision.finished is not None:
                params.update(result=decision.finished.result, detail=decision.finished.detail)
            self.publish("agent.campaign.state", params)

    def _finish(self, decision: Decision) -> None:
        outcome = decision.finished
        assert outcome is not None
        self.outcome = outcome
        installed: dict[str, Any] = {}
        ctx = self._context()
        images = (ctx.get("download") or {}).get("images") or {}
        previous = (ctx.get("download") or {}).get("previous") or {}
        for ecu, state in outcome.ecus.items():
            if state == "installed" and ecu in images:
                installed[ecu] = images[ecu]
            elif state == "rolled_back" and previous.get(ecu):
                installed[ecu] = previous[ecu]
        self.journal.finish(self.cid, outcome.result, outcome.detail, outcome.ecus, installed)
        log.info("campaign %s ended: %s (%s)", self.cid, outcome.result, outcome.detail)

    # -- preconditions watched during installation ----------------------------------------------
    def _journal_violation(self, outcome: StepOutcome) -> None:
        row = self.journal.begin(self.cid, "watch", None, {"phase": "install"})
        self.journal.end(row, "failed", outcome.result, outcome.error)
        log.warning("campaign %s: preconditions violated: %s", self.cid, outcome.error)

    async def _violated_now(self) -> bool:
        from agent.errors import OtaError

        try:
            outcome = await self.steps.preconditions("install")
        except OtaError as e:
            log.warning("campaign %s: the preconditions could not be asked before a flash: %s", self.cid, e)
            return False
        if outcome.state != "failed":
            return False
        self._journal_violation(outcome)
        return True

    async def _watch(self) -> StepOutcome:
        from agent.errors import OtaError

        with self.steps.peer_events.watch([verdict_key("install")]) as changed:
            while True:
                try:
                    outcome = await self.steps.preconditions("install")
                    if outcome.state == "failed":
                        return outcome
                except OtaError as e:
                    log.warning("campaign %s: watching the preconditions: %s", self.cid, e)
                await _woken(changed, max(self.steps.poll, VERDICT_RECHECK_S))

    def _start_watch(self) -> None:
        if self._watcher is None:
            self._watcher = asyncio.create_task(self._watch(), name=f"campaign:{self.cid}:watch")
            self._watcher.add_done_callback(lambda _t: self._wake.set())

    def _take_watch(self) -> None:
        task = self._watcher
        if task is not None and task.done():
            self._watcher = None
            if not task.cancelled():
                self._journal_violation(task.result())

    async def _stop_watch(self) -> None:
        task, self._watcher = self._watcher, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # -- OTA mode lease --------------------------------------------------------------------------
    async def _take_up_ota_mode(self) -> None:
        from agent.errors import OtaError

        try:
            await self.steps.ota_mode_enter()
        except OtaError as e:
            log.warning("campaign %s: re-entering OTA mode after the restart failed: %s", self.cid, e)
        self._start_renewer()

    def _start_renewer(self) -> None:
        if self._renewer is None:
            self._renewer = asyncio.create_task(self.steps.renew_ota_mode(), name=f"campaign:{self.cid}:lease")

    async def _stop_renewer(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
            self._renewer = None


def _violation_journalled(rows: Any) -> bool:
    return any(r.step == "watch" and r.state == "failed" for r in rows)


def _ota_mode_held(rows: Any) -> bool:
    on = any(r.step == "ota_mode_on" and r.state == "done" for r in rows)
    off = any(r.step == "ota_mode_off" and r.state == "done" for r in rows)
    return on and not off
