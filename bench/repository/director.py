"""The Director: per vehicle, the targets to install next, from its manifest and the task route.

On every vehicle version manifest (:meth:`Director.handle_manifest`):

1. the vehicle must be registered, the manifest's VIN must be the URL's and the TLS
   client certificate's (CN = VIN), the signature must verify with the registered key,
   the primary id and the set of ECUs must be the registered ones, and every ECU's
   report counter must be higher than the last one accepted (a replayed or stale
   manifest is refused);
2. the reported vehicle version is looked up on the route (re-read when the file
   changes): the edge that leaves that node *for this VIN* (test group or published)
   names a release of the Image repository, whose images become this vehicle's
   Director targets: same name, length and hashes as in the Image repository, and in
   ``custom`` the ECU, hardware id, release counter, software and target vehicle
   version, flash script, the delta patch whose base is the image the ECU reports
   installed (if the release has one), and for an encrypted image the content key
   wrapped to this vehicle's key (a Linux ECU's independent download: to that ECU's own
   key); plus the release's baseline XML, whose ``custom``
   carries the release's ``mandatory`` / ``deadline`` when it has them. With no edge to
   take, the node's configuration entry of the route (if any reaches this VIN) names a
   configuration-only release: assigned (its baseline and configuration target, for the
   vehicle version the car is on) unless the manifest's signed ``configuration`` already
   reports every value of it, which is how the Director learns that the change succeeded
   (see :mod:`dmclient.uptane.manifest` for why the manifest and not a report). A vehicle
   on the last node, off the route, outside a test group, or configured gets an empty
   targets list;
3. the Director repository of that vehicle (``vehicles/<VIN>/metadata``, sharing the
   Director root) publishes new targets / snapshot / timestamp versions when this
   decision differs from the last one, and otherwise only re-signs the timestamp
   when it is about to expire. The decision, counters, reported attacks and what was
   last published are kept in ``vehicles/<VIN>/state.json``; the metadata files are
   read back only to publish (the Director never parses what it merely serves).

Release contents come from the builder's release manifests (``releases/*.json``) and
content keys, never from the Image repository's metadata.

The server keeps no state in memory: everything is read from and written to the
directory, so the bench backend can restart at any time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import TargetFile

from agent.errors import ConfigurationError, OtaError, VehicleVersionError
from bench.repository.image import load_content_key
from bench.repository.keys import KeyRing
from bench.repository.release_manifest import ReleaseImage, ReleaseManifest, load_release
from bench.repository.route import Edge, Route, load_route
from bench.repository.tufrepo import (
    Clock,
    Expiry,
    TufRepository,
    init_root,
    root_versions,
    rotate_root,
    utc_now,
    write_file,
)
from bench.repository.vehicles import RegisteredVehicle, load_registry
from dmclient.encryption import EncryptionSpec, wrap_content_key
from dmclient.uptane import custom
from dmclient.uptane.manifest import (
    InvalidManifestError,
    ManifestSignatureError,
    VehicleManifest,
    verify_manifest,
)
from update_agent import vehicle_version

log = logging.getLogger(__name__)

#: Director metadata lives shorter than the Image repository's (it is re-signed online)
DIRECTOR_EXPIRY = Expiry(targets=timedelta(days=7), snapshot=timedelta(days=7), timestamp=timedelta(days=1))
#: re-sign a vehicle's timestamp when it expires within this
TIMESTAMP_MARGIN = timedelta(hours=6)


def _iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class ManifestRejected(OtaError):
    """A manifest the Director refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Decision:
    """What the Director assigned to a vehicle, and everything it depends on."""

    edge: str | None
    release: str | None
    deltas: dict[str, str]
    root_version: int

    def to_json(self) -> dict[str, Any]:
        return {"edge": self.edge, "release": self.release, "deltas": self.deltas, "root_version": self.root_version}


class _Watched:
    """A file loaded again only when its bytes change.

    A changed file that does not load is logged and the last good value kept (as a
    daemon keeps its running config on a bad SIGHUP reload); with no good value yet,
    the error is raised.
    """

    def __init__(self, path: Path, load: Any) -> None:
        self.path = path
        self._load = load
        self._digest: str | None = None
        self._value: Any = None
        self._loaded = False

    def get(self) -> Any:
        try:
            digest = hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError as e:
            if self._loaded:
                log.error("cannot read %s (%s): keeping the last good version", self.path, e.strerror or e)
                return self._value
            raise ConfigurationError(f"cannot read: {e.strerror or e}", source=str(self.path)) from e
        if digest != self._digest:
            try:
                value = self._load(self.path)
            except OtaError as e:
                if not self._loaded:
                    raise
                log.error("%s: keeping the last good version", e)
                return self._value
            self._value, self._digest, self._loaded = value, digest, True
            log.info("loaded %s", self.path)
        return self._value


class Director:
    def __init__(self, directory: Path, *, image_dir: Path, route_file: Path, registry_file: Path,
                 expiry: Expiry = DIRECTOR_EXPIRY, clock: Clock = utc_now) -> None:
        self.directory = directory
        self.image_dir = image_dir
        self.roots_dir = directory / "roots"
        self.vehicles_dir = directory / "vehicles"
        self.expiry = expiry
        self.clock = clock
        if not (directory / "keys" / "keyring.json").is_file():
            raise ConfigurationError("not a Director directory (no keys/keyring.json)", source=str(directory))
        self._keys = _Watched(directory / "keys" / "keyring.json", lambda p: KeyRing.load(p.parent))
        self.route = _Watched(route_file, load_route)
        self.registry = _Watched(registry_file, load_registry)
        self._lock = threading.Lock()

    @classmethod
    def open_or_create(cls, directory: Path, *, image_dir: Path, route_file: Path, registry_file: Path,
                       expiry: Expiry = DIRECTOR_EXPIRY, clock: Clock = utc_now) -> Director:
        """Open the Director in ``directory``; the first time, generate its keys and root v1."""
        if not (directory / "keys" / "keyring.json").is_file():
            keys = KeyRing.generate(directory / "keys")
            init_root(directory / "roots", keys, expiry=expiry, clock=clock)
        return cls(directory, image_dir=image_dir, route_file=route_file, registry_file=registry_file,
                   expiry=expiry, clock=clock)

    @property
    def keys(self) -> KeyRing:
        """The signing keys, re-read when the key ring changes (a rotation by another process)."""
        ring: KeyRing = self._keys.get()
        return ring

    @property
    def trusted_root(self) -> Path:
        """Root version 1: the Director trust anchor to provision in vehicles."""
        return self.roots_dir / "1.root.json"

    # -- files the routes serve ------------------------------------------------------------
    def metadata_path(self, vin: str, name: str) -> Path | None:
        if vin not in self.registry.get():
            return None
        if name.endswith(".root.json") or name == "root.json":
            path = self.roots_dir / name
        else:
            path = self.vehicles_dir / vin / "metadata" / name
        return path if path.is_file() else None

    # -- per-vehicle repository and state ----------------------------------------------------
    def vehicle_repo(self, vin: str) -> TufRepository:
        return TufRepository(self.vehicles_dir / vin / "metadata", self.roots_dir, self.keys, expiry=self.expiry,
                             clock=self.clock)

    def _state_path(self, vin: str) -> Path:
        return self.vehicles_dir / vin / "state.json"

    def vehicle_state(self, vin: str) -> dict[str, Any]:
        path = self._state_path(vin)
        if not path.is_file():
            return {"counters": {}, "decision": None, "attacks": {}, "vehicle_version": None, "manifests": 0}
        state: dict[str, Any] = json.loads(path.read_text())
        return state

    def _save_state(self, vin: str, state: dict[str, Any]) -> None:
        path = self._state_path(vin)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_file(path, (json.dumps(state, indent=2, sort_keys=True) + "\n").encode())

    # -- the manifest ------------------------------------------------------------------------
    def handle_manifest(self, vin: str, body: bytes, *, client_cn: str | None) -> dict[str, Any]:
        """Verify a manifest and publish the vehicle's targets; a summary, or ManifestRejected."""
        vehicles: dict[str, RegisteredVehicle] = self.registry.get()
        vehicle = vehicles.get(vin)
        if vehicle is None:
            raise ManifestRejected(f"vehicle {vin} is not registered with the Director", 404)
        if client_cn is not None and client_cn != vin:
            raise ManifestRejected(f"the client certificate is for {client_cn}, not for {vin}", 403)
        try:
            manifest = verify_manifest(body, vehicle.manifest_key)
        except ManifestSignatureError as e:
            raise ManifestRejected(str(e), 401) from e
        except InvalidManifestError as e:
            raise ManifestRejected(f"malformed manifest: {e}", 400) from e
        if manifest.vin != vin:
            raise ManifestRejected(f"manifest is for VIN {manifest.vin}, uploaded for {vin}", 400)
        if manifest.primary_id != vehicle.primary_id:
            raise ManifestRejected(f"primary {manifest.primary_id} is not the registered {vehicle.primary_id}", 403)
        reported = {r.ecu for r in manifest.reports}
        if reported != set(vehicle.ecus):
            raise ManifestRejected(f"manifest reports ECUs {sorted(reported)}, the vehicle has {sorted(vehicle.ecus)}",
                                   400)
        try:
            current = vehicle_version.parse(manifest.vehicle_version, key="vehicle_version")
        except VehicleVersionError as e:
            raise ManifestRejected(str(e), 400) from e
        with self._lock:
            state = self.vehicle_state(vin)
            for r in manifest.reports:
                last = int(state["counters"].get(r.ecu, 0))
                if r.report_counter <= last:
                    raise ManifestRejected(f"ECU {r.ecu}: report counter {r.report_counter} is not above the last "
                                           f"accepted {last} (replayed or stale manifest)", 409)
            state["counters"] = {r.ecu: r.report_counter for r in manifest.reports}
            state["attacks"] = {r.ecu: r.attack for r in manifest.reports if r.attack}
            if state["attacks"]:
                log.warning("%s reports attacks: %s", vin, state["attacks"])
            state["vehicle_version"] = str(current)
            state["manifests"] = int(state.get("manifests", 0)) + 1
            summary = self._publish(vehicle, manifest, current, state)
            self._save_state(vin, state)
        return summary

    def _publish(self, vehicle: RegisteredVehicle, manifest: VehicleManifest, current: vehicle_version.VehicleVersion,
                 state: dict[str, Any]) -> dict[str, Any]:
        route: Route = self.route.get()
        edge = route.next_edge(current, vehicle.vin)
        release = load_release(self.image_dir, edge.release) if edge else None
        if edge is not None and release is None:
            log.error("route %s: edge %s names release %s, which the Image repository does not have", route.name,
                      edge.key, edge.release)
            edge = None
        if edge is not None and release is not None and release.target_vehicle_version != str(edge.target):
            log.error("route %s: release %s leads to %s, but the edge leads to %s", route.name, release.release,
                      release.target_vehicle_version, edge.target)
            edge, release = None, None
        if edge is None:
            edge, release = self._configuration(route, vehicle.vin, manifest, current)
        deltas = self._deltas(release, manifest) if release else {}
        decision = Decision(edge.key if edge else None, release.release if release else None, deltas,
                            root_versions(self.roots_dir)[-1])
        published = state.get("published") or {}
        due = published.get("timestamp_expires", "") <= _iso(self.clock() + TIMESTAMP_MARGIN)
        if state.get("decision") != decision.to_json() or not published:
            repo = self.vehicle_repo(vehicle.vin)
            targets = self._targets(vehicle, release, edge, deltas) if release and edge else {}
            repo.publish(targets)
            state["decision"] = decision.to_json()
            log.info("%s on %s: %s (targets v%d)", vehicle.vin, current, edge.key if edge else "nothing to do",
                     repo.targets.signed.version)
            published = self._published(repo)
        elif due:  # only now is the repository read back: a served file is never parsed otherwise
            repo = self.vehicle_repo(vehicle.vin)
            repo.refresh_timestamp()
            published = self._published(repo)
        state["published"] = published
        return {"vin": vehicle.vin, "vehicle_version": str(current), "release": decision.release,
                "edge": decision.edge, "targets_version": published["targets_version"]}

    def _configuration(self, route: Route, vin: str, manifest: VehicleManifest,
                       current: vehicle_version.VehicleVersion) -> tuple[Edge | None, ReleaseManifest | None]:
        """The configuration-only release this vehicle should have and does not report yet, or (None, None)."""
        entry = route.configuration(current, vin)
        if entry is None:
            return None, None
        release = load_release(self.image_dir, entry.release)
        if release is None or not release.configuration_only or release.target_vehicle_version != str(current):
            log.error("route %s: configuration %s names %s, which is not a configuration-only release of the "
                      "Image repository applying to %s", route.name, entry.key, entry.release, current)
            return None, None
        if all(manifest.configuration.get(k) == v for k, v in release.config_values.items()):
            return None, None  # the vehicle reports every value: applied
        return entry, release

    @staticmethod
    def _published(repo: TufRepository) -> dict[str, Any]:
        return {"targets_version": repo.targets.signed.version,
                "timestamp_expires": _iso(repo.timestamp.signed.expires)}

    @staticmethod
    def _deltas(release: ReleaseManifest, manifest: VehicleManifest) -> dict[str, str]:
        """Per ECU, the patch whose base is the image the ECU reports installed."""
        out: dict[str, str] = {}
        for img in release.images:
            report = manifest.report(img.ecu)
            if report is None or report.installed is None:
                continue
            for d in img.deltas:
                if d.base.sha256 == report.installed.hashes.sha256 and d.base.matches(report.installed.hashes):
                    out[img.ecu] = d.patch.target
        return out

    def _ecu_target(self, vehicle: RegisteredVehicle, release: ReleaseManifest, img: ReleaseImage, edge: Edge,
                    deltas: dict[str, str]) -> TargetFile | None:
        hw = vehicle.ecus.get(img.ecu)
        if hw is None:
            log.warning("%s has no ECU %s: image %s of %s not assigned", vehicle.vin, img.ecu, img.target,
                        release.release)
            return None
        delta = None
        if img.ecu in deltas:
            d = next(x for x in img.deltas if x.patch.target == deltas[img.ecu])
            delta = custom.DirectorDelta(d.patch.target, d.base)
        encryption = None
        if img.ciphertext is not None:
            # a Linux ECU downloading itself decrypts itself: the key is wrapped to its own key, never the vehicle's
            to = vehicle.ecu_keys.get(img.ecu) if img.install_script is not None else vehicle.encryption_key
            if to is None:
                whose = f"ECU {img.ecu} of vehicle {vehicle.vin} has no registered encryption key of its own" \
                    if img.install_script is not None else f"vehicle {vehicle.vin} has no registered encryption key"
                raise ConfigurationError(f"release {release.release} has an encrypted image for {img.ecu} but {whose}")
            key, nonce = load_content_key(self.image_dir, img.file.hashes.sha256)
            ephemeral, wrapped = wrap_content_key(to, key)
            spec = EncryptionSpec(ephemeral, wrapped, nonce, img.ciphertext.hashes)
            encryption = custom.DirectorEncryption(img.ciphertext.target, spec)
        independent = None
        if img.install_script is not None:  # the ECU downloads it itself, told over SOME/IP (its instance)
            independent = custom.DirectorIndependent(vehicle.instances.get(img.ecu, 1), img.install_script)
        c = custom.DirectorEcuImage(img.ecu, img.hardware_id, img.release_counter, img.software_version,
                                    release.release, str(edge.target), img.flash_script, delta, encryption,
                                    independent)
        return TargetFile(img.file.length, img.file.hashes.to_dict(), img.target, {"custom": c.to_dict()})

    def _targets(self, vehicle: RegisteredVehicle, release: ReleaseManifest, edge: Edge,
                 deltas: dict[str, str]) -> dict[str, TargetFile]:
        out: dict[str, TargetFile] = {}
        for img in release.images:
            target = self._ecu_target(vehicle, release, img, edge, deltas)
            if target is not None:
                out[img.target] = target
        b = release.baseline
        policy = custom.DirectorBaseline(str(edge.target), release.mandatory, release.deadline)
        out[b.target] = TargetFile(b.length, b.hashes.to_dict(), b.target, {"custom": policy.to_dict()})
        c = release.config
        if c is not None:  # the configuration change rides with the release's images
            out[c.target] = TargetFile(c.length, c.hashes.to_dict(), c.target,
                                       {"custom": custom.DirectorConfig(str(edge.target)).to_dict()})
        return out

    # -- key rotation --------------------------------------------------------------------------
    def rotate(self, role: str, signers: list[CryptoSigner], threshold: int) -> bytes:
        """New Director root (signed by old and new root keys); online-key changes re-sign every vehicle."""
        with self._lock:
            data = rotate_root(self.roots_dir, self.keys, role, signers, threshold, expiry=self.expiry,
                               clock=self.clock)
            self._keys.get()  # the ring on disk changed: reload it before re-signing
            if role != "root" and self.vehicles_dir.is_dir():
                for vdir in sorted(self.vehicles_dir.iterdir()):
                    if (vdir / "metadata" / "timestamp.json").is_file():
                        self.vehicle_repo(vdir.name).publish()
        return data
