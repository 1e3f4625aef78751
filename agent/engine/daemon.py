"""``ota-agent``: the campaign engine daemon on the shared runtime and IPC.

Wiring: the config (:mod:`agent.engine.config`) gives the journal, the vehicle
topology (bus and banks of every ECU, for the core's grouping) and the policy;
IPC clients of the other daemons (reconnecting; sockets from the same stack
config) carry the steps out (:mod:`agent.engine.steps`); one
:class:`~agent.engine.driver.CampaignDriver` runs the current campaign. At start
a campaign the journal still holds as running is taken up again (resume after a
crash or power cut). ``ota-agent --config FILE`` (console script) runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

from agent.config.vehicle import load_vehicle_config
from agent.engine.campaign import CampaignCore, EcuInfo, Policy, rollback_notes
from agent.engine.config import AgentConfig
from agent.engine.driver import CampaignDriver
from agent.engine.journal import CampaignRecord, Journal
from agent.engine.steps import PeerEvents, Steps, verdict_key
from agent.errors import OtaError, VehicleStateError
from agent.ipc.client import IpcClient
from agent.ipc.server import Call, Handler
from agent.runtime.config import peer_socket
from agent.runtime.daemon import Daemon

log = logging.getLogger(__name__)

PEERS = ("dmclient", "update_agent", "system_agent", "hmi_agent")
#: per step the longest a single IPC call may take (s)
CALL_TIMEOUTS = {"dmclient.check": 120.0, "update_agent.baseline.match": 60.0,
                 "update_agent.versions.read": 60.0, "system_agent.ota_mode.enter": 30.0}


class AgentDaemon(Daemon):
    """ota-agent: the campaign engine (journal, state machine, rollback, resume)."""

    name = "agent"
    config_class = AgentConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.journal: Journal | None = None
        self.core: CampaignCore | None = None
        self.peers: dict[str, IpcClient] = {}
        self.driver: CampaignDriver | None = None
        self._campaign_task: asyncio.Task[Any] | None = None
        self._repeats = 0
        #: download and job waits woken by dmclient.download.state / update_agent.job.done
        self._peer_events = PeerEvents()
        #: per ECU (bus, bitrate), for the consent offer's install-time estimate
        self._ecu_buses: dict[str, tuple[str, int]] = {}
        #: set by hmi_agent.consent.changed (and a reconnection): wakes a campaign waiting for consent
        self._consent_changed = asyncio.Event()
        #: campaign events for the HMI display, the latest per (campaign, what); sent in order by one task
        self._display_pending: dict[tuple[str, str], dict[str, Any]] = {}
        self._display_wake = asyncio.Event()

    @property
    def cfg(self) -> AgentConfig:
        assert isinstance(self.config, AgentConfig)
        return self.config

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        cfg = self.cfg
        vehicle = load_vehicle_config(cfg.vehicle_config)
        self.core = CampaignCore({name: EcuInfo(ecu.bus, ecu.banks) for name, ecu in vehicle.ecus.items()})
        self.journal = Journal(cfg.journal)
        for peer in PEERS:
            self.peers[peer] = IpcClient(peer_socket(peer, cfg.source), daemon=peer, connect_timeout=10.0,
                                         call_timeout=60.0)
        self.spawn(self._relay_job_progress(), "job-progress")
        self.spawn(self._watch_peer_events("dmclient", "dmclient.download.state", lambda p: p["target"]["id"]),
                   "download-events")
        self.spawn(self._watch_peer_events("update_agent", "update_agent.job.done", lambda p: p["job_id"]),
                   "job-events")
        self.spawn(self._watch_peer_events("system_agent", "system_agent.preconditions.verdict",
                                           lambda p: verdict_key(p["phase"])), "verdict-events")
        self._ecu_buses = {name: (ecu.bus, _bitrate(vehicle.buses.get(ecu.bus))) for name, ecu in vehicle.ecus.items()}
        self.spawn(self._watch_consent(), "consent-events")
        self.spawn(self._forward_display(), "hmi-display")
        active = self.journal.active()
        if active is not None:
            attempt = self.journal.take_up(active.id)
            log.info("agent: taking up campaign %s again (attempt %d)", active.id, attempt)
            self._run_campaign(active.id, active.policy, active.params)

    async def stop(self) -> None:
        if self._campaign_task is not None:
            self._campaign_task.cancel()
            await asyncio.gather(self._campaign_task, return_exceptions=True)
        for client in self.peers.values():
            await client.close()
        if self.journal is not None:
            self.journal.close()

    def status_details(self) -> Mapping[str, Any]:
        return {"campaign": self.driver.cid if self.driver else None,
                "phase": self.driver.phase if self.driver else None}

    # -- peers ----------------------------------------------------------------------------------
    async def call(self, daemon: str, method: str, params: Mapping[str, Any]) -> Any:
        return await self.peers[daemon].call(method, params, timeout=CALL_TIMEOUTS.get(method, 60.0))

    async def _relay_job_progress(self) -> None:
        """Relay the update agent's job progress as agent.campaign.progress of the running campaign."""
        client = self.peers["update_agent"]

        def relay(event: Any) -> None:
            p = event.params
            driver = self.driver
            if driver is not None and str(p["job_id"]).startswith(f"{driver.cid}-"):
                driver.on_progress(p["ecu"], p["step"], p["bytes_done"], p["bytes_total"])

        while True:
            try:
                await client.subscribe("update_agent.job.progress", callback=relay)
                return
            except OtaError as e:
                log.debug("agent: update agent not reachable for progress yet: %s", e)
                await asyncio.sleep(1.0)

    async def _watch_peer_events(self, peer: str, event: str, key: Callable[[Mapping[str, Any]], str]) -> None:
        """Wake the download or job waits an ``event`` names; every reconnection wakes them all."""
        client = self.peers[peer]
        client.on_connect(lambda: self._peer_events.notify(None))
        while True:
            try:
                await client.subscribe(event, callback=lambda e: self._peer_events.notify(str(key(e.params))))
                return
            except OtaError as e:
                log.debug("agent: %s not reachable for %s yet: %s", peer, event, e)
                await asyncio.sleep(1.0)

    # -- consent and the HMI display ---------------------------------------------------------------
    async def _watch_consent(self) -> None:
        """Wake a campaign waiting for consent on every decision change and every reconnection."""
        client = self.peers["hmi_agent"]
        client.on_connect(lambda: self._consent_changed.set())
        while True:
            try:
                await client.subscribe("hmi_agent.consent.changed", callback=lambda _e: self._consent_changed.set())
                return
            except OtaError as e:
                log.debug("agent: HMI agent not reachable for consent events yet: %s", e)
                await asyncio.sleep(1.0)

    async def _consent_wait(self, timeout: float) -> None:
        """Until a consent change (or ``timeout`` s); cleared after waking, so no change is missed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._consent_changed.wait(), timeout=timeout)
        self._consent_changed.clear()

    def _campaign_event(self, event: str, params: Mapping[str, Any]) -> int:
        """Publish a campaign event and queue it for the HMI display (phase, progress per ECU, result)."""
        cid = str(params["campaign_id"])
        if event == "agent.campaign.state":
            shown = {"campaign_id": cid, "phase": params["state"],
                     **{k: str(params[k])[:4096] for k in ("result", "detail") if params.get(k) is not None}}
            self._queue_display((cid, "state"), shown)
        elif event == "agent.campaign.progress":
            self._queue_display((cid, f"ecu:{params['ecu'] or ''}"), {
                "campaign_id": cid, "ecu": params["ecu"], "step": params["step"],
                "bytes_done": params["bytes_done"], "bytes_total": params["bytes_total"]})
        return self.publish(event, params)

    def _queue_display(self, key: tuple[str, str], shown: dict[str, Any]) -> None:
        self._display_pending.pop(key, None)  # the newest goes last
        self._display_pending[key] = shown
        self._display_wake.set()

    async def _forward_display(self) -> None:
        """Send queued display updates to the HMI agent; progress is coalesced while a call is out."""
        client = self.peers["hmi_agent"]
        while True:
            await self._display_wake.wait()
            self._display_wake.clear()
            while self._display_pending:
                key = next(iter(self._display_pending))
                shown = self._display_pending.pop(key)
                try:
                    await client.call("hmi_agent.display", shown, timeout=10.0)
                except OtaError as e:
                    log.debug("agent: display update not shown: %s", e)

    # -- campaigns ------------------------------------------------------------------------------
    def _new_id(self) -> str:
        return time.strftime("c%Y%m%d%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)

    def _run_campaign(self, campaign_id: str, policy: Policy, params: Mapping[str, Any] | None = None) -> None:
        assert self.journal is not None and self.core is not None
        cfg = self.cfg
        params = params or {}
        install = None
        if params.get("install") is not None:
            install = {**params["install"], "image_root": str(cfg.install_root) if cfg.install_root else None,
                       "work_dir": str(cfg.install_dir), "ecus": sorted(self.core.topology)}
        steps = Steps(campaign_id, self.call, lambda *a: self.driver.on_progress(*a) if self.driver else None,
                      baseline=cfg.baseline, ota_mode_lease=cfg.ota_mode_lease, poll_interval=cfg.poll_interval,
                      job_timeout=cfg.job_timeout, consent=policy.consent, source=params.get("source"), install=install,
                      ecu_buses=self._ecu_buses, consent_wait=self._consent_wait,
                      peer_events=self._peer_events)
        self.driver = CampaignDriver(campaign_id, self.journal, self.core, steps, self._campaign_event)
        self._campaign_task = self.spawn(self._drive(self.driver), f"campaign-{campaign_id}")

    async def _drive(self, driver: CampaignDriver) -> None:
        try:
            outcome = await driver.run()
        except OtaError as e:  # the journal itself failed: stop, the next start takes the campaign up
            log.error("agent: campaign %s stopped: %s", driver.cid, e)
            raise
        if self.driver is driver:
            self.driver = None
        record = self.journal.campaign(driver.cid) if self.journal else None
        kind = record.kind if record else "update"
        if (outcome.result == "succeeded" and kind == "update" and self.cfg.repeat
                and self._repeats < self.cfg.max_repeats):
            self._repeats += 1
            policy = record.policy if record else self.cfg.policy
            log.info("agent: campaign %s succeeded; checking again (repeat %d)", driver.cid, self._repeats)
            self._start_campaign("update", policy)
        else:
            self._repeats = 0

    def _start_campaign(self, kind: str, policy: Policy, params: Mapping[str, Any] | None = None) -> str:
        assert self.journal is not None
        if self.driver is not None:
            raise VehicleStateError(f"campaign {self.driver.cid} is running ({self.driver.phase}); "
                                    "wait for it to end or cancel it")
        cid = self._new_id()
        self.journal.create(cid, kind, policy, params=params)
        self._run_campaign(cid, policy, params or {})
        return cid

    def _campaign_json(self, record: CampaignRecord) -> dict[str, Any]:
        assert self.journal is not None
        out = record.to_json()
        live = self.driver if self.driver is not None and self.driver.cid == record.id else None
        out["phase"] = live.phase if live else ("done" if record.state == "ended" else "resuming")
        out["ending"] = live.ending if live else None
        out["cancel_requested"] = record.cancel_requested
        ecus: dict[str, Any] = {}
        states = self.journal.ecu_states(record.id)
        notes = rollback_notes(self.journal.steps(record.id))
        assignment_ecus = list(states)
        for ecu in sorted(set(assignment_ecus) | set(record.ecu_outcomes)):
            st = states.get(ecu, {"job_id": None, "attempts": 0, "outcome": "untouched"})
            prog = live.progress.get(ecu, {}) if live else {}
            ecus[ecu] = {"outcome": record.ecu_outcomes.get(ecu, st["outcome"]), "attempts": st["attempts"],
                         "job_id": st["job_id"], "step": prog.get("step"),
                         "bytes_done": prog.get("bytes_done", 0), "bytes_total": prog.get("bytes_total", 0),
                         "note": notes.get(ecu)}
        out["ecus"] = ecus
        return out

    # -- methods --------------------------------------------------------------------------------
    def handlers(self) -> dict[str, Handler]:
        async def status(call: Call) -> Any:
            assert self.journal is not None
            active = self.journal.active()
            last = next((c for c in self.journal.history(5) if c.state == "ended"), None)
            return {"state": "running" if active else "idle",
                    "campaign": self._campaign_json(active) if active else None,
                    "last": self._campaign_json(last) if last else None}

        async def check(call: Call) -> Any:
            version, _match = await Steps("check", self.call, lambda *a: None, baseline=self.cfg.baseline,
                                         ota_mode_lease=1, poll_interval=1, job_timeout=1).current_version()
            if version is None:
                raise VehicleStateError("the ECU versions match no vehicle version of the baseline; see "
                                        "'otactl baseline'")
            result = await self.call("dmclient", "dmclient.check", {"vehicle_version": version})
            a = result.get("assignment")
            out = {"status": result["status"], "vehicle_version": version, "matched": True,
                   "target_vehicle_version": a["target_vehicle_version"] if a else None,
                   "ecus": [{"ecu": e["ecu"], "software_version": e["software_version"], "length": e["length"],
                             "release": e["release"]} for e in (a["ecus"] if a else [])]}
            if a:
                config = (a.get("config") or {}).get("values") or {}
                out["kind"] = "configuration" if config and not a["ecus"] else "software"
                if config:
                    out["config"] = dict(config)
            return out

        async def update(call: Call) -> Any:
            base = self.cfg.policy
            policy = Policy(base.flash_attempts, base.rollback_attempts, base.loop_limit, base.all_or_nothing,
                            base.install_last, consent=not call.params.get("yes", False))
            return {"campaign_id": self._start_campaign("update", policy)}

        async def install(call: Call) -> Any:
            base = self.cfg.policy
            policy = Policy(base.flash_attempts, base.rollback_attempts, base.loop_limit, base.all_or_nothing,
                            base.install_last, consent=not call.params.get("yes", False))
            params = {"install": {"release_dir": call.params["release_dir"], "release": call.params.get("release")}}
            return {"campaign_id": self._start_campaign("install", policy, params)}

        async def cancel(call: Call) -> Any:
            if self.driver is None:
                raise VehicleStateError("no campaign is running")
            return {"campaign_id": self.driver.cid, "detail": self.driver.cancel()}

        async def rollback(call: Call) -> Any:
            assert self.journal is not None
            if self.driver is not None:
                raise VehicleStateError(f"campaign {self.driver.cid} is running; a failing campaign rolls back "
                                        "by itself, or cancel it")
            source = next((c for c in self.journal.history(1000) if c.result == "succeeded"), None)
            if source is None:
                raise VehicleStateError("no successful campaign in the journal: nothing to roll back")
            results = {r.step: dict(r.result or {}) for r in self.journal.steps(source.id)
                       if r.ecu is None and r.state == "done" and r.step in ("check", "download")}
            if set(results) != {"check", "download"}:
                raise VehicleStateError(f"campaign {source.id} has no check and download records to roll back")
            base = self.cfg.policy
            policy = Policy(base.flash_attempts, base.rollback_attempts, base.loop_limit, base.all_or_nothing,
                            base.install_last, consent=not call.params.get("yes", False))
            params = {"source": {"id": source.id, **results}}
            return {"campaign_id": self._start_campaign("rollback", policy, params)}

        async def history(call: Call) -> Any:
            assert self.journal is not None
            return {"campaigns": [self._campaign_json(c) for c in self.journal.history(call.params.get("limit", 20))]}

        return {"agent.status": status, "agent.check": check, "agent.update": update, "agent.install": install,
                "agent.cancel": cancel, "agent.rollback": rollback, "agent.history": history}


def _bitrate(bus: Any) -> int:
    """The payload bitrate of a configured bus (the data phase of CAN FD); 500 kbit/s if unknown."""
    if bus is None:
        return 500_000
    return int(bus.data_bitrate or bus.bitrate)


def main(argv: list[str] | None = None) -> int:
    return AgentDaemon.main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
