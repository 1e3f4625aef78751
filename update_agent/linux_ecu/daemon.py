"""``ota-ecu-agent``: the update agent of a Linux ECU that downloads its own packages.

It offers the "OTA secondary" SOME/IP service (:mod:`.service`) to the gateway, checks every
download order by Uptane partial verification (:mod:`.partial`) against its own Director root,
then orders ITS OWN ``ota-dmclient`` over the stack's IPC (resumable, hash-verified, into that
dmclient's cache) and turns the dmclient's progress and state events into the ``status``
field. Install runs the gateway's install script into the inactive A/B slot (:mod:`.slots`),
activate switches slots ("reboot"), rollback switches back. Campaigns and the last accepted
Director targets version are kept in ``<state_dir>/state.json`` (replaced atomically), so a
restart of the agent, or of its dmclient, keeps them.

Configuration (a file of its own: the section ``ecu_agent`` plus ``runtime``)::

    ecu_agent:
      ecu: ivi                            # this ECU's name in the Director's targets (custom.ecu)
      hardware_id: IVI-0001               # optional: checked against the target's hardware id
      director_root: /etc/ota-ecu/director-root.json   # this ECU's own copy of the Director root
      state_dir: /var/lib/ota-ecu         # state.json and the slots (slots/slot_a, slots/slot_b)
      initial_version: "1.0.0"            # the version slot a holds at the very first start
      dmclient_socket: /run/ota-ecu/dmclient.sock      # default: <runtime dir>/dmclient.sock
      progress_interval: 0.2              # s: at most one progress notification per interval
      fail: none                          # bench: none | download | install | activate fails
      someip: {address: 127.0.0.30, instance_id: 1, sd: {group: 224.224.224.245, port: 30490}}

``fail`` is a bench knob (SIGHUP re-reads it): ``download`` refuses the image the dmclient
verified, ``install`` fails after the bytes are written into the slot (before it is marked
complete), ``activate`` makes the new slot fail to come up (the ECU keeps running the old one).

The install script the gateway hands over is a YAML list of steps, run in order::

    - write_slot      # the downloaded image into the inactive slot (hash-checked after writing)
    - check           # re-hash the slot against the order's SHA-256
    - set_next        # boot that slot at the next activation

``write_slot`` is required and comes first; a step may appear once.

One campaign at a time. The order carries nothing about earlier campaigns, and the gateway
runs one campaign at a time and resumes it (same campaign id) after any restart, so an order
of ANOTHER campaign means the gateway has ended the one held here: that one is superseded
(``cancelled``, error "superseded by campaign ..."): its download stops, and if it was
``installed`` (written, set to boot next, never activated) the running slot is set to boot next
again, so its image never runs and its rollback has nothing to undo. Only a campaign
``installing`` (its slot being written right now) makes the order fail with E_BUSY. A
superseded campaign that was activated cannot exist: ``active`` holds nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agent.config.node import Node
from agent.errors import OtaError, SomeIpError
from agent.ipc.client import IpcClient
from agent.ipc.server import Call, Handler
from agent.ipc.subscription import EventMessage
from agent.runtime.config import DaemonConfig
from agent.runtime.daemon import Daemon
from agent.someip.discovery import ServiceDiscovery
from agent.someip.provider import ServiceProvider
from dmclient.durable import publish
from dmclient.uptane.errors import UptaneVerificationError
from hmi_agent.someip_service import SomeIpSettings
from update_agent.linux_ecu import service
from update_agent.linux_ecu.partial import PartialVerifier
from update_agent.linux_ecu.slots import SlotError, SlotStore

log = logging.getLogger(__name__)

FAILS = ("none", "download", "install", "activate")
STEPS = ("write_slot", "check", "set_next")
#: states in which a campaign holds the ECU: another campaign's order supersedes it, except while installing
BUSY = ("downloading", "downloaded", "installing", "installed")
_NAME_CHARS = re.compile(r"[^A-Za-z0-9._:+-]")
_HEX = re.compile(r"^[0-9a-f]+$")


@dataclass(frozen=True, kw_only=True)
class EcuAgentConfig(DaemonConfig):
    ecu: str
    hardware_id: str | None = None
    director_root: Path
    state_dir: Path
    initial_version: str = ""
    dmclient_socket: Path | None = None
    progress_interval: float = 0.2
    fail: str = "none"
    someip: SomeIpSettings = field(default_factory=SomeIpSettings)

    @classmethod
    def own_fields(cls, node: Node) -> dict[str, Any]:
        def absolute(key: str, required: bool = True) -> Path | None:
            if not required and not node.has(key):
                return None
            value = Path(node.get(key, str))
            if not value.is_absolute():
                raise node.error(f"must be an absolute path, got {str(value)!r}", key)
            return value

        ecu = node.get("ecu", str)
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,63}$", ecu):
            raise node.error(f"expected an ECU name (letters, digits, ._:+-), got {ecu!r}", "ecu")
        root = absolute("director_root")
        assert root is not None
        if not root.is_file():
            raise node.error(f"no such file {str(root)!r} (this ECU's copy of the Director root)", "director_root")
        hardware_id = node.get("hardware_id", str) if node.has("hardware_id") else None
        return {"ecu": ecu, "hardware_id": hardware_id, "director_root": root, "state_dir": absolute("state_dir"),
                "initial_version": node.get("initial_version", str, ""),
                "dmclient_socket": absolute("dmclient_socket", required=False),
                "progress_interval": node.number("progress_interval", 0.2, minimum=0.0, maximum=60.0),
                "fail": node.choice("fail", FAILS, "none"),
                "someip": service.parse_service(node.child("someip", {}))}


class Refused(SomeIpError):
    """A call the agent refuses: the application return code and the reason (kept in the campaign's error)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason, return_code=code)


def parse_script(text: str) -> list[str]:
    """The install script's steps (Refused E_BAD_SCRIPT naming the problem)."""
    try:
        steps = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise Refused(service.E_BAD_SCRIPT, f"install script: not YAML: {e}") from None
    if not isinstance(steps, list) or not steps or not all(isinstance(s, str) for s in steps):
        raise Refused(service.E_BAD_SCRIPT, f"install script: expected a list of steps ({', '.join(STEPS)}), "
                      f"got {steps!r}")
    for i, step in enumerate(steps):
        if step not in STEPS:
            raise Refused(service.E_BAD_SCRIPT, f"install script step {i}: unknown step {step!r} "
                          f"(known: {', '.join(STEPS)})")
        if step in steps[:i]:
            raise Refused(service.E_BAD_SCRIPT, f"install script step {i}: {step} appears twice")
    if steps[0] != "write_slot":
        raise Refused(service.E_BAD_SCRIPT, f"install script: the first step must be write_slot, not {steps[0]}")
    return steps


@dataclass
class Campaign:
    """One campaign's download and install on this ECU (persisted as JSON)."""

    campaign_id: str
    target: str
    url: str
    length: int
    hashes: dict[str, str]
    software_version: str
    encryption: dict[str, Any] | None = None
    release_counter: int = 0
    state: str = "downloading"
    bytes_done: int = 0
    error: str = ""
    dm_target: str = ""
    path: str = ""
    from_slot: str = ""
    to_slot: str = ""

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Campaign:
        return cls(**data)


class AgentState:
    """``state.json``: the campaigns, the newest one, the Director targets version and counter accepted last."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.campaigns: dict[str, Campaign] = {}
        self.current = ""
        self.accepted_version = 0
        self.installed_counter = 0
        if path.exists():
            data = json.loads(path.read_text())
            self.campaigns = {k: Campaign.from_json(v) for k, v in data["campaigns"].items()}
            self.current = data["current"]
            self.accepted_version = int(data["accepted_version"])
            self.installed_counter = int(data["installed_counter"])

    def save(self) -> None:
        data = {"campaigns": {k: c.to_json() for k, c in self.campaigns.items()}, "current": self.current,
                "accepted_version": self.accepted_version, "installed_counter": self.installed_counter}
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".state-", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        publish(Path(tmp), self.path, mode=0o644)


class EcuAgentDaemon(Daemon):
    """ota-ecu-agent: a Linux ECU's own update agent (independent download over SOME/IP)."""

    name = "ecu_agent"
    config_class = EcuAgentConfig

    def __init__(self, *args: Any, monotonic: Callable[[], float] = time.monotonic, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.monotonic = monotonic
        self.store: SlotStore | None = None
        self.verifier: PartialVerifier | None = None
        self.agent_state: AgentState | None = None
        self.dm: IpcClient | None = None
        self.sd: ServiceDiscovery | None = None
        self.provider: ServiceProvider | None = None
        self._lock = asyncio.Lock()
        self._events: asyncio.Queue[EventMessage] = asyncio.Queue()
        self._last_progress: tuple[float, int] = (0.0, 0)
        self._flush: asyncio.TimerHandle | None = None
        self._notified: dict[str, object] | None = None

    @property
    def cfg(self) -> EcuAgentConfig:
        assert isinstance(self.config, EcuAgentConfig)
        return self.config

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        cfg = self.cfg
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        self.store = SlotStore(cfg.state_dir / "slots", initial_version=cfg.initial_version, crash=self._crash)
        self.verifier = PartialVerifier(cfg.director_root.read_bytes(), ecu=cfg.ecu, hardware_id=cfg.hardware_id)
        self.agent_state = AgentState(cfg.state_dir / "state.json")
        for c in self.agent_state.campaigns.values():
            if c.state == "installing":  # the agent died during the install: the slot state says what is done
                c.state, c.error = "failed", "install: interrupted by a restart of the ECU agent; install again"
                self.agent_state.save()
        sock = cfg.dmclient_socket or cfg.runtime_dir / "dmclient.sock"
        self.dm = IpcClient(sock, daemon="dmclient", connect_timeout=10.0, call_timeout=30.0)
        self.dm.on_connect(self._resync)
        await self.dm.subscribe("dmclient.download.progress", "dmclient.download.state",
                                callback=self._events.put_nowait)
        await self._resync()
        self.spawn(self._follow(), "dmclient-events")
        s = cfg.someip
        self.sd = ServiceDiscovery(s.sd)
        await self.sd.start()
        provider = ServiceProvider(service.secondary_interface(s.service_id, s.instance_id), self.sd,
                                   address=s.address, udp_port=s.udp_port, tcp_port=s.tcp_port)
        for method in ("order_download", "status", "cancel", "install", "activate", "rollback"):
            provider.method(method, self._handler(method))
        provider.set_field("status", self._payload(self._state().campaigns.get(self._state().current)))
        await provider.start()
        self.provider = provider
        log.info("ecu_agent: ECU %s offers 0x%04x.%d at %s; running %s (slot %s)", cfg.ecu, s.service_id,
                 s.instance_id, s.address, self._slots().state().running_version, self._slots().state().current)

    async def stop(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
        if self.provider is not None:
            await self.provider.stop()
        if self.sd is not None:
            await self.sd.close()
        if self.dm is not None:
            await self.dm.close()

    async def apply_config(self, old: Any, new: Any) -> None:
        if old.fail != new.fail:
            log.warning("ecu_agent: failure knob now %s", new.fail)

    def status_details(self) -> Mapping[str, Any]:
        return {"ecu": self.cfg.ecu, **self._slots_view()} if self.store is not None else {}

    def _slots_view(self) -> dict[str, Any]:
        st = self._state()
        c = st.campaigns.get(st.current)
        payload = self._payload(c) if c is not None else None
        campaign = None if payload is None else {k: payload[k] for k in ("campaign_id", "state", "bytes_done",
                                                                          "bytes_total", "error")}
        return {"running_version": self._slots().state().running_version, **self._slots().state().to_json(),
                "campaign": campaign}

    def handlers(self) -> dict[str, Handler]:
        async def slots(_call: Call) -> dict[str, Any]:
            return self._slots_view()

        return {"ecu_agent.slots": slots}

    # -- helpers ------------------------------------------------------------------------------------
    def _state(self) -> AgentState:
        assert self.agent_state is not None
        return self.agent_state

    def _slots(self) -> SlotStore:
        assert self.store is not None
        return self.store

    def _crash(self, step: str) -> None:
        fail = self.cfg.fail
        if (fail == "install" and step == "install:written") or (fail == "activate" and step == "activate:before"):
            raise SlotError(f"{step}: failure injected by the bench knob fail={fail}")

    def _payload(self, c: Campaign | None) -> dict[str, object]:
        slots = self._slots().state()
        if c is None:
            return service.status_payload(running_version=slots.running_version, slot=slots.current)
        return service.status_payload(c.campaign_id, c.state, c.bytes_done, c.length, slots.running_version,
                                      slots.current, c.error)

    def _changed(self, c: Campaign, *, save: bool = True) -> None:
        """Persist, then notify the field (the status of the newest campaign)."""
        st = self._state()
        if save:
            st.save()
        payload = self._payload(c)
        if self.provider is not None and st.current == c.campaign_id and payload != self._notified:
            self._notified = payload
            self.provider.set_field("status", payload)

    def _campaign(self, campaign_id: str) -> Campaign:
        c = self._state().campaigns.get(campaign_id)
        if c is None:
            raise Refused(service.E_UNKNOWN_CAMPAIGN, f"no campaign {campaign_id!r} on ECU {self.cfg.ecu}")
        return c

    def _fail(self, c: Campaign, error: str) -> None:
        log.error("ecu_agent: campaign %s: %s", c.campaign_id, error)
        c.state, c.error = "failed", error
        self._changed(c)

    def _handler(self, method: str) -> Callable[[Mapping[str, Any]], Any]:
        impl = getattr(self, f"_m_{method}")

        async def handle(request: Mapping[str, Any]) -> dict[str, object]:
            try:
                c: Campaign = await impl(request)
            except Refused as e:
                log.warning("ecu_agent: %s refused: %s", method, e)
                known = self._state().campaigns.get(request["campaign_id"])
                if known is not None and known.error != str(e):
                    known.error = str(e)  # the reason, for the caller (an ERROR message carries no text)
                    self._changed(known)
                raise
            if method != "status" and c.state != "failed" and c.error:
                c.error = ""  # an accepted request clears the last refusal
                self._changed(c)
            return self._payload(c)

        return handle

    # -- methods ------------------------------------------------------------------------------------
    async def _m_status(self, request: Mapping[str, Any]) -> Campaign:
        return self._campaign(request["campaign_id"])

    async def _m_order_download(self, request: Mapping[str, Any]) -> Campaign:
        async with self._lock:
            return await self._order(request)

    async def _order(self, o: Mapping[str, Any]) -> Campaign:
        st = self._state()
        cid, target = o["campaign_id"], o["target"]
        if not cid:
            raise Refused(service.E_BAD_ORDER, "the order has no campaign id")
        known = st.campaigns.get(cid)
        if known is not None and known.target != target:
            raise Refused(service.E_BAD_ORDER, f"campaign {cid} ordered target {known.target} already, not {target}")
        if known is not None and known.state not in ("failed", "cancelled"):
            return known  # idempotent
        held = [c for c in st.campaigns.values() if c.state in BUSY and c.campaign_id != cid]
        installing = [c for c in held if c.state == "installing"]
        if installing:
            raise Refused(service.E_BUSY, f"campaign {installing[0].campaign_id} is installing on this ECU")
        for old in held:  # the gateway ended it (see the module docstring): the new order supersedes it
            await self._supersede(old, cid)
        hashes = {k: o[k] for k in ("sha256", "sha512") if o[k]}
        c = Campaign(cid, target, o["url"], int(o["length"]), hashes, o["software_version"], state="failed")
        st.campaigns[cid] = c
        st.current = cid
        try:
            self._check_order(o, hashes)
            if o["wrapped_key"]:
                try:
                    c.encryption = json.loads(bytes(o["wrapped_key"]))
                except ValueError as e:
                    raise Refused(service.E_BAD_ORDER, f"wrapped_key: not the encryption spec as JSON: {e}") from None
            verifier = self.verifier
            assert verifier is not None
            try:
                accepted = await asyncio.to_thread(
                    verifier.verify, bytes(o["director_targets"]), ecu=o["ecu"], target=target, length=c.length,
                    hashes=hashes, software_version=c.software_version, last_version=st.accepted_version,
                    last_counter=st.installed_counter)
            except UptaneVerificationError as e:
                raise Refused(service.E_VERIFICATION, f"partial verification: {e}") from None
            st.accepted_version = max(st.accepted_version, accepted.version)
            c.release_counter = accepted.image.release_counter
            await self._start_download(c)
        except Refused as e:
            self._fail(c, str(e))
            raise
        return c

    async def _supersede(self, old: Campaign, by: str) -> None:
        """Let ``old`` go for campaign ``by``: its download stops, an install of it never boots; ``cancelled``."""
        was = old.state
        old.state, old.error = "cancelled", f"superseded by campaign {by} (it was {was})"
        await self._stop_download(old, was)
        if was == "installed":  # written and set to boot next, never activated: the running slot boots next again
            store = self._slots()
            await asyncio.to_thread(store.set_next, store.state().current)
            old.from_slot = ""  # nothing ran from it: its rollback has nothing to undo
        log.warning("ecu_agent: campaign %s (%s) superseded by campaign %s", old.campaign_id, was, by)
        self._changed(old)

    @staticmethod
    def _check_order(o: Mapping[str, Any], hashes: Mapping[str, str]) -> None:
        if not str(o["url"]).startswith("https://"):
            raise Refused(service.E_BAD_ORDER, f"url: expected an absolute https:// URL, got {o['url']!r}")
        if o["length"] <= 0:
            raise Refused(service.E_BAD_ORDER, "length: must be positive")
        for algorithm, size in (("sha256", 64), ("sha512", 128)):
            digest = hashes.get(algorithm)
            if digest is not None and (len(digest) != size or not _HEX.match(digest)):
                raise Refused(service.E_BAD_ORDER, f"{algorithm}: expected {size} lower-case hex digits")
        if "sha256" not in hashes:
            raise Refused(service.E_BAD_ORDER, "sha256: required")

    async def _start_download(self, c: Campaign) -> None:
        dm = self.dm
        assert dm is not None
        spec: dict[str, Any] = {"name": _NAME_CHARS.sub("_", c.target)[:64].lstrip("._:+-") or "image",
                                "url": c.url, "length": c.length, "hashes": dict(c.hashes)}
        if c.encryption is not None:
            spec["encryption"] = c.encryption
        pin = "campaign:" + _NAME_CHARS.sub("_", c.campaign_id)[:100]
        try:
            result = await dm.call("dmclient.download.start", {"targets": [spec], "pin": pin})
        except OtaError as e:
            raise Refused(service.E_DOWNLOAD_FAILED, f"the ECU's dmclient refused the order: {e}") from None
        c.state, c.error, c.bytes_done, c.path = "downloading", "", 0, ""
        c.dm_target = result["targets"][0]["id"]
        self._last_progress = (self.monotonic(), 0)
        log.info("ecu_agent: campaign %s: downloading %s (%d bytes) as dmclient target %s", c.campaign_id, c.url,
                 c.length, c.dm_target)
        self._changed(c)
        self._apply(result["targets"][0])

    async def _m_cancel(self, request: Mapping[str, Any]) -> Campaign:
        async with self._lock:
            c = self._campaign(request["campaign_id"])
            if c.state in ("cancelled", "failed", "rolled_back"):
                return c
            if c.state not in ("downloading", "downloaded"):
                raise Refused(service.E_WRONG_STATE, f"campaign {c.campaign_id} is {c.state}: a download can only be "
                              "cancelled before installing")
            was, c.state = c.state, "cancelled"  # before the dmclient's "cancelled" event can arrive
            await self._stop_download(c, was)
            self._changed(c)
            return c

    async def _stop_download(self, c: Campaign, was: str) -> None:
        if c.dm_target and was == "downloading":
            dm = self.dm
            assert dm is not None
            with contextlib.suppress(OtaError):
                await dm.call("dmclient.download.cancel", {"ids": [c.dm_target]})

    async def _m_install(self, request: Mapping[str, Any]) -> Campaign:
        async with self._lock:
            c = self._campaign(request["campaign_id"])
            if c.state in ("installed", "active"):
                return c
            if not (c.state == "downloaded" or (c.state == "failed" and c.path)):
                raise Refused(service.E_WRONG_STATE, f"campaign {c.campaign_id} is {c.state}: install needs the "
                              "downloaded image")
            steps = parse_script(request["script"])
            store = self._slots()
            c.state, c.error = "installing", ""
            c.from_slot = c.from_slot or store.state().current
            self._changed(c)
            try:
                await asyncio.to_thread(self._run_script, c, steps)
            except (SlotError, OSError) as e:
                self._fail(c, f"install: {e}")
                raise Refused(service.E_INSTALL_FAILED, f"install: {e}") from None
            c.state = "installed"
            self._changed(c)
            return c

    def _run_script(self, c: Campaign, steps: list[str]) -> None:
        store = self._slots()
        for step in steps:
            if step == "write_slot":
                state = store.install(Path(c.path), version=c.software_version, sha256=c.hashes["sha256"],
                                      boot_next=False, reuse=self.cfg.fail != "install")  # the knob always bites
                c.to_slot = state.inactive
            elif step == "check":
                store.check(c.to_slot)
                if store.state().slots[c.to_slot].sha256 != c.hashes["sha256"]:
                    raise SlotError(f"slot {c.to_slot} does not hold the ordered image")
            else:
                store.set_next(c.to_slot)
            log.info("ecu_agent: campaign %s: %s done", c.campaign_id, step)

    async def _m_activate(self, request: Mapping[str, Any]) -> Campaign:
        async with self._lock:
            c = self._campaign(request["campaign_id"])
            if c.state == "active":
                return c
            if c.state != "installed":
                raise Refused(service.E_WRONG_STATE, f"campaign {c.campaign_id} is {c.state}: activate needs it "
                              "installed")
            store = self._slots()
            if store.state().next != c.to_slot:
                raise Refused(service.E_WRONG_STATE, f"slot {c.to_slot} is not set to boot next (the install script "
                              "had no set_next)")
            try:
                await asyncio.to_thread(store.activate)
            except SlotError as e:
                self._fail(c, f"activate: slot {c.to_slot} did not come up ({e}); still running slot "
                              f"{store.state().current}")
                raise Refused(service.E_ACTIVATE_FAILED, c.error) from None
            st = self._state()
            st.installed_counter = max(st.installed_counter, c.release_counter)
            c.state = "active"
            log.info("ecu_agent: campaign %s: running %s in slot %s", c.campaign_id, c.software_version, c.to_slot)
            self._changed(c)
            return c

    async def _m_rollback(self, request: Mapping[str, Any]) -> Campaign:
        async with self._lock:
            st = self._state()
            cid = request["campaign_id"]
            if cid and cid not in st.campaigns:  # never ordered here: nothing to undo, and it stays so
                st.campaigns[cid] = Campaign(cid, "", "", 0, {}, "", state="rolled_back")
                st.current = cid
                self._changed(st.campaigns[cid])
            c = self._campaign(cid)
            if c.state == "rolled_back":
                return c
            if c.from_slot:
                try:
                    await asyncio.to_thread(self._slots().rollback, c.from_slot)
                except SlotError as e:
                    raise Refused(service.E_REFUSED, f"rollback: {e}") from None
            was, c.state = c.state, "rolled_back"
            await self._stop_download(c, was)
            log.info("ecu_agent: campaign %s: rolled back; running %s", c.campaign_id,
                     self._slots().state().running_version)
            self._changed(c)
            return c

    # -- the dmclient's events ------------------------------------------------------------------------
    async def _resync(self) -> None:
        """Re-read the dmclient's status of the downloads in flight (at start and after it restarted)."""
        dm = self.dm
        assert dm is not None
        ids = [c.dm_target for c in self._state().campaigns.values() if c.state == "downloading" and c.dm_target]
        if not ids:
            return
        try:
            result = await dm.call("dmclient.download.status", {"ids": ids})
        except OtaError as e:
            log.warning("ecu_agent: cannot read the dmclient's download status: %s", e)
            return
        for target in result["targets"]:
            self._apply(target)

    async def _follow(self) -> None:
        while True:
            event = await self._events.get()
            if event.event == "dmclient.download.progress":
                for p in event.params["targets"]:
                    self._progress(p)
            else:
                self._apply(event.params["target"])

    def _by_target(self, dm_target: str) -> Campaign | None:
        return next((c for c in self._state().campaigns.values() if c.dm_target == dm_target), None)

    def _progress(self, p: Mapping[str, Any]) -> None:
        c = self._by_target(p["id"])
        if c is None or c.state != "downloading":
            return
        c.bytes_done = int(p["bytes"])
        self._progress_due(c)

    def _progress_due(self, c: Campaign) -> None:
        """Notify progress at most every ``progress_interval`` and every 1 %; the last value is never held back."""
        last_time, last_bytes = self._last_progress
        if (c.bytes_done - last_bytes) * 100 < c.length:
            return
        wait = last_time + self.cfg.progress_interval - self.monotonic()
        if wait <= 0:
            self._last_progress = (self.monotonic(), c.bytes_done)
            self._changed(c, save=False)
        elif self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(wait, self._flush_progress, c.campaign_id)

    def _flush_progress(self, campaign_id: str) -> None:
        self._flush = None
        c = self._state().campaigns.get(campaign_id)
        if c is not None and c.state == "downloading":
            self._progress_due(c)

    def _apply(self, t: Mapping[str, Any]) -> None:
        c = self._by_target(t["id"])
        if c is None or c.state != "downloading":
            return
        state = t["state"]
        c.bytes_done = int(t.get("bytes", c.bytes_done))
        if state == "done":
            if self.cfg.fail == "download":
                self._fail(c, "download: the verified image is refused (bench knob fail=download)")
                return
            c.state, c.path, c.bytes_done = "downloaded", str(t["path"]), c.length
            log.info("ecu_agent: campaign %s: downloaded to %s", c.campaign_id, c.path)
            self._changed(c)
        elif state in ("failed", "cancelled"):
            self._fail(c, f"download {state}: {t.get('error') or 'by the dmclient'}")
        else:
            self._changed(c, save=False)


def main(argv: list[str] | None = None) -> int:
    return EcuAgentDaemon.main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
