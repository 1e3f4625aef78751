"""The campaign's steps carried out with the other daemons (IPC calls, contract method names).

One coroutine per step of :mod:`agent.engine.campaign`; each returns a
:class:`StepOutcome` (``done`` with its result, or ``failed`` with the error text)
and never raises for a failure of the step itself: a daemon answering with an
error, a daemon that is gone, a job that failed. A daemon that died or restarted under
the step (the connection lost, not running, shutting down: a ``TransportError`` that is
not a timeout) makes it ``interrupted``: the core starts it again, bounded by the loop
breaker. Cancellation (asyncio) passes through.

Waiting on downloads and jobs is woken by the peers' events (``dmclient.download.state``,
``update_agent.job.done``, relayed by the daemon into :class:`PeerEvents`) and then reads the
status; the status is also read every ``poll_interval`` without an event, since an event sent
while the IPC client was reconnecting, or before a restarted daemon was back, is lost.
Progress is relayed from those polls and from the update agent's progress events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.engine.campaign import Action
from agent.errors import OtaError, OtaTimeoutError, TransportError

log = logging.getLogger(__name__)

#: (daemon, method, params) -> result
CallFn = Callable[[str, str, Mapping[str, Any]], Awaitable[Any]]
#: s between consent re-checks when no event woke the wait (a lost event's backstop, not a poll)
CONSENT_RECHECK_S = 60.0
#: (ecu or None, step, bytes_done, bytes_total)
ProgressFn = Callable[[str | None, str, int, int], None]
#: the :class:`PeerEvents` key the system agent's ``system_agent.preconditions.verdict`` events of a
#: phase are relayed under (the driver's install watch waits on it)
def verdict_key(phase: str) -> str:
    return f"preconditions:{phase}"


#: s between two asks of the install verdict when no verdict event came (a lost event's backstop)
VERDICT_RECHECK_S = 2.0


class PeerEvents:
    """Wakes the steps waiting on a download target or a job when a peer's event names it."""

    def __init__(self) -> None:
        self._watchers: dict[str, set[asyncio.Event]] = {}

    def notify(self, key: str | None) -> None:
        """Something about ``key`` (a target or job id) changed; None: anything may have (a reconnection)."""
        for k, events in self._watchers.items():
            if key is None or k == key:
                for event in events:
                    event.set()

    @contextlib.contextmanager
    def watch(self, keys: Iterable[str]) -> Iterator[asyncio.Event]:
        """An event set on every notification of one of ``keys`` while the block runs."""
        event = asyncio.Event()
        keys = list(keys)
        for key in keys:
            self._watchers.setdefault(key, set()).add(event)
        try:
            yield event
        finally:
            for key in keys:
                watchers = self._watchers.get(key)
                if watchers is not None:
                    watchers.discard(event)
                    if not watchers:
                        del self._watchers[key]


async def _cancelled(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and wait for its end, whatever it ends with (its result is not wanted)."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _woken(event: asyncio.Event, timeout: float) -> None:
    """Until ``event`` is set or ``timeout`` s pass (the status poll's backstop); then clear it."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)
    event.clear()


@dataclass(frozen=True)
class StepOutcome:
    state: str  # done | failed | interrupted (the daemon carrying it out died under it)
    result: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None


def done(result: Mapping[str, Any] | None = None) -> StepOutcome:
    return StepOutcome("done", dict(result or {}))


def failed(error: str, result: Mapping[str, Any] | None = None) -> StepOutcome:
    return StepOutcome("failed", dict(result or {}), error)


def image_format(name: str) -> str:
    """The flash image format from a target or file name (.hex, .s19/.srec/.mot, .bin)."""
    suffix = Path(name).suffix.lower()
    if suffix in (".hex", ".ihex"):
        return "ihex"
    if suffix in (".s19", ".s28", ".s37", ".srec", ".mot"):
        return "srec"
    return "bin"


def order_target(ecu: Mapping[str, Any]) -> dict[str, Any]:
    """One ECU assignment (``dmclient.check`` result) as a download-order target.

    Mirrors :meth:`dmclient.uptane.assignment.EcuAssignment.order_target` on the JSON form.
    """
    name = re.sub(r"[^A-Za-z0-9._:+-]", "_", f"{ecu['ecu']}:{str(ecu['target']).rpartition('/')[2]}")[:64]
    out: dict[str, Any] = {"name": name, "length": ecu["length"], "hashes": dict(ecu["hashes"]), "url": ecu["url"]}
    if ecu.get("encryption"):
        out["encryption"] = dict(ecu["encryption"]["spec"])
    if ecu.get("delta"):
        d = ecu["delta"]
        out["delta"] = {"base": dict(d["base"]), "url": d["url"], "length": d["length"], "hashes": dict(d["hashes"])}
    return out


def _digests(image: Mapping[str, Any]) -> dict[str, Any]:
    """The verified target's length and hashes, for the update agent to check the cached file against
    before it flashes it (the file may have changed on the board's storage since its download)."""
    return {key: image[key] for key in ("length", "hashes") if image.get(key)}


def _err(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


class Steps:
    """Runs the steps of one campaign; see the module docstring."""

    def __init__(self, campaign_id: str, call: CallFn, progress: ProgressFn, *, baseline: Path,
                 ota_mode_lease: float, poll_interval: float, job_timeout: float,
                 consent: bool = True, clock: Callable[[], float] = time.monotonic,
                 source: Mapping[str, Any] | None = None,
                 install: Mapping[str, Any] | None = None,
                 ecu_buses: Mapping[str, tuple[str, int]] | None = None,
                 consent_wait: Callable[[float], Awaitable[Any]] | None = None,
                 peer_events: PeerEvents | None = None) -> None:
        self.cid = campaign_id
        #: for an install campaign: {release_dir, release, image_root, work_dir, ecus}
        self.install = install
        #: for a rollback campaign: the campaign it undoes ({id, check, download} of its journal)
        self.source = source
        self.call = call
        self.progress = progress
        self.baseline = baseline
        self.lease = ota_mode_lease
        self.poll = poll_interval
        self.job_timeout = job_timeout
        self.consent_required = consent
        self.clock = clock
        #: per ECU (bus, bitrate): the install-time estimate of the consent offer
        self.ecu_buses = dict(ecu_buses or {})
        #: waits (at most the given s) for a consent change; the engine wakes it on hmi_agent events
        self.consent_wait = consent_wait or asyncio.sleep
        #: wakes download and job waits on the peers' events (none relayed: the status poll alone)
        self.peer_events = peer_events or PeerEvents()

    async def run(self, action: Action, context: Mapping[str, Any]) -> StepOutcome:
        """Carry out ``action``; ``context``: results of earlier steps (check, download)."""
        fn = getattr(self, f"step_{action.step}", None)
        if fn is None:
            return failed(f"the engine has no step {action.step!r}")
        try:
            outcome: StepOutcome = await fn(action, context)
            return outcome
        except asyncio.CancelledError:
            raise
        except OtaTimeoutError as e:  # the daemon is there but did not answer: the step failed
            return failed(_err(e))
        except TransportError as e:
            # the daemon carrying the step out died or restarted under it (connection lost, not running,
            # shutting down): not the step's verdict. Interrupted: started again (the loop breaker bounds it)
            log.warning("campaign %s: step %s interrupted: %s", self.cid, action.step, _err(e))
            return StepOutcome("interrupted", {}, _err(e))
        except OtaError as e:
            return failed(_err(e))
        except Exception as e:  # a bug must not leave the step open forever: journal it as failed
            log.exception("campaign %s: step %s crashed", self.cid, action.step)
            return failed(f"internal error: {_err(e)}")

    # -- check ---------------------------------------------------------------------------------
    async def current_version(self) -> tuple[str | None, dict[str, Any]]:
        match = await self.call("update_agent", "update_agent.baseline.match",
                                {"software_baseline": str(self.baseline), "refresh": True})
        version = match.get("vehicle_version") if match.get("matched") else None
        return version, match

    async def step_check(self, action: Action, context: Mapping[str, Any]) -> StepOutcome:
        """The vehicle version and the assignment; plus ``ecu_versions``: the software version each
        ECU answered before the campaign (an A/B rollback switches banks only if the ECU runs another)."""
        version, match = await self.current_version()
        outcome = await self.check_against(version, match)
        if outcome.state != "done":
            return outcome
        return done({**outcome.result, "ecu_versions": ecu_versions(match)})

    async def check_against(self, version: str | None, match: Mapping[str, Any]) -> StepOutcome:
        if self.source is not None:
            return self.rollback_check(version, match)
        if self.install is not None:
            return await self.install_check(version)
        if version is None:
            return failed("the ECU versions match no vehicle version of the baseline "
                          f"({_mismatch(match)}); refusing to update a vehicle in an unknown state")
        check = await self.call("dmclient", "dmclient.check", {"vehicle_version": version})
        return done({"status": check["status"], "vehicle_version": version, "assignment": check["assignment"]})

    def rollback_check(self, version: str | None, match: Mapping[str, Any]) -> StepOutcome:
        """A rollback campaign's "assignment": the source campaign's previous images, back to its old version."""
        assert self.source is not None
        src_check, src_download = self.source["check"], self.source["download"]
        installed_version = src_check["assignment"]["target_vehicle_version"]
        if version != installed_version:
            return failed(f"the vehicle matches {version or 'no vehicle version'} ({_mismatch(match)}), not "
                          f"{installed_version} that campaign {self.source['id']} installed; nothing to roll back")
        ecus = []
        for ecu in src_download.get("images") or {}:
            prev = (src_download.get("previous") or {}).get(ecu)
            if prev and prev.get("independent"):
                return failed(f"campaign {self.source['id']} installed {ecu} by independent download; its previous "
                              "version is in that Linux ECU's other slot, which only a campaign's own rollback "
                              "switches back to: otactl rollback cannot roll a Linux ECU back")
            if not prev or not prev.get("path"):
                return failed(f"campaign {self.source['id']} kept no previous image of {ecu}")
            ecus.append({"ecu": ecu, "target": prev["name"], "length": prev["length"], "hashes": prev["hashes"],
                         "release_counter": prev["release_counter"], "software_version": "previous",
                         "release": f"rollback of {self.source['id']}"})
        return done({"status": "update", "vehicle_version": version, "assignment": {
            "target_vehicle_version": src_check["vehicle_version"], "ecus": ecus,
            "baseline": src_check["assignment"]["baseline"]}})

    async def install_check(self, version: str | None) -> StepOutcome:
        from agent.engine.release_dir import load_release

        assert self.install is not None
        i = self.install
        if i.get("image_root") is None:
            return failed("installing a release directory needs 'install.image_root' (the vehicle's trusted "
                          "Image root) in the engine's configuration")
        result = await asyncio.to_thread(
            load_release, Path(i["release_dir"]), i.get("release"), trusted_root=Path(i["image_root"]),
            work_dir=Path(i["work_dir"]), ecus=set(i["ecus"]), current_version=version)
        return done(result)

    async def install_download(self, context: Mapping[str, Any]) -> StepOutcome:
        """The images were verified into the engine's work directory by the check: no transfer."""
        ecus = context["check"]["assignment"]["ecus"]
        images = {e["ecu"]: {"path": e["path"], "format": image_format(e["target"]), "name": e["target"],
                             "length": e["length"], "hashes": dict(e["hashes"]),
                             "release_counter": e["release_counter"], "software_version": e["software_version"]}
                  for e in ecus}
        return done({"images": images, "previous": await self.previous_images([e["ecu"] for e in ecus])})

    async def rollback_download(self) -> StepOutcome:
        """The previous images are in the cache already (pinned previous:<ecu>): check and pin them."""
        assert self.source is not None
        src_download = self.source["download"]
        cache = {e["sha256"]: e["path"] for e in (await self.call("dmclient", "dmclient.cache.list", {}))["entries"]}
        images: dict[str, Any] = {}
        for ecu, prev in (src_download.get("previous") or {}).items():
            if ecu not in (src_download.get("images") or {}):
                continue
            sha = prev["hashes"]["sha256"]
            if sha not in cache:
                return failed(f"the previous image of {ecu} ({prev['name']}) is no longer in the package cache")
            await self.call("dmclient", "dmclient.cache.pin", {"sha256": sha, "owner": f"campaign:{self.cid}"})
            images[ecu] = {**prev, "path": cache[sha]}
        return done({"images": images, "previous": dict(src_download.get("images") or {})})

    # -- download ------------------------------------------------------------------------------
    async def step_download(self, action: Action, context: Mapping[str, Any]) -> StepOutcome:
        if self.source is not None:
            return await self.rollback_download()
        if self.install is not None:
            return await self.install_download(context)
        ready = await self.preconditions("download")  # the network, and what else the phase's rules say
        if ready.state == "failed":
            return failed(f"download preconditions not met: {ready.error}", ready.result)
        assignment = context["check"]["assignment"]
        ecus = [e for e in assignment["ecus"] if not e.get("independent")]
        linux = [e for e in assignment["ecus"] if e.get("independent")]
        jobs = dict(action.data.get("linux_jobs") or {})
        parts: list[Awaitable[StepOutcome]] = [self.linux_download(e, jobs[e["ecu"]], assignment) for e in linux]
        if ecus:
            parts.insert(0, self.gateway_download(ecus))
        # what each ECU runs now (the rollback image) is located and pinned while the new images download: it
        # does not depend on them, so this costs the step no time of its own; a failed download's pins go
        # with the campaign's other pins at its report
        previous_task = asyncio.ensure_future(
            self.previous_images([e["ecu"] for e in assignment["ecus"]], independent={e["ecu"] for e in linux}))
        try:
            outcomes = await asyncio.gather(*parts)
        except BaseException as exc:
            await _cancelled(previous_task)
            if isinstance(exc, asyncio.CancelledError):  # a cancel (or the engine stopping): the Linux ECUs stop too
                await asyncio.shield(self.cancel_linux_downloads([e["ecu"] for e in linux]))
            raise
        bad = [o.error for o in outcomes if o.state != "done"]
        if bad:
            await _cancelled(previous_task)
            if any(o.state == "interrupted" for o in outcomes):
                return StepOutcome("interrupted", {}, "; ".join(str(b) for b in bad))
            return failed("; ".join(str(b) for b in bad))
        images: dict[str, Any] = {}
        for o in outcomes:
            images.update(o.result["images"])
        images = {e["ecu"]: images[e["ecu"]] for e in assignment["ecus"]}  # assignment order
        return done({"images": images, "previous": await previous_task})

    async def gateway_download(self, ecus: list[Mapping[str, Any]]) -> StepOutcome:
        """The CAN ECUs' images through the gateway's dmclient (resumable, verified, into its cache)."""
        order = await self.call("dmclient", "dmclient.download.start",
                                {"targets": [order_target(e) for e in ecus], "pin": f"campaign:{self.cid}"})
        ids = [t["id"] for t in order["targets"]]
        with self.peer_events.watch(ids) as changed:
            while True:
                status = (await self.call("dmclient", "dmclient.download.status", {"ids": ids}))["targets"]
                total = sum(t["total"] or 0 for t in status)
                self.progress(None, "download", sum(t["bytes"] for t in status), total)
                bad = [t for t in status if t["state"] in ("failed", "cancelled")]
                if bad:
                    return failed("; ".join(f"{t['name']}: {t['error'] or t['state']}" for t in bad))
                if all(t["state"] == "done" for t in status):
                    break
                await _woken(changed, self.poll)
        by_id = {t["id"]: t for t in status}
        images: dict[str, Any] = {}
        for ecu, t in zip(ecus, (by_id[i] for i in ids), strict=True):
            images[ecu["ecu"]] = {"path": t["path"], "format": image_format(ecu["target"]), "name": ecu["target"],
                                  "length": ecu["length"], "hashes": dict(ecu["hashes"]),
                                  "release_counter": ecu["release_counter"],
                                  "software_version": ecu["software_version"]}
        return done({"images": images})

    async def linux_download(self, ecu: Mapping[str, Any], job_id: str, assignment: Mapping[str, Any]) -> StepOutcome:
        """A Linux ECU downloads its image itself (the update agent's job sends the order over SOME/IP and
        follows the ECU's status; its progress comes as the job's progress events)."""
        name, ind = str(ecu["ecu"]), ecu["independent"]
        targets = assignment.get("director_targets")
        if not targets:
            return failed(f"{name}: the check gave no Director targets metadata for its partial verification")
        action = Action("download", name, {"job_id": job_id})
        order = {"ecu": name, "instance": ind["instance"], "campaign_id": self.cid, "target": ecu["target"],
                 "url": ecu["url"], "length": ecu["length"], "hashes": dict(ecu["hashes"]),
                 "software_version": ecu["software_version"], "director_targets": targets["path"]}
        if ecu.get("encryption"):  # the url is the ciphertext's; the key is wrapped to the ECU's own key
            order["wrapped_key"] = json.dumps(ecu["encryption"]["spec"], sort_keys=True)
        outcome = await self.job(action, "update_agent.job.linux_download", order)
        if outcome.state != "done":
            return StepOutcome(outcome.state, outcome.result, f"{name}: {outcome.error}")
        image = {"path": None, "format": "linux", "name": ecu["target"], "length": ecu["length"],
                 "hashes": dict(ecu["hashes"]), "release_counter": ecu["release_counter"],
                 "software_version": ecu["software_version"], "independent": dict(ind), "job_id": job_id}
        return done({"images": {name: image}})

    async def cancel_linux_downloads(self, ecus: list[str]) -> None:
        for ecu in ecus:
            try:
                status = await self.call("update_agent", "update_agent.linux.cancel",
                                         {"ecu": ecu, "campaign_id": self.cid})
                log.info("campaign %s: %s download %s", self.cid, ecu, status["state"])
            except OtaError as e:  # refused once installing (or done with), or the ECU is gone
                log.info("campaign %s: the download of %s not cancelled: %s", self.cid, ecu, e)

    async def previous_images(self, ecus: list[str], independent: set[str] | frozenset[str] = frozenset()
                              ) -> dict[str, Any]:
        """What is installed on each ECU now, located in dmclient's cache and pinned for the rollback.

        dmclient's installed-image records are the source: the bench's end-of-line provisioning
        writes the factory images' records (and puts the images in the cache), and the engine
        records every install and rollback there (``dmclient.installed.record``).
        """
        installed = (await self.call("dmclient", "dmclient.installed.list", {}))["ecus"]
        cache = (await self.call("dmclient", "dmclient.cache.list", {}))["entries"]
        paths = {e["sha256"]: e["path"] for e in cache}
        out: dict[str, Any] = {}
        for ecu in ecus:
            rec = installed.get(ecu)
            if rec is None:
                continue
            if ecu in independent:  # the Linux ECU keeps its previous image itself (its other slot)
                out[ecu] = {**rec, "path": None, "format": "linux", "independent": True}
                continue
            sha = rec["hashes"]["sha256"]
            path = paths.get(sha)
            if path is not None:
                await self.call("dmclient", "dmclient.cache.pin", {"sha256": sha, "owner": f"campaign:{self.cid}"})
            out[ecu] = {**rec, "path": path, "format": image_format(rec["name"])} if path is not None else None
        return out

    # -- consent, preconditions, OTA mode ------------------------------------------------------
    async def step_consent(self, action: Action, context: Mapping[str, Any]) -> StepOutcome:
        """Offer the update and wait until it is accepted (now, by schedule, by deadline) or declined.

        Postponed, scheduled and pending offers keep this step open: the HMI agent moves them on
        by time and says so (``hmi_agent.consent.changed``); the wait is woken by that event or a
        reconnection (``consent_wait``), with a slow timer as the backstop for a lost event. The
        step is journalled as started, so an engine restart takes the wait up again, and asking
        again is idempotent (the HMI agent keys the offer by campaign id).
        """
        from agent.engine.offer import consent_offer

        params = {"campaign_id": self.cid, "offer": consent_offer(context["check"], self.ecu_buses)}
        while True:
            try:
                answer = await self.call("hmi_agent", "hmi_agent.consent.request", params)
            except (TransportError, OtaTimeoutError) as e:  # the HMI agent restarts: its decision is on disk
                log.warning("campaign %s: asking the HMI agent for consent failed (%s); waiting for it", self.cid, e)
            else:
                if answer["decision"] in ("accepted", "declined"):
                    return done({"decision": answer["decision"], "source": answer["source"]})
                log.info("campaign %s: consent %s (%s); waiting", self.cid, answer["decision"], answer["source"])
            await self.consent_wait(CONSENT_RECHECK_S)

    async def step_preconditions(self, action: Action, context: Mapping[str, Any]) -> StepOutcome:
        return await self.preconditions(str(action.data.get("phase", "install")))

    async def preconditions(self, phase: str) -> StepOutcome:
        """The system agent's verdict now: done, or failed naming each rule and the value seen (also the
        driver's watch during installation; raises OtaError when the system agent cannot answer)."""
        verdict = await self.call("system_agent", "system_agent.preconditions.check", {"phase": phase})
        if verdict["ok"]:
            return done({"ok": True})
        rules = "; ".join(f"{f['rule']} (seen {f['value']!r}, wants {f['expected']})" for f in verdict["failed"])
        return failed(rules, {"failed": verdict["failed"]})

    async def ota_mode_enter(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("system_agent", "system_agent.ota_mode.enter",
                                                 {"campaign_id": self.cid, "lease_s": self.lease})
        return result

    async def step_ota_mode_on(self, action: Action, context: Mapping[str, Any]) -> StepOutcome:
        state = await self.ota_mode_enter()
        if not state["active"]:
            return failed(f"the system agent did not enter OTA mode: {'; '.join(state['errors'])}")
        return done({"errors": state["errors"]})

    async def step_ota_mode_off(self, action: Action, context: Mapping[str, Any]) -> StepOutcome:
        state = await self.call("system_agent", "system_agent.ota_mode.exit", {"campaign_id": self.cid})
        if state["active"]:
            return failed("the system agent is still in OTA mode")
        return done({"errors": state["errors"]})

    async def renew_ota_mode(self) -> None:
        """Renew the lease every lease/3 while the campaign holds OTA mode (cancelled at exit)."""
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                await self.call("system_agent", "system_agent.ota_mode.renew",
                                {"campaign_id": self.cid, "lease_s": self.lease})
            except OtaError as e:
                log.warning("campaign %s: renewing the OTA-mode lease failed: %s", self.cid, e)

    # -- flash and rollback --------------------------------------------------------------------
    async def step_flash(self, action: Action, context: Mapping[str, Any]) -> StepOutcome:
        ecu = str(action.ecu)
        image = action.data["image"]
        if image.get("independent"):  # a Linux ECU: the install script handed over, install, activate
            outcome = await self.job(action, "update_agent.job.linux_install", {
                "ecu": ecu, "instance": image["independent"]["instance"], "campaign_id": self.cid,
                "script": image["independent"]["install_script"], "software_version": image["software_version"]})
        else:
            params = {"ecu": ecu, "image_path": image["path"], "format": image["format"], **_digests(image)}
            if image.get("software_version"):  # an A/B ECU already on it is not flashed again
                params["software_version"] = str(image["software_version"])
            outcome = await self.job(action, "update_agent.job.flash", params)
        if outcome.state == "done":
            await self.record_installed(ecu, image)
        return outcome

    async def step_rollback(self, action: Action, context: Mapping[str, Any]) -> StepOutcome:
        ecu = str(action.ecu)
        image = action.data.get("image")
        if action.data["method"] == "linux_rollback":  # a Linux ECU: its rollback call (back to the other slot)
            linux: dict[str, Any] = {"ecu": ecu, "campaign_id": self.cid}
            if action.data.get("expected_version"):
                linux["expected_version"] = str(action.data["expected_version"])
            outcome = await self.job(action, "update_agent.job.linux_rollback", linux)
            if outcome.state == "done" and image:
                await self.record_installed(ecu, image)
            return outcome
        params: dict[str, Any] = {"ecu": ecu, "method": action.data["method"]}
        if action.data["method"] == "switch_bank" and action.data.get("expected_version"):
            params["expected_version"] = str(action.data["expected_version"])
        if action.data["method"] == "reflash":
            if not image or not image.get("path"):
                return failed(f"no previous image to reflash {ecu} with")
            params.update(image_path=image["path"], format=image["format"], **_digests(image))
        outcome = await self.job(action, "update_agent.job.rollback", params)
        if outcome.state == "done" and image:
            await self.record_installed(ecu, image)
        return outcome

    async def record_installed(self, ecu: str, image: Mapping[str, Any]) -> None:
        await self.call("dmclient", "dmclient.installed.record", {"ecu": ecu, "image": {
            "name": image["name"], "length": image["length"], "hashes": dict(image["hashes"]),
            "release_counter": image["release_counter"]}})

    async def job(self, action: Action, method: str, params: dict[str, Any]) -> StepOutcome:
        """Start (or take up) an update-agent job and wait for its end."""
        ecu = str(action.ecu)
        prev = action.data.get("previous_job")
        if prev:
            status = await self.call("update_agent", "update_agent.job.status", {"job_id": prev})
            if status["state"] == "succeeded":
                log.info("campaign %s: %s job %s finished while the engine was away", self.cid, ecu, prev)
                return done({"job_id": prev, "job": status.get("result") or {}})
            if status["state"] in ("queued", "running"):
                log.info("campaign %s: waiting for %s job %s started before the restart", self.cid, ecu, prev)
                outcome = await self.wait_job(prev, ecu, action.step)
                if outcome.state == "done":
                    return outcome
            # failed, Interrupted, unknown: the ECU's script runs again from its start
        job_id = str(action.data["job_id"])
        await self.call("update_agent", method, {"job_id": job_id, **params})
        return await self.wait_job(job_id, ecu, action.step)

    async def wait_job(self, job_id: str, ecu: str, step: str) -> StepOutcome:
        with self.peer_events.watch([job_id]) as changed:
            return await self._wait_job(job_id, ecu, step, changed)

    async def _wait_job(self, job_id: str, ecu: str, step: str, changed: asyncio.Event) -> StepOutcome:
        deadline = self.clock() + self.job_timeout
        while True:
            try:
                status = await self.call("update_agent", "update_agent.job.status", {"job_id": job_id})
            except (TransportError, OtaTimeoutError) as e:
                # the update agent restarts or the connection dropped: the job's fate is in its
                # records (a job cut short by a restart reports failed/Interrupted); ask again
                if self.clock() > deadline:
                    raise
                log.warning("campaign %s: asking about job %s failed (%s); asking again", self.cid, job_id, e)
                await asyncio.sleep(max(self.poll, 0.5))
                continue
            state = status["state"]
            if state == "succeeded":
                return done({"job_id": job_id, "job": status.get("result") or {}})
            if state in ("failed", "unknown"):
                err = status.get("error") or {}
                text = f"{err.get('class', 'JobFailed')}: {err.get('message', state)}"
                if err.get("step"):
                    text += f" (at {err['step']})"
                if err.get("class") == "Interrupted":
                    # the update agent died under the job: not the ECU refusing the image. Journalled
                    # as an interruption (the loop breaker bounds it), not as a failed flash attempt
                    return StepOutcome("interrupted", {"job_id": job_id, "error": err}, text)
                return failed(text, {"job_id": job_id, "error": err})
            if self.clock() > deadline:
                return failed(f"OtaTimeoutError: {step} job {job_id} of {ecu} did not end within "
                              f"{self.job_timeout:.0f} s", {"job_id": job_id})
            await _woken(changed, self.poll)

    # -- verify, report --------------------------------------------------------------------------
    async def verify_against(self, action: Action, context: Mapping[str, Any]) -> StepOutcome:
        want = action.data.get("vehicle_version")
        baseline = context["check"]["assignment"]["baseline"]["path"]
        match = await self.call("update_agent", "update_agent.baseline.match",
                                {"software_baseline": baseline, "refresh": True})
        got = match.get("vehicle_version") if match.get("matched") else None
        if got == want:
            return done({"vehicle_version": got})
        return failed(f"expected {want}, the vehicle matches {got or 'no vehicle version'} ({_mismatch(match)})",
                      {"vehicle_version": got})

    async def step_verify(self, action: Action, context: Mapping[str, Any]) -> StepOutcome:
        return await self.verify_against(action, context)

    async def step_verify_rollback(self, action: Action, context: Mapping[str, Any]) -> StepOutcome:
        return await self.verify_against(action, context)

    # -- remote configuration --------------------------------------------------------------------
    async def step_configure(self, action: Action, context: Mapping[str, Any]) -> StepOutcome:
        """The assignment's configuration change, all or nothing, by the update agent (which gates it on
        the ECUs' software versions, reads every ECU back and puts its own change back on a failure)."""
        result = await self.call("update_agent", "update_agent.config.set", {"values": dict(action.data["values"])})
        if result.get("state") != "applied":
            return failed(f"{result.get('state')}: {result.get('reason')}", result)
        return done(result)

    async def step_config_read(self, action: Action, context: Mapping[str, Any]) -> StepOutcome:
        """The values the ECUs hold before the change: what ``configure_rollback`` puts back."""
        result = await self.call("update_agent", "update_agent.config.get", {"items": list(action.data["items"])})
        unread = [f"{v['item']}@{v['ecu']}: {v['error']}" for v in result["values"] if v.get("error")]
        if unread:
            return failed("not read: " + "; ".join(unread), result)
        return done(result)

    async def step_configure_rollback(self, action: Action, context: Mapping[str, Any]) -> StepOutcome:
        """Put the ECUs back on the values ``config_read`` journalled (only those not on them are written)."""
        previous = list(action.data["previous"])
        if not previous:
            return done({"state": "rolled_back", "ecus": []})
        result = await self.call("update_agent", "update_agent.config.restore", {"previous": previous})
        if result.get("state") != "rolled_back":
            return failed(f"{result.get('state')}: {result.get('reason')}", result)
        return done(result)

    async def step_report(self, action: Action, context: Mapping[str, Any]) -> StepOutcome:
        result = str(action.data.get("result"))
        notes: list[str] = []
        try:
            text = f"update {result}: {action.data.get('detail', '')}"[:4096]
            await self.call("hmi_agent", "hmi_agent.display", {"campaign_id": self.cid, "text": text})
        except OtaError as e:
            notes.append(f"display: {e}")
        if result != "succeeded":  # a Linux ECU still holding this campaign's download lets it go (else refused)
            assignment = (context.get("check") or {}).get("assignment") or {}
            await self.cancel_linux_downloads([e["ecu"] for e in assignment.get("ecus", []) if e.get("independent")])
        try:
            if result == "succeeded":
                await self.pin_rollback_images(context)
            await self.call("dmclient", "dmclient.cache.unpin", {"owner": f"campaign:{self.cid}"})
        except OtaError as e:
            notes.append(f"cache pins: {e}")
        config = ((context.get("check") or {}).get("assignment") or {}).get("config") or {}
        if result == "succeeded" and config.get("values"):
            try:  # written and read back on every ECU: the next manifest reports it (the Director stops assigning)
                await self.call("dmclient", "dmclient.configuration.record", {"values": dict(config["values"])})
            except OtaError as e:
                notes.append(f"configuration record: {e}")
        return done({"notes": notes})

    async def pin_rollback_images(self, context: Mapping[str, Any]) -> None:
        """Keep what a later rollback needs in the cache after the campaign's own pins go.

        ``installed:<ecu>``: the image now on the ECU (the next campaign's rollback image);
        ``previous:<ecu>``: the image it replaced (what ``otactl rollback`` reflashes).
        """
        download = context.get("download") or {}
        previous = download.get("previous") or {}
        for ecu, image in (download.get("images") or {}).items():
            for owner, img in ((f"installed:{ecu}", image), (f"previous:{ecu}", previous.get(ecu))):
                await self.call("dmclient", "dmclient.cache.unpin", {"owner": owner})
                if img and img.get("path"):
                    await self.call("dmclient", "dmclient.cache.pin",
                                    {"sha256": img["hashes"]["sha256"], "owner": owner})


def ecu_versions(match: Mapping[str, Any]) -> dict[str, str]:
    """Per ECU that answered: the software version in an ``update_agent.baseline.match`` report."""
    out: dict[str, str] = {}
    for row in (match.get("report") or {}).get("ecus") or []:
        if row.get("answered") and row.get("found_software"):
            out[str(row["ecu"])] = str(row["found_software"])
    return out


def _mismatch(match: Mapping[str, Any]) -> str:
    report = match.get("report") or {}
    for key in ("reason", "summary", "detail"):
        if report.get(key):
            return str(report[key])
    return "see 'otactl baseline'"
