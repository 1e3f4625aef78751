"""One bench, assembled in a temporary directory: what tests, ``otactl demo`` and the torture harness share.

:class:`Scenario` (a context manager) builds and runs, in order:

1. the bench PKI (:func:`bench.pki.generate`: CA, backend server cert, vehicle client cert
   with CN = VIN, the vehicle's content-key pair);
2. the factory images and the release images (:mod:`bench.appimage`, Intel HEX at each
   ECU's first memory region) and two releases built with the real release builder
   (:func:`bench.repository.builder.build_release`) along the three-node route of
   ``configs/bench-sw-baseline.xml``: ``bv-1.1.0`` (engine 1.1.0, with a bsdiff4 delta
   from the factory image) and ``bv-1.2.0`` (brake 3.5.0 on A/B banks, body 2.1.0
   encrypted); the route file, the vehicle registry with the vehicle's manifest key, the
   Director;
3. the vehicle's vehicle config (``configs/bench-vehicle.yaml`` with bench timings, each
   ECU's image size, start version and fault knobs in its ``sim:`` section);
4. the vehicle's end-of-line provisioning: both trust anchors (root v1), the manifest
   signing key, the installed-image records of the factory images in dmclient's Uptane
   state and the factory images in dmclient's package cache (pinned ``factory``: the
   image a single-bank rollback reflashes);
5. processes, each awaited on its ready line (:class:`~bench.readyproc.ReadyProcess`):
   the bench backend (``python -m bench.backend``: HTTPS, mutual TLS, the repositories),
   the bench bus (``otactl bench bus``) and the simulated ECUs (``otactl bench ecus
   --no-hub``: engine and brake (A/B) on ``powertrain``, body on ``body``), so the ECUs
   can be restarted (with other fault knobs) while the bus and the daemons stay; and the
   vehicle simulator (``otactl bench vehicle``, :mod:`bench.vehicle`): the vehicle's
   signals (DBC messages) on both buses from the bench vehicle state file
   (:meth:`Scenario.set_vehicle_state`), the scripted scenario ``vehicle_scenario``
   (:meth:`Scenario.start_vehicle` switches it), the gateway honouring the power hold;
6. the stack config for the daemons: ``configs/bench-stack.yaml`` rendered with the
   scenario's paths, backend URL and VIN (see that file); the system agent reads the
   vehicle state from the buses (``state_source: can``). Every SOME/IP node of the bench
   (the HMI agent's head-unit service, the Linux ECU and the update agent's node) uses the
   bench's own SD port (:attr:`Scenario.someip_sd_port`, a free UDP port), so two benches on
   one machine (a test run and the demo) never see each other's services; ``otactl hmi
   --someip`` and ``python -m bench.headunit`` read it from the rendered stack config.

On exit every process is stopped (SIGTERM, then SIGKILL) and the directory removed
(``keep=True`` keeps it for a post-mortem). :attr:`Scenario.env` is the environment for
anything that joins the bench (daemons, ``otactl``): private hub, runtime and state
directories, the vehicle config.

Fault injection per ECU: ``ScenarioOptions(faults={"brake": {"wrong_crc": {"times":
"always"}}})`` puts the knobs into that ECU's ``sim.faults`` (see :mod:`bench.ecu.simconfig`);
:func:`failing_flash` gives the knob ``--fail-ecu`` uses. :meth:`Scenario.restart_ecus`
restarts the simulated ECUs with new knobs (their flash contents persist).

Independent download: ``ScenarioOptions(linux_ecu=True)`` adds one Linux ECU (``ivi``, its own
``ota-dmclient`` and ``ota-ecu-agent`` processes, the "OTA secondary" SOME/IP service; see
:mod:`bench.independent`) that ``bv-1.1.0`` updates with the engine; the bench's software
baseline then lists it. The default bench has none.

Tests that build only part of this (the Uptane tests' in-process world, the baseline
tests' simulator) keep their own smaller helpers; this module is the whole bench.
"""

from __future__ import annotations

import copy
import hashlib
import os
import shutil
import string
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from securesystemslib.signer import CryptoSigner

from agent.errors import ConfigurationError
from bench.appimage import build_image, to_hex
from bench.independent import COUNTERS as LINUX_COUNTERS
from bench.independent import LINUX_ECU, VERSIONS, LinuxEcuSetup, free_udp_port, merge, write_baseline
from bench.pki import BENCH_VIN, BenchPki, generate
from bench.readyproc import ReadyProcess
from bench.vehicle.scenarios import PARKED, SCENARIOS

__all__ = ["PARKED", "Scenario", "ScenarioOptions"]

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
VEHICLE_TEMPLATE = CONFIGS / "bench-vehicle.yaml"
STACK_TEMPLATE = CONFIGS / "bench-stack.yaml"
SW_BASELINE = CONFIGS / "bench-sw-baseline.xml"
HW_BASELINE = CONFIGS / "bench-hw-baseline.xml"

V1, V2, V3 = "BV OS D 1.0.0", "BV OS D 1.1.0", "BV OS D 1.2.0"
ROUTE = (V1, V2, V3)
#: per vehicle version, each ECU's software version (as the baseline lists them)
ECU_VERSIONS: dict[str, dict[str, str]] = {
    V1: {"engine": "1.0.0", "brake": "3.4.0", "body": "2.0.0"},
    V2: {"engine": "1.1.0", "brake": "3.4.0", "body": "2.0.0"},
    V3: {"engine": "1.1.0", "brake": "3.5.0", "body": "2.1.0"},
}
#: release counter of each image (factory images: 1)
COUNTERS = {"1.0.0": 1, "3.4.0": 1, "2.0.0": 1, "1.1.0": 2, "3.5.0": 2, "2.1.0": 2}
DBC = CONFIGS / "bench-vehicle.dbc"

#: bench timings: short, so a lost frame fails in well under a second and tests stay fast
FAST_TIMING = {"p2": 0.05, "p2_star": 2.0, "request_timeout": 1.0, "tester_present_interval": 0.5,
               "transfer_retries": 2, "response_pending_limit": 30}
FAST_SIM = {"erase_time": 0.1, "response_pending_interval": 0.05}


def failing_flash(times: int | str = "always") -> dict[str, Any]:
    """The fault knobs of ``--fail-ecu``: the ECU computes a wrong CRC over what it received.

    The check-memory routine fails after the transfer, so the flash fails on every attempt
    (``times="always"``) or on the first ``times`` attempts. A rollback that reflashes the
    previous image (single-bank ECUs) is a flash too: give a count above the engine's
    retries for those, or the rollback fails as well; A/B rollback switches banks and is
    not affected.
    """
    return {"wrong_crc": {"times": times}}


@dataclass(frozen=True)
class ScenarioOptions:
    """What the bench looks like; the defaults are the demo's bench."""

    #: bytes of every application image (factory and releases)
    image_size: int = 16 * 1024
    #: the vehicle version the simulated ECUs hold at start (a node of :data:`ROUTE`)
    start_version: str = V1
    #: ECU name -> that ECU's ``sim.faults`` knobs
    faults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: the vehicle simulator's scripted scenario (:data:`bench.vehicle.scenarios.SCENARIOS`)
    vehicle_scenario: str = "parked"
    #: the vehicle's signals at start (signal -> value; None values are not sent: unknown to the
    #: system agent); default: the vehicle scenario's start values
    vehicle_state: Mapping[str, Any] | None = None
    #: the engine image of bv-1.1.0 also as a bsdiff4 delta from the factory image
    delta: bool = True
    #: the body image of bv-1.2.0 encrypted for the vehicle
    encrypt: bool = True
    #: a configuration change (item -> value, configs/bench-config-items.yaml) published with bv-1.1.0
    config_change: Mapping[str, str] = field(default_factory=dict)
    #: configuration-only releases (release name -> item -> value) applying to ``start_version``; the first
    #: is the route's published configuration of that node (:meth:`Scenario.write_route` changes it)
    config_releases: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    #: s to wait for each process's ready line
    ready_timeout: float = 60.0
    log_level: str = "info"
    #: keep the directory on exit (for a post-mortem)
    keep: bool = False
    #: extra keys merged into the rendered stack config, per section (e.g. {"hmi_agent": {"policy": "ask"}})
    stack_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: bench bus channel -> its fault injection at start (:mod:`bench.canbus.faults`: drop, delay, error,
    #: corrupt rates, delay_time, ids, seed); :meth:`Scenario.set_bus_faults` changes it at run time
    bus_faults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: add the Linux ECU that downloads its package itself (:mod:`bench.independent`)
    linux_ecu: bool = False
    #: bytes of its packages
    linux_image_size: int = 4 << 20
    #: keys replacing those of the Linux ECU's own dmclient section (e.g. its ``downloads``)
    linux_dmclient: Mapping[str, Any] = field(default_factory=dict)
    #: its package encrypted (the Director wraps the content key to the Linux ECU's own key, which it
    #: generates at run time)
    linux_encrypt: bool = False

    def __post_init__(self) -> None:
        if self.start_version not in ECU_VERSIONS:
            raise ConfigurationError(f"start_version must be one of {', '.join(ROUTE)}, got {self.start_version!r}")
        unknown = sorted(set(self.faults) - set(ECU_VERSIONS[V1]))
        if unknown:
            raise ConfigurationError(f"faults for unknown ECU {unknown[0]!r} (bench ECUs: engine, brake, body)")
        if self.vehicle_scenario not in SCENARIOS:
            raise ConfigurationError(f"vehicle_scenario must be one of {', '.join(SCENARIOS)}, "
                                     f"got {self.vehicle_scenario!r}")
        if self.image_size < 256:
            raise ConfigurationError(f"image_size must be at least 256 bytes, got {self.image_size}")
        from bench.canbus.faults import parse_channels

        parse_channels({k: dict(v) for k, v in self.bus_faults.items()}, source="ScenarioOptions.bus_faults")


class Scenario:
    """The bench in a temporary directory; see the module docstring. Use it as a context manager."""

    def __init__(self, options: ScenarioOptions | None = None, *, parent: Path | None = None) -> None:
        self.options = options or ScenarioOptions()
        self._parent = parent
        self.dir = Path()
        self.processes: dict[str, ReadyProcess] = {}
        self.backend_url = ""
        self.pki: BenchPki | None = None
        self.vin = BENCH_VIN
        self.vehicle_template: dict[str, Any] = {}
        #: (ecu, software version) -> Intel HEX file
        self.images: dict[tuple[str, str], Path] = {}
        #: the Linux ECU (options.linux_ecu), see bench.independent
        self.linux: LinuxEcuSetup | None = None
        #: the SOME/IP-SD port of every SOME/IP node of this bench (HMI service, Linux ECU): free, one per bench
        self.someip_sd_port = free_udp_port()

    # -- paths ------------------------------------------------------------------------------------
    @property
    def runtime_dir(self) -> Path:
        return self.dir / "run"

    @property
    def vehicle_config(self) -> Path:
        return self.dir / "vehicle.yaml"

    @property
    def stack_config(self) -> Path:
        return self.dir / "stack.yaml"

    @property
    def state_file(self) -> Path:
        return self.dir / "vehicle-state.yaml"

    @property
    def power_hold_file(self) -> Path:
        """The keep-awake request the system agent writes in OTA mode and the simulated gateway honours."""
        return self.dir / "vehicle" / "power-hold.json"

    @property
    def vehicle_status(self) -> Path:
        """What the vehicle simulator saw and did (JSON, :mod:`bench.vehicle.simulator`)."""
        return self.dir / "vehicle-sim.json"

    @property
    def sw_baseline(self) -> Path:
        """The software baseline the vehicle uses (with a Linux ECU: the bench's, listing it too)."""
        return self.dir / "baseline.xml" if self.options.linux_ecu else SW_BASELINE

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    @property
    def env(self) -> dict[str, str]:
        """The environment of anything joining this bench (daemons, otactl, test clients)."""
        env = dict(os.environ)
        env.update({
            "OTA_BENCH_HUB_DIR": str(self.dir / "hub"),
            "OTA_RUNTIME_DIR": str(self.runtime_dir),
            "OTA_UPDATE_AGENT_STATE_DIR": str(self.dir / "vehicle" / "update-agent"),
            "OTA_VEHICLE_CONFIG": str(self.vehicle_config),
            "OTA_SW_BASELINE": str(self.sw_baseline),
            "OTA_HW_BASELINE": str(HW_BASELINE),
            "OTA_STACK_CONFIG": str(self.stack_config),
            "OTA_BENCH_STATE_DIR": str(self.dir / "sim-state"),
        })
        env.pop("STATE_DIRECTORY", None)
        env.pop("NOTIFY_SOCKET", None)
        env.pop("WATCHDOG_USEC", None)
        return env

    # -- lifecycle --------------------------------------------------------------------------------
    def __enter__(self) -> Scenario:
        self.up()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.down()

    def up(self) -> None:
        """Build everything and start the backend, the bus and the ECUs; on failure, clean up and raise."""
        # /tmp, not a test's tmp_path: socket paths must stay under 108 bytes
        self.dir = Path(tempfile.mkdtemp(prefix="ota-bench-", dir=self._parent))
        try:
            self.build()
            self.start_backend()
            self.start_bus()
            self.start_ecus()
            self.start_vehicle()
            self.render_stack()
            self.start_linux_ecu()
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        """Stop every process (reverse order) and remove the directory (unless ``keep``)."""
        if self.linux is not None:
            self.linux.stop()
        for name in reversed(list(self.processes)):
            self.processes.pop(name).stop()
        if self.dir != Path() and self.dir.exists() and not self.options.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- building ---------------------------------------------------------------------------------
    def build(self) -> None:
        for sub in ("hub", "run", "logs", "vehicle", "images", "sim-state"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.pki = generate(self.dir / "pki", vin=self.vin)
        if self.options.linux_ecu:
            self.linux = LinuxEcuSetup(self.dir, image_size=self.options.linux_image_size,
                                       sd_port=self.someip_sd_port, dmclient=self.options.linux_dmclient,
                                       encrypt=self.options.linux_encrypt)
        self.vehicle_template = yaml.safe_load(VEHICLE_TEMPLATE.read_text())
        self._write_images()
        self._write_releases()
        self._write_vehicle_config(self.options.faults)
        self._provision_vehicle()
        start = self.options.vehicle_state
        self.set_vehicle_state(SCENARIOS[self.options.vehicle_scenario].start if start is None else start)

    def image_bytes(self, ecu: str, version: str) -> bytes:
        """The application image of ``ecu`` at ``version``; the factory ones equal what the simulator starts with."""
        sim = self.vehicle_template["ecus"][ecu]["sim"]
        return build_image(version, sim["part_number"], self.options.image_size)

    def _region_start(self, ecu: str) -> int:
        return int(self.vehicle_template["ecus"][ecu]["memory"]["regions"][0]["start"])

    def _write_images(self) -> None:
        for versions in ECU_VERSIONS.values():
            for ecu, version in versions.items():
                path = self.dir / "images" / f"{ecu}-{version}.hex"
                if not path.exists():
                    path.write_text(to_hex(self.image_bytes(ecu, version), self._region_start(ecu)))
                self.images[(ecu, version)] = path

    def _target(self, ecu: str, version: str, **more: Any) -> dict[str, Any]:
        return {"ecu": ecu, "hardware_id": self.vehicle_template["ecus"][ecu]["sim"]["part_number"],
                "software_version": version, "release_counter": COUNTERS[version],
                "image": f"images/{ecu}-{version}.hex",
                "flash_script": self.vehicle_template["ecus"][ecu]["flash_script"], **more}

    def _write_releases(self) -> None:
        from bench.repository.builder import build_release
        from bench.repository.director import Director

        if self.linux is not None:
            write_baseline(SW_BASELINE, self.dir / "baseline.xml")
        else:
            shutil.copy(SW_BASELINE, self.dir / "baseline.xml")
        linux = [self.linux.release_target(VERSIONS[V2])] if self.linux is not None else []
        engine_more: dict[str, Any] = {}
        if self.options.delta:
            engine_more["deltas"] = [{"from_version": "1.0.0", "base_image": "images/engine-1.0.0.hex"}]
        config = [{"type": "config-change", "values": dict(self.options.config_change)}] \
            if self.options.config_change else []
        releases = {
            "bv-1.1.0": (V2, [self._target("engine", "1.1.0", **engine_more), *linux, *config]),
            "bv-1.2.0": (V3, [self._target("brake", "3.5.0"),
                              self._target("body", "2.1.0", encrypt=self.options.encrypt)]),
        }
        for name, (version, targets) in releases.items():
            spec = self.dir / f"{name}.yaml"
            spec.write_text(yaml.safe_dump({"format": 1, "release": name, "target_vehicle_version": version,
                                            "baseline": "baseline.xml", "targets": targets}, sort_keys=False))
            build_release(spec, self.dir / "image-repo")
        for name, values in self.options.config_releases.items():  # configuration only: applies_to, no image
            spec = self.dir / f"{name}.yaml"
            spec.write_text(yaml.safe_dump({"format": 1, "release": name, "applies_to": self.options.start_version,
                                            "baseline": "baseline.xml",
                                            "targets": [{"type": "config-change", "values": dict(values)}]},
                                           sort_keys=False))
            build_release(spec, self.dir / "image-repo")
        self.write_route(configuration=next(iter(self.options.config_releases), None))
        # the vehicle registry: the vehicle's manifest key and its ECUs
        signer = CryptoSigner.generate_ed25519()
        from dmclient.uptane.signing import public_pem, write_private_key

        write_private_key(self.dir / "vehicle" / "vehicle-sign.key", signer)
        (self.dir / "vehicle-sign.pub.pem").write_bytes(public_pem(signer))
        assert self.pki is not None
        ecus = {e: {"hardware_id": spec["sim"]["part_number"]} for e, spec in self.vehicle_template["ecus"].items()}
        if self.linux is not None:
            ecus[LINUX_ECU] = self.linux.registry_entry()
        (self.dir / "vehicles.yaml").write_text(yaml.safe_dump({"vehicles": {self.vin: {
            "primary_id": "tbox-0001", "manifest_key": "vehicle-sign.pub.pem",
            "encryption_key": str(self.pki.vehicle_enc_pub), "ecus": ecus}}}, sort_keys=False))
        Director.open_or_create(self.dir / "director", image_dir=self.dir / "image-repo",
                                route_file=self.dir / "route.yaml", registry_file=self.dir / "vehicles.yaml")
        (self.dir / "files").mkdir(exist_ok=True)
        (self.dir / "backend.yaml").write_text(yaml.safe_dump({
            "listen": {"host": "127.0.0.1", "port": 0}, "files": "files",
            "tls": {"cert_file": str(self.pki.server_cert), "key_file": str(self.pki.server_key),
                    "client_ca_file": str(self.pki.ca_cert)},
            "admin": {"host": "127.0.0.1", "port": 0},
            "repositories": {"image": "image-repo", "director": "director", "route": "route.yaml",
                             "vehicles": "vehicles.yaml"}}, sort_keys=False))

    def write_route(self, *, stage2: str = "published", configuration: str | None = None) -> None:
        """The route file (the backend re-reads it): both edges published, or the second in ``stage2``; and
        ``configuration`` (a release of ``config_releases``) as the published configuration of the start node."""
        route: dict[str, Any] = {"format": 1, "route": "bv-mainline", "edges": [
            {"from": V1, "to": V2, "release": "bv-1.1.0", "stage": "published"},
            {"from": V2, "to": V3, "release": "bv-1.2.0", "stage": stage2}]}
        if configuration is not None:
            route["configurations"] = [{"applies_to": self.options.start_version, "release": configuration,
                                        "stage": "published"}]
        (self.dir / "route.yaml").write_text(yaml.safe_dump(route, sort_keys=False))

    def _write_vehicle_config(self, faults: Mapping[str, Mapping[str, Any]]) -> None:
        data = copy.deepcopy(self.vehicle_template)
        frames = data.get("version_frames")
        if isinstance(frames, dict):
            frames["dbc"] = str(CONFIGS / frames["dbc"])
        start = ECU_VERSIONS[self.options.start_version]
        for name, ecu in data["ecus"].items():
            ecu["timing"] = dict(FAST_TIMING)
            sim = ecu.setdefault("sim", {})
            sim.update(FAST_SIM)
            sim["software_version"] = start[name]
            sim["initial_image_size"] = self.options.image_size
            if name in faults:
                sim["faults"] = dict(faults[name])
            else:
                sim.pop("faults", None)
        self.vehicle_config.write_text(yaml.safe_dump(data, sort_keys=False))

    def _provision_vehicle(self) -> None:
        """End of line: trust anchors, installed-image records, factory images in the cache."""
        from dmclient.cache import PackageCache
        from dmclient.digests import Hashes
        from dmclient.state import StateDb
        from dmclient.uptane.manifest import InstalledImage
        from dmclient.uptane.state import UptaneState

        vehicle = self.dir / "vehicle"
        shutil.copy(self.dir / "image-repo" / "metadata" / "1.root.json", vehicle / "image-root.json")
        shutil.copy(self.dir / "director" / "roots" / "1.root.json", vehicle / "director-root.json")
        (vehicle / "uptane").mkdir(exist_ok=True)
        state = UptaneState(vehicle / "uptane" / "uptane.db")
        db = StateDb(vehicle / "dmclient.db")
        cache = PackageCache(vehicle / "cache", db, budget=256 << 20)
        try:
            for ecu, version in ECU_VERSIONS[self.options.start_version].items():
                data = self.images[(ecu, version)].read_bytes()
                hashes = Hashes(hashlib.sha256(data).hexdigest(), hashlib.sha512(data).hexdigest())
                state.record_installed(ecu, InstalledImage(f"{ecu}/{ecu}-{version}.hex", len(data), hashes),
                                       COUNTERS[version])
                copy_path = cache.temp_path(f"{ecu}-{version}.hex")
                shutil.copy(self.images[(ecu, version)], copy_path)
                cache.admit(copy_path, hashes, len(data))
                cache.pin(hashes.sha256, "factory")
            if self.linux is not None:  # the package the Linux ECU runs: reported in the manifest, never cached here
                name, data = self.linux.factory_record(VERSIONS[self.options.start_version])
                hashes = Hashes(hashlib.sha256(data).hexdigest(), hashlib.sha512(data).hexdigest())
                version = VERSIONS[self.options.start_version]
                state.record_installed(LINUX_ECU, InstalledImage(name, len(data), hashes), LINUX_COUNTERS[version])
        finally:
            state.close()
            db.close()

    def set_vehicle_state(self, values: Mapping[str, Any]) -> None:
        """Write the bench vehicle state: the vehicle simulator sends these signals from now on (None, or
        left out: not sent, so the system agent sees it unknown, or stale once it had a value)."""
        doc = {k: v for k, v in values.items() if v is not None}
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(doc, sort_keys=True))
        os.replace(tmp, self.state_file)

    # -- processes --------------------------------------------------------------------------------
    def _start(self, name: str, argv: list[str], prefix: str) -> str:
        proc = ReadyProcess(name, argv, prefix=prefix, log=self.logs / f"{name}.log", env=self.env, cwd=REPO)
        value = proc.start(self.options.ready_timeout)
        self.processes[name] = proc
        return value

    def start_backend(self) -> None:
        self.backend_url = self._start("backend", [sys.executable, "-m", "bench.backend", "--config",
                                                   str(self.dir / "backend.yaml")], "bench backend ready:")

    def start_bus(self) -> None:
        argv = [sys.executable, "-m", "agent.cli.main", "bench", "bus", "--config", str(self.vehicle_config)]
        if self.options.bus_faults:
            faults = self.dir / "bus-faults.yaml"
            faults.write_text(yaml.safe_dump({k: dict(v) for k, v in self.options.bus_faults.items()}))
            argv += ["--faults", str(faults)]
        self._start("bus", argv, "bench bus ready:")

    def set_bus_faults(self, channel: str, **spec: Any) -> dict[str, Any]:
        """Set a bench bus channel's fault injection now (no rates: off); returns its status and counters."""
        from bench.canbus.control import set_faults

        return set_faults(str(self.dir / "hub" / f"{channel}.sock"), **spec)

    def bus_fault_status(self, channel: str) -> dict[str, Any]:
        """A bench bus channel's fault setting and the counters of what it injected."""
        from bench.canbus.control import fault_status

        return fault_status(str(self.dir / "hub" / f"{channel}.sock"))

    def start_ecus(self) -> None:
        self._start("ecus", [sys.executable, "-m", "agent.cli.main", "bench", "ecus", "--config",
                             str(self.vehicle_config), "--state-dir", str(self.dir / "sim-state"), "--no-hub"],
                    "bench ready:")

    def start_linux_ecu(self) -> None:
        """Start the Linux ECU's own dmclient and agent (options.linux_ecu; see bench.independent)."""
        if self.linux is not None:
            assert self.pki is not None
            self.linux.start(backend_url=self.backend_url, pki=self.pki,
                             director_root=self.dir / "vehicle" / "director-root.json",
                             start_version=self.options.start_version, log_level=self.options.log_level,
                             ready_timeout=self.options.ready_timeout,
                             gateway_dmclient=yaml.safe_load(self.stack_config.read_text())["dmclient"])

    def start_vehicle(self, scenario: str | None = None) -> None:
        """(Re)start the vehicle simulator with ``scenario`` (default: the options'); its state file is
        rewritten with that scenario's start values when one is named."""
        proc = self.processes.pop("vehicle", None)
        if proc is not None:
            proc.stop()
        if scenario is not None:
            self.set_vehicle_state(SCENARIOS[scenario].start)
        self._start("vehicle", [sys.executable, "-m", "agent.cli.main", "bench", "vehicle", "--config",
                                str(self.vehicle_config), "--dbc", str(DBC),
                                "--scenario", scenario or self.options.vehicle_scenario,
                                "--state-file", str(self.state_file), "--power-hold", str(self.power_hold_file),
                                "--status", str(self.vehicle_status)], "bench vehicle ready:")

    def stop_ecus(self) -> None:
        proc = self.processes.pop("ecus", None)
        if proc is not None:
            proc.stop()

    def restart_ecus(self, faults: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        """Restart the simulated ECUs (flash contents persist), with new fault knobs if given."""
        self.stop_ecus()
        if faults is not None:
            self._write_vehicle_config(faults)
        self.start_ecus()

    # -- the stack config -------------------------------------------------------------------------
    def variables(self) -> dict[str, str]:
        return {"BENCH_DIR": str(self.dir), "RUNTIME_DIR": str(self.runtime_dir), "BACKEND_URL": self.backend_url,
                "VIN": self.vin, "VEHICLE": str(self.vehicle_config), "BASELINE": str(self.sw_baseline),
                "HW_BASELINE": str(HW_BASELINE), "DBC": str(DBC), "SOMEIP_SD_PORT": str(self.someip_sd_port)}

    def render_stack(self, template: Path = STACK_TEMPLATE) -> Path:
        """Render the stack config template into :attr:`stack_config` (absolute paths only)."""
        text = render_template(template, self.variables())
        doc = yaml.safe_load(text)
        doc["runtime"]["log_level"] = self.options.log_level
        if self.linux is not None:
            merge(doc, self.linux.stack_keys())
        for section, keys in self.options.stack_overrides.items():
            doc.setdefault(section, {}).update(keys)
        self.stack_config.write_text(yaml.safe_dump(doc, sort_keys=False))
        return self.stack_config


def render_template(template: Path, variables: Mapping[str, str]) -> str:
    """``template`` with ``${NAME}`` replaced; an unknown name is a ConfigurationError naming it."""
    try:
        return string.Template(template.read_text()).substitute(variables)
    except KeyError as e:
        raise ConfigurationError(f"unknown variable ${{{e.args[0]}}} (known: {', '.join(sorted(variables))})",
                                 source=str(template)) from None
    except ValueError as e:
        raise ConfigurationError(f"bad placeholder: {e}", source=str(template)) from None
