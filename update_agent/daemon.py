"""``ota-update-agent``: the daemon that talks to the ECUs, on the shared runtime and IPC.

Wiring only; the work is in small modules:

=================================  ===================================================
:mod:`update_agent.daemon_config`  the ``update_agent`` config section
:mod:`update_agent.jobs`           persistent job table (SQLite) and its state machine
:mod:`update_agent.scheduler`      one job per bus at a time, buses in parallel
:mod:`update_agent.job_work`       a job's blocking work: the ``otactl flash`` path
:mod:`update_agent.rollback`       switch_bank (A/B revert + reset) and reflash
:mod:`update_agent.job_progress`   progress events at a bounded rate
:mod:`update_agent.functional`     functional 0x28 / 0x85 / 0x3E on a bus
:mod:`update_agent.remote_config`  configuration changes (0x2E / DBC broadcast, rollback)
=================================  ===================================================

The methods and events are declared in :mod:`agent.ipc.declarations.update_agent`.
Flash and rollback jobs run in worker threads (the UDS stack blocks); each bus has a
watchdog worker that is busy while a job runs on it and heartbeats on every step and
block, so systemd's watchdog stops being fed only when a flash really hangs. Requests
that would not make sense as a job (unknown ECU, missing image file, a single-bank ECU
asked to switch banks) are refused as invalid params (-32602) naming the field; a
flash that fails is not a call error but a job ending ``failed`` with class, message,
step and NRC.

On SIGTERM, running jobs are allowed to finish (a flash is not abandoned halfway by a
clean stop); jobs still queued stay queued in the table and report ``failed`` /
``Interrupted`` at the next start, as do jobs that were running when the process died.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.config.vehicle import VehicleConfig, load_vehicle_config
from agent.errors import ConfigurationError, OtaError
from agent.ipc.error_codes import SchemaError
from agent.ipc.server import Call, Handler
from agent.runtime.config import DaemonConfig
from agent.runtime.daemon import Daemon
from agent.runtime.watchdog import Worker
from update_agent.baseline.matching import match
from update_agent.daemon_config import UpdateAgentConfig
from update_agent.functional import FunctionalResult, changes_session, functional_buses, send_functional
from update_agent.job_progress import ProgressThrottle
from update_agent.jobs import FILENAME, Job, JobConflict, JobTable
from update_agent.linux_jobs import KINDS as LINUX_KINDS
from update_agent.linux_jobs import LinuxEcus, LinuxOutcome, bus_of
from update_agent.remote_config.change import VersionGateError, apply_change, plan_change, restore_values
from update_agent.remote_config.items import Catalog, ConfigItem, items_path, load_items
from update_agent.result import ProgressEvent
from update_agent.scheduler import BusScheduler
from update_agent.version_reading import SOURCES, VersionReading, freshest
from update_agent.version_store import VersionStore

if TYPE_CHECKING:
    from update_agent.job_work import Outcome
    from update_agent.version_collection import Collection

log = logging.getLogger(__name__)

#: s on top of an ECU's longest NRC 0x78 chain before a busy bus worker counts as stalled
_STALL_SLACK = 15.0


class UpdateAgentDaemon(Daemon):
    """ota-update-agent: ECU versions, baseline matching, flash and rollback jobs over UDS."""

    name = "update_agent"
    config_class = UpdateAgentConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.vehicle: VehicleConfig | None = None
        self.catalog: Catalog | None = None
        self.jobs: JobTable | None = None
        self.store: VersionStore | None = None
        self.scheduler: BusScheduler | None = None
        self._bus_workers: dict[str, Worker] = {}
        self._running: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._jobs_prefetched = False
        #: the Linux ECUs over SOME/IP (update_agent.linux_ecus), None when none is configured
        self.linux: LinuxEcus | None = None
        self._linux_tasks: set[asyncio.Task[Any]] = set()

    @property
    def cfg(self) -> UpdateAgentConfig:
        assert isinstance(self.config, UpdateAgentConfig)
        return self.config

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        cfg = self.cfg
        self.vehicle = await asyncio.to_thread(load_vehicle_config, cfg.vehicle_config)
        if cfg.config_items is not None:  # configured: a bad file stops the daemon
            self.catalog = await asyncio.to_thread(load_items, cfg.config_items, self.vehicle)
        self.jobs = await asyncio.to_thread(JobTable.open, cfg.state_dir / FILENAME,
                                            history_limit=cfg.history_limit)
        for job in await asyncio.to_thread(self.jobs.recover):
            log.warning("job %s (%s of %s) was cut short by the last stop: failed/Interrupted",
                        job.job_id, job.kind, job.ecu)
        self.store = await asyncio.to_thread(VersionStore.in_dir, cfg.state_dir)
        self.scheduler = BusScheduler(self._run_job, self.spawn)
        self._register_workers(self.vehicle)
        if cfg.linux is not None:
            self.linux = LinuxEcus(cfg.linux)
        _library_logs(self.vehicle, self.config.log_level)
        log.info("update_agent: vehicle %s (%d ECUs on %s), state in %s", cfg.vehicle_config,
                 len(self.vehicle.ecus), ", ".join(self.vehicle.buses), cfg.state_dir)

    def _register_workers(self, vehicle: VehicleConfig) -> None:
        for bus in vehicle.buses:
            ecus = [e for e in vehicle.ecus.values() if e.bus == bus]
            longest = max((e.timing.response_pending_limit + e.timing.request_timeout for e in ecus), default=0.0)
            deadline = max(self.config.worker_deadline, longest + _STALL_SLACK)
            if bus in self._bus_workers:
                self._bus_workers[bus].deadline = deadline
            else:
                self._bus_workers[bus] = self.worker(f"bus:{bus}", deadline)

    async def stop(self) -> None:
        self._stopping = True
        for task in list(self._linux_tasks):  # resumable at the ECU: reported Interrupted, the engine asks again
            task.cancel()
        if self._running:
            log.info("update_agent: letting %d running job(s) finish", len(self._running))
            await asyncio.gather(*list(self._running), return_exceptions=True)
        if self.linux is not None:
            await self.linux.close()
        if self.store is not None:
            self.store.close()
        if self.jobs is not None:
            self.jobs.close()

    async def apply_config(self, old: DaemonConfig, new: DaemonConfig) -> None:
        assert isinstance(new, UpdateAgentConfig)
        vehicle = await asyncio.to_thread(load_vehicle_config, new.vehicle_config)
        catalog = await asyncio.to_thread(load_items, new.config_items, vehicle) if new.config_items else None
        self.vehicle = vehicle  # jobs already running keep the config they started with
        self.catalog = catalog
        self._register_workers(vehicle)
        _library_logs(vehicle, new.log_level)

    def status_details(self) -> Mapping[str, Any]:
        details: dict[str, Any] = {"vehicle_config": str(self.cfg.vehicle_config),
                                   "state_dir": str(self.cfg.state_dir)}
        if self.scheduler is not None:
            details["buses"] = self.scheduler.snapshot()
        if self.jobs is not None:
            details["jobs"] = self.jobs.counts()
        return details

    # -- jobs -----------------------------------------------------------------------------------
    async def _run_job(self, job: Job) -> None:
        if self._stopping:  # left queued: reported Interrupted at the next start
            return
        task = asyncio.current_task()
        assert task is not None and self.jobs is not None and self.vehicle is not None
        self._running.add(task)
        loop = asyncio.get_running_loop()
        worker = self._bus_workers.get(job.bus)
        throttle = ProgressThrottle(self.cfg.progress_rate,
                                    lambda event: self._publish("update_agent.job.progress", event),
                                    clock=loop.time, call_later=loop.call_later)

        def progress(event: ProgressEvent) -> None:  # from the job's thread
            if worker is not None:
                worker.heartbeat()
            payload = {"job_id": job.job_id, "ecu": job.ecu, "step": event.step, "bytes_done": event.bytes_done,
                       "bytes_total": event.bytes_total, "blocks": event.blocks_done}
            loop.call_soon_threadsafe(throttle.offer, payload)

        def linux_progress(step: str, done: int, total: int) -> None:  # from the loop (a Linux ECU's job)
            throttle.offer({"job_id": job.job_id, "ecu": job.ecu, "step": step, "bytes_done": done,
                            "bytes_total": total, "blocks": 0})

        vehicle = self.vehicle
        jobs = self.jobs
        try:
            if worker is not None:
                worker.busy()
            await asyncio.to_thread(jobs.start, job.job_id)
            log.info("job %s: %s of %s on bus %s started", job.job_id, job.kind, job.ecu, job.bus)
            outcome: Outcome | LinuxOutcome
            if job.kind in LINUX_KINDS:
                assert self.linux is not None
                self._linux_tasks.add(task)
                outcome = await self.linux.run(job.kind, job.ecu, job.request, linux_progress)
            else:
                outcome = await asyncio.to_thread(_run_job, vehicle, job.kind, job.ecu, job.request, progress)
            await asyncio.to_thread(jobs.finish, job.job_id, outcome.state, result=outcome.result,
                                    error=outcome.error)
        finally:
            if job.kind in LINUX_KINDS:  # its last byte count is what a progress bar ends on
                throttle.flush()
            throttle.close()
            if worker is not None:
                worker.idle()
            self._running.discard(task)
            self._linux_tasks.discard(task)
        log.info("job %s: %s%s", job.job_id, outcome.state,
                 f" ({outcome.error['message']})" if outcome.error else "")
        self._publish("update_agent.job.done", {"job_id": job.job_id, "ecu": job.ecu, "state": outcome.state,
                                                "result": outcome.result, "error": outcome.error})

    def _publish(self, event: str, params: Mapping[str, Any]) -> None:
        try:
            self.publish(event, params)
        except SchemaError:  # a bug in what we publish must not kill a job's bookkeeping
            log.exception("update_agent: event %s not published", event)

    async def _submit(self, method: str, job_id: str, kind: str, ecu: str, request: dict[str, Any]) -> Job:
        assert self.jobs is not None and self.scheduler is not None and self.vehicle is not None
        bus = bus_of(ecu) if kind in LINUX_KINDS else self.vehicle.ecus[ecu].bus
        try:
            job, created = await asyncio.to_thread(self.jobs.submit, job_id, kind, ecu, bus, request)
        except JobConflict as e:
            raise SchemaError(f"{method}: params.job_id: {e}") from e
        if created:
            self.scheduler.submit(job)
            log.info("job %s: %s of %s queued on bus %s", job_id, kind, ecu, bus)
        else:
            log.info("job %s: asked again; it is %s", job_id, job.state)
        return job

    # -- methods --------------------------------------------------------------------------------
    def handlers(self) -> dict[str, Handler]:
        return {
            "update_agent.versions.read": self._versions_read,
            "update_agent.baseline.match": self._baseline_match,
            "update_agent.job.flash": self._job_flash,
            "update_agent.job.rollback": self._job_rollback,
            "update_agent.job.status": self._job_status,
            "update_agent.functional": self._functional,
            "update_agent.config.set": self._config_set,
            "update_agent.config.get": self._config_get,
            "update_agent.config.restore": self._config_restore,
            "update_agent.job.linux_download": self._job_linux,
            "update_agent.job.linux_install": self._job_linux,
            "update_agent.job.linux_rollback": self._job_linux,
            "update_agent.linux.cancel": self._linux_cancel,
            "update_agent.linux.status": self._linux_status,
        }

    def _ecu(self, method: str, name: str, field: str = "ecu") -> str:
        assert self.vehicle is not None
        if name not in self.vehicle.ecus:
            raise SchemaError(f"{method}: params.{field}: unknown ECU {name!r} "
                              f"(configured: {', '.join(self.vehicle.ecus)})")
        return name

    @staticmethod
    def _image(method: str, params: Mapping[str, Any]) -> dict[str, Any]:
        path = Path(params["image_path"])
        fmt = params.get("format")
        if not path.is_file():
            raise SchemaError(f"{method}: params.image_path: no such file: {path}")
        if fmt == "bin" and "base_address" not in params:
            raise SchemaError(f"{method}: params.base_address: a raw binary image needs its load address")
        if fmt != "bin" and "base_address" in params:
            raise SchemaError(f"{method}: params.base_address: applies to format 'bin' only, not {fmt!r}")
        out = {"image_path": str(path), "format": fmt}
        for key in ("base_address", "length", "hashes"):  # length, hashes: checked before the image is read
            if key in params:
                out[key] = params[key]
        return out

    async def _job_flash(self, call: Call) -> dict[str, Any]:
        m, p = call.method, call.params
        ecu = self._ecu(m, p["ecu"])
        job = await self._submit(m, p["job_id"], "flash", ecu, self._image(m, p))
        return {"job_id": job.job_id}

    async def _job_rollback(self, call: Call) -> dict[str, Any]:
        m, p = call.method, call.params
        assert self.vehicle is not None
        ecu = self._ecu(m, p["ecu"])
        request: dict[str, Any] = {"method": p["method"]}
        if p["method"] == "switch_bank":
            if self.vehicle.ecus[ecu].banks != "ab":
                raise SchemaError(f"{m}: params.method: {ecu} is a single-bank ECU with no other bank to switch "
                                  "to; use 'reflash' with the previous image")
            extra = sorted(k for k in ("image_path", "format", "base_address", "length", "hashes") if k in p)
            if extra:
                raise SchemaError(f"{m}: params.{extra[0]}: not used by switch_bank")
            if "expected_version" in p:
                request["expected_version"] = p["expected_version"]
        else:
            if "expected_version" in p:
                raise SchemaError(f"{m}: params.expected_version: used by switch_bank only (a reflash writes "
                                  "the previous image whatever the ECU runs)")
            if "image_path" not in p or "format" not in p:
                raise SchemaError(f"{m}: params.{'image_path' if 'image_path' not in p else 'format'}: "
                                  "reflash needs the previous image (image_path and format)")
            request.update(self._image(m, p))
        job = await self._submit(m, p["job_id"], "rollback", ecu, request)
        return {"job_id": job.job_id}

    def _linux_ecu(self, method: str, params: Mapping[str, Any]) -> tuple[LinuxEcus, str]:
        ecu = params["ecu"]
        if self.linux is None or ecu not in self.linux.settings.ecus:
            known = ", ".join(self.linux.settings.ecus) if self.linux else "none"
            raise SchemaError(f"{method}: params.ecu: {ecu!r} is not a Linux ECU of this vehicle "
                              f"(update_agent.linux_ecus: {known})")
        instance = self.linux.settings.ecus[ecu]
        if "instance" in params and params["instance"] != instance:
            raise SchemaError(f"{method}: params.instance: {ecu} is SOME/IP instance 0x{instance:04x} here, "
                              f"the assignment says 0x{params['instance']:04x}")
        return self.linux, ecu

    async def _job_linux(self, call: Call) -> dict[str, Any]:
        """A Linux ECU's download, install or rollback (:mod:`update_agent.linux_jobs`)."""
        m, p = call.method, call.params
        _, ecu = self._linux_ecu(m, p)
        if "director_targets" in p and not Path(p["director_targets"]).is_file():
            raise SchemaError(f"{m}: params.director_targets: no such file: {p['director_targets']}")
        kind = m.rpartition(".")[2]
        request = {k: v for k, v in p.items() if k not in ("job_id", "ecu", "instance")}
        job = await self._submit(m, p["job_id"], kind, ecu, request)
        return {"job_id": job.job_id}

    async def _linux_cancel(self, call: Call) -> dict[str, Any]:
        linux, ecu = self._linux_ecu(call.method, call.params)
        status = await linux.cancel(ecu, call.params["campaign_id"])
        log.info("linux ECU %s: cancel of %s: %s", ecu, call.params["campaign_id"], status.state)
        return status.to_json()

    async def _linux_status(self, call: Call) -> dict[str, Any]:
        linux, ecu = self._linux_ecu(call.method, call.params)
        return (await linux.status(ecu, call.params.get("campaign_id"))).to_json()

    async def _linux_readings(self) -> dict[str, VersionReading]:
        """The Linux ECUs' running versions (the ``status`` field over SOME/IP) as readings for the baseline."""
        if self.linux is None:
            return {}
        linux = self.linux

        async def one(ecu: str) -> VersionReading:
            now = time.time()
            try:
                version = await linux.running_version(ecu)
            except OtaError as e:
                return VersionReading.not_answering(ecu, "someip", now, f"SOME/IP: {e}")
            return VersionReading(ecu=ecu, source="someip", read_at=now, answered=True,
                                  software_version=version or None)

        readings = await asyncio.gather(*(one(e) for e in linux.settings.ecus))
        return {r.ecu: r for r in readings}

    async def _job_status(self, call: Call) -> dict[str, Any]:
        assert self.jobs is not None
        job = await asyncio.to_thread(self.jobs.get, call.params["job_id"])
        if job is None:
            return {"job_id": call.params["job_id"], "state": "unknown", "ecu": None}
        return job.status()

    async def _versions_read(self, call: Call) -> dict[str, Any]:
        assert self.vehicle is not None and self.scheduler is not None
        vehicle = self.vehicle
        names = [self._ecu(call.method, n, f"ecus[{i}]") for i, n in enumerate(call.params.get("ecus") or [])]
        wanted = names or list(vehicle.ecus)
        buses = {vehicle.ecus[n].bus for n in wanted}
        async with self.scheduler.buses(buses):  # never read an ECU while a job flashes its bus
            collection = await asyncio.to_thread(_collect, vehicle, ecus=wanted, store=self.store,
                                                 uds_timeout=self.cfg.uds_timeout)
        readings = dict(collection.readings)
        if not names:  # every ECU: the Linux ECUs' running versions too (over SOME/IP)
            readings.update(await self._linux_readings())
        return {"ecus": {name: _reading(r) for name, r in readings.items()}, "notes": collection.notes}

    def _prefetch_jobs(self) -> None:
        """Import the flash and rollback modules (bincopy, the UDS sequencer) and parse the ECUs' flash
        scripts in the background the first time the ECUs are asked about: a campaign's check comes before
        its first job, which then does not wait for them, and a daemon that has not been asked anything yet
        does not carry them (idle RSS)."""
        if self._jobs_prefetched:
            return
        self._jobs_prefetched = True
        vehicle = self.vehicle

        async def prefetch() -> None:
            try:
                await asyncio.to_thread(importlib.import_module, "update_agent.job_work")
                if vehicle is not None:
                    from update_agent.flashing import parse_flash_scripts

                    await asyncio.to_thread(parse_flash_scripts, vehicle)
            except Exception:  # the first job imports it again and reports the error as its own
                log.exception("update_agent: importing the job modules failed")

        self.spawn(prefetch(), "prefetch-job-modules")

    async def _baseline_match(self, call: Call) -> dict[str, Any]:
        self._prefetch_jobs()
        assert self.store is not None and self.vehicle is not None and self.scheduler is not None
        p = call.params
        hw_path = self._baseline_path(call.method, p, "hardware")
        sw_path = self._baseline_path(call.method, p, "software")

        def load() -> Any:
            from update_agent.baseline.loading import check_pair, load_hardware_baseline, load_software_baseline

            hardware = load_hardware_baseline(hw_path)
            software = load_software_baseline(sw_path)
            check_pair(hardware, software)
            return hardware, software

        hardware, software = await asyncio.to_thread(load)
        store = self.store
        readings = await asyncio.to_thread(_stored_readings, store)
        if p.get("refresh") or not readings:
            vehicle = self.vehicle
            async with self.scheduler.buses(vehicle.buses):
                collection = await asyncio.to_thread(_collect, vehicle, store=store, uds_timeout=self.cfg.uds_timeout)
            readings = collection.readings
        readings = {**readings, **await self._linux_readings()}
        report = match(hardware, software, readings)
        return {"matched": report.ok, "vehicle_version": report.vehicle_version,
                "sequence": report.software.matched.sequence if report.software.matched else None,
                "report": report.as_dict(time.time())}

    def _baseline_path(self, method: str, params: Mapping[str, Any], kind: str) -> Path:
        if f"{kind}_baseline" in params:
            return Path(params[f"{kind}_baseline"])
        configured = self.cfg.hardware_baseline if kind == "hardware" else self.cfg.software_baseline
        if configured is None:
            raise SchemaError(f"{method}: params.{kind}_baseline: required, no baselines.{kind} is configured")
        return configured

    async def _functional(self, call: Call) -> dict[str, Any]:
        assert self.vehicle is not None and self.scheduler is not None
        vehicle = self.vehicle
        bus = call.params.get("bus")
        if bus is not None and bus not in vehicle.buses:
            raise SchemaError(f"{call.method}: params.bus: unknown bus {bus!r} (configured: "
                              f"{', '.join(vehicle.buses)})")
        buses = [bus] if bus is not None else functional_buses(vehicle)
        request = call.params["request"]
        send: Callable[[], Awaitable[FunctionalResult]] = lambda: asyncio.to_thread(  # noqa: E731
            send_functional, vehicle, request, buses)
        if changes_session(request):  # a session change must not hit an ECU in the middle of a flash
            async with self.scheduler.buses(buses):
                result = await send()
        else:
            result = await send()
        return {"buses": buses, "requests": result.sent, "answers": [a.to_json() for a in result.answers]}

    # -- remote configuration -----------------------------------------------------------------
    async def _catalog(self, method: str) -> Catalog:
        """The items: configured ones (loaded at start), else the default file, loaded on first use."""
        if self.catalog is None:
            assert self.vehicle is not None
            try:
                self.catalog = await asyncio.to_thread(load_items, items_path(None), self.vehicle)
            except ConfigurationError as e:
                raise SchemaError(f"{method}: no usable configuration items (update_agent.config_items): {e}") from e
        return self.catalog

    def _config_items(self, method: str, names: list[str]) -> list[ConfigItem]:
        assert self.catalog is not None
        unknown = [n for n in names if n not in self.catalog.items]
        if unknown:
            raise SchemaError(f"{method}: params: unknown configuration item {unknown[0]!r} "
                              f"(items: {', '.join(self.catalog.items)})")
        return [self.catalog.items[n] for n in names]

    async def _config_set(self, call: Call) -> dict[str, Any]:
        assert self.vehicle is not None and self.scheduler is not None
        m, p = call.method, call.params
        vehicle, catalog = self.vehicle, await self._catalog(call.method)
        ecus = [self._ecu(m, n, f"ecus[{i}]") for i, n in enumerate(p.get("ecus") or [])]
        items = self._config_items(m, list(p["values"]))
        try:
            plan = plan_change(catalog, list(p["values"].items()), ecus or None)
        except ConfigurationError as e:
            raise SchemaError(f"{m}: params.values: {e.reason}") from e
        buses = {vehicle.ecus[e].bus for item in items for e in item.ecus}

        def run() -> dict[str, Any]:
            from update_agent.remote_config.access import VehicleAccess  # cantools, CAN, UDS: loaded on first use

            with VehicleAccess(vehicle, catalog) as access:
                try:
                    return apply_change(access, plan).to_dict()
                except VersionGateError as e:
                    return {"state": "refused", "reason": str(e), "versions": {}, "ecus": [],
                            "too_old": {ecu: list(pair) for ecu, pair in e.too_old.items()}}

        async with self.scheduler.buses(buses):  # never configure an ECU while a job flashes its bus
            result = await asyncio.to_thread(run)
        log.info("configuration change %s: %s%s", ", ".join(p["values"]), result["state"],
                 f" ({result['reason']})" if result["reason"] else "")
        return result

    async def _config_restore(self, call: Call) -> dict[str, Any]:
        assert self.vehicle is not None and self.scheduler is not None
        m, p = call.method, call.params
        vehicle, catalog = self.vehicle, await self._catalog(m)
        previous = [(e["item"], self._ecu(m, e["ecu"], f"previous[{i}].ecu"), e["value"])
                    for i, e in enumerate(p["previous"])]
        self._config_items(m, [item for item, _, _ in previous])

        def run() -> dict[str, Any]:
            from update_agent.remote_config.access import VehicleAccess  # cantools, CAN, UDS: loaded on first use

            with VehicleAccess(vehicle, catalog) as access:
                return restore_values(access, catalog, previous).to_dict()

        try:
            async with self.scheduler.buses({vehicle.ecus[ecu].bus for _, ecu, _ in previous}):
                result = await asyncio.to_thread(run)
        except ConfigurationError as e:  # a value the item's encoding cannot carry, an ECU it does not concern
            raise SchemaError(f"{m}: params.previous: {e.reason}") from e
        log.info("configuration restore of %d value(s): %s", len(previous), result["state"])
        return result

    async def _config_get(self, call: Call) -> dict[str, Any]:
        assert self.vehicle is not None and self.scheduler is not None
        m, p = call.method, call.params
        vehicle, catalog = self.vehicle, await self._catalog(call.method)
        ecus = [self._ecu(m, n, f"ecus[{i}]") for i, n in enumerate(p.get("ecus") or [])]
        items = self._config_items(m, list(p.get("items") or catalog.items))
        wanted = [(item, ecu) for item in items for ecu in item.ecus if not ecus or ecu in ecus]

        def run() -> list[dict[str, Any]]:
            from update_agent.remote_config.access import VehicleAccess, read_value  # loaded on first use

            with VehicleAccess(vehicle, catalog) as access:
                return [read_value(access, item, ecu) for item, ecu in wanted]

        async with self.scheduler.buses({vehicle.ecus[ecu].bus for _, ecu in wanted}):
            values = await asyncio.to_thread(run)
        return {"values": values}


def _library_logs(vehicle: VehicleConfig, level: str) -> None:
    """udsoncan logs every request and block at INFO: in a daemon's journal only at debug level."""
    names = ["isotp", "UdsClient", "Connection"]
    for ecu in vehicle.ecus:
        names += [f"UdsClient[{ecu}]", f"Connection[{ecu}]"]
    for name in names:
        logging.getLogger(name).setLevel(logging.NOTSET if level == "debug" else logging.WARNING)


# The UDS, CAN and image libraries (udsoncan, can-isotp, python-can, cantools, bincopy, lxml) are
# imported by the first version read, baseline match or job, in its worker thread: an update agent
# that has not talked to the ECUs yet stays small (idle RSS), and the event loop never imports them.
def _collect(vehicle: VehicleConfig, **kwargs: Any) -> Collection:
    from update_agent.version_collection import collect

    return collect(vehicle, **kwargs)


def _run_job(vehicle: VehicleConfig, kind: str, ecu: str, request: Mapping[str, Any],
             progress: Callable[[ProgressEvent], None]) -> Outcome:
    from update_agent.job_work import run_job

    return run_job(vehicle, kind, ecu, request, progress)


def _stored_readings(store: VersionStore) -> dict[str, VersionReading]:
    """Per ECU the reading to match on, as a collection picks it: the newest answered one of any source."""
    by_source = [store.latest(source=source) for source in SOURCES]
    out: dict[str, VersionReading] = {}
    for ecu in sorted({e for readings in by_source for e in readings}):
        best = freshest([readings[ecu] for readings in by_source if ecu in readings])
        if best is not None:
            out[ecu] = best
    return out


def _reading(r: VersionReading) -> dict[str, Any]:
    return {"answered": r.answered, "part_number": r.part_number, "software_version": r.software_version,
            "hardware_version": r.hardware_version, "serial_number": r.serial_number, "source": r.source,
            "error": r.detail, "read_at": r.read_at}


def main(argv: list[str] | None = None) -> int:
    """Console script ``ota-update-agent [--config FILE] [--log-level LEVEL]``."""
    return UpdateAgentDaemon.main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
