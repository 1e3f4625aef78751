"""The bench world of the Uptane tests: releases, repositories, backend, vehicles.

:func:`build_world` writes into a directory (everything relative, so a built world can
be copied per test): bench application images as Intel HEX, the bench software
baseline, two releases built with the real release builder (``bv-1.1.0``: engine with
a bsdiff4 delta from the factory image; ``bv-1.2.0``: brake, and body encrypted), the
three-node route, the vehicle registry and signing keys, the Director (keys and root),
and a bench backend config serving it all over mutual TLS.

:class:`Vehicle` is the vehicle side as dmclient wires it: the ``uptane`` config
section, the package cache and state database of the download manager, the mutual-TLS
fetcher, and the Uptane client; :meth:`Vehicle.install` simulates an installation
(installed image records and reported vehicle version), the job of later issues.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from securesystemslib.signer import CryptoSigner

from agent.config.node import load_yaml
from bench.appimage import build_image, to_hex
from bench.backend.config import load_backend_config
from bench.pki import BenchPki
from bench.repository.builder import build_release
from bench.repository.director import Director
from bench.repository.tufrepo import Clock, utc_now
from dmclient.cache import PackageCache
from dmclient.digests import Hashes
from dmclient.fetcher import RequestsFetcher
from dmclient.state import StateDb
from dmclient.tls import TlsFiles, build_session
from dmclient.uptane.assignment import CheckResult
from dmclient.uptane.client import ManifestUploader, UptaneClient, record_install
from dmclient.uptane.config import load_uptane_config
from dmclient.uptane.manifest import InstalledImage
from dmclient.uptane.signing import public_pem, write_private_key
from dmclient.uptane.timesource import TimeSource

REPO = Path(__file__).resolve().parents[2]
VEHICLE_CONFIG = REPO / "configs" / "bench-vehicle.yaml"
BASELINE = REPO / "configs" / "bench-sw-baseline.xml"
VIN_A = "BENCHVIN000000001"
VIN_B = "BENCHVIN000000002"
V1, V2, V3 = "BV OS D 1.0.0", "BV OS D 1.1.0", "BV OS D 1.2.0"
HARDWARE = {"engine": "ENG-4711", "brake": "BRK-0815", "body": "BCM-2201"}
ADDRESS = {"engine": 0x10000, "brake": 0x20000, "body": 0x8000}
FACTORY = {"engine": "1.0.0", "brake": "3.4.0", "body": "2.0.0"}
IMAGE_SIZE = 2048


def image_hex(ecu: str, version: str) -> str:
    return to_hex(build_image(version, HARDWARE[ecu], IMAGE_SIZE, seed=ecu), ADDRESS[ecu])


def hashes_of(data: bytes) -> Hashes:
    return Hashes(hashlib.sha256(data).hexdigest(), hashlib.sha512(data).hexdigest())


def issue_client_cert(pki: BenchPki, vin: str, directory: Path) -> tuple[Path, Path]:
    """A client certificate with CN = ``vin`` from the bench CA (the bench PKI makes one VIN's)."""
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, vin)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
    cert_path, key_path = directory / f"{vin}.pem", directory / f"{vin}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def release_yaml(name: str, version: str, targets: list[dict[str, Any]]) -> str:
    return yaml.safe_dump({"format": 1, "release": name, "target_vehicle_version": version,
                           "baseline": "baseline.xml", "targets": targets}, sort_keys=False)


def target(ecu: str, version: str, counter: int, script: str, **more: Any) -> dict[str, Any]:
    return {"ecu": ecu, "hardware_id": HARDWARE[ecu], "software_version": version, "release_counter": counter,
            "image": f"images/{ecu}-{version}.hex", "flash_script": script, **more}


def route_yaml(stage2: str = "published", group2: tuple[str, ...] = ()) -> str:
    edge2: dict[str, Any] = {"from": V2, "to": V3, "release": "bv-1.2.0", "stage": stage2}
    if group2:
        edge2["test_group"] = list(group2)
    return yaml.safe_dump({"format": 1, "route": "bv-mainline", "edges": [
        {"from": V1, "to": V2, "release": "bv-1.1.0", "stage": "published"}, edge2]}, sort_keys=False)


def register_vehicle(world: Path, vin: str, pki: BenchPki) -> None:
    """A signing key for ``vin`` (``keys/<vin>-sign.key``) and its entry in ``vehicles.yaml``."""
    keys = world / "keys"
    keys.mkdir(exist_ok=True)
    signer = CryptoSigner.generate_ed25519()
    write_private_key(keys / f"{vin}-sign.key", signer)
    (keys / f"{vin}-sign.pub.pem").write_bytes(public_pem(signer))
    path = world / "vehicles.yaml"
    doc = yaml.safe_load(path.read_text()) if path.is_file() else {"vehicles": {}}
    doc["vehicles"][vin] = {"primary_id": f"tbox-{vin[-4:]}", "manifest_key": f"keys/{vin}-sign.pub.pem",
                            "encryption_key": str(pki.vehicle_enc_pub),
                            "ecus": {e: {"hardware_id": hw} for e, hw in HARDWARE.items()}}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def build_world(world: Path, pki: BenchPki, *, clock: Clock = utc_now, releases: bool = True) -> None:
    """Write the world; with ``releases=False`` the two releases are left to build (``r1.yaml``, ``r2.yaml``)."""
    images = world / "images"
    images.mkdir(parents=True)
    for ecu, version in (*FACTORY.items(), ("engine", "1.1.0"), ("brake", "3.5.0"), ("body", "2.1.0")):
        (images / f"{ecu}-{version}.hex").write_text(image_hex(ecu, version))
    shutil.copy(BASELINE, world / "baseline.xml")
    (world / "r1.yaml").write_text(release_yaml("bv-1.1.0", V2, [
        target("engine", "1.1.0", 2, "single_bank",
               deltas=[{"from_version": "1.0.0", "base_image": "images/engine-1.0.0.hex"}])]))
    (world / "r2.yaml").write_text(release_yaml("bv-1.2.0", V3, [
        target("brake", "3.5.0", 2, "ab_bank"), target("body", "2.1.0", 2, "single_bank", encrypt=True)]))
    if releases:
        build_release(world / "r1.yaml", world / "image-repo", clock=clock)
        build_release(world / "r2.yaml", world / "image-repo", clock=clock)
    (world / "route.yaml").write_text(route_yaml())
    register_vehicle(world, VIN_A, pki)
    Director.open_or_create(world / "director", image_dir=world / "image-repo", route_file=world / "route.yaml",
                            registry_file=world / "vehicles.yaml", clock=clock)
    (world / "files").mkdir()
    (world / "backend.yaml").write_text(yaml.safe_dump({
        "listen": {"host": "127.0.0.1", "port": 0}, "files": "files",
        "tls": {"cert_file": str(pki.server_cert), "key_file": str(pki.server_key),
                "client_ca_file": str(pki.ca_cert)},
        "admin": {"host": "127.0.0.1", "port": 0},
        "repositories": {"image": "image-repo", "director": "director", "route": "route.yaml",
                         "vehicles": "vehicles.yaml"}}, sort_keys=False))


def director(world: Path, clock: Clock = utc_now) -> Director:
    return Director(world / "director", image_dir=world / "image-repo", route_file=world / "route.yaml",
                    registry_file=world / "vehicles.yaml", clock=clock)


class InProcessBackend:
    """The bench backend app (real aiohttp, real mutual TLS) on an event loop in a thread."""

    def __init__(self, config: Path) -> None:
        from bench.backend.server import start_backend

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="bench-backend", daemon=True)
        self.thread.start()
        cfg = load_backend_config(config)
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(start_backend(cfg), self.loop)
        self.running = fut.result(timeout=30)
        self.url: str = self.running.url

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.running.close(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()


@dataclass
class Vehicle:
    """One vehicle's dmclient Uptane side, provisioned at "end of line" from the world."""

    home: Path
    world: Path
    pki: BenchPki
    url: str
    vin: str = VIN_A
    time_source: TimeSource | None = None
    hardware: dict[str, str] = field(default_factory=lambda: dict(HARDWARE))
    cert: tuple[Path, Path] | None = None

    def __post_init__(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        # end of line: the trust anchors (root v1 of both repositories) and the vehicle key
        shutil.copy(self.world / "image-repo" / "metadata" / "1.root.json", self.home / "image-root.json")
        shutil.copy(self.world / "director" / "roots" / "1.root.json", self.home / "director-root.json")
        shutil.copy(self.world / "keys" / f"{self.vin}-sign.key", self.home / "vehicle-sign.key")
        (self.home / "dmclient.yaml").write_text(yaml.safe_dump({"uptane": {
            "vin": self.vin, "primary_id": f"tbox-{self.vin[-4:]}", "vehicle_config": str(VEHICLE_CONFIG),
            "signing_key": "vehicle-sign.key", "state_dir": "state",
            "director": {"url": f"{self.url}/director/{self.vin}", "root": "director-root.json"},
            "image": {"metadata_url": f"{self.url}/image/metadata", "targets_url": f"{self.url}/image/targets",
                      "root": "image-root.json"},
            "ecus": {e: {"hardware_id": hw} for e, hw in self.hardware.items()}}}, sort_keys=False))
        self.cfg = load_uptane_config(load_yaml(self.home / "dmclient.yaml").child("uptane"))
        self.db = StateDb(self.home / "dmclient.db")
        self.cache = PackageCache(self.home / "cache", self.db, budget=1 << 30)
        cert, key = self.cert or (self.pki.client_cert, self.pki.client_key)
        self.fetcher = RequestsFetcher(build_session(TlsFiles(self.pki.ca_cert, cert, key), pool_size=2),
                                       connect_timeout=5, read_timeout=5)
        self.client = UptaneClient(self.cfg, fetcher=self.fetcher,
                                   uploader=ManifestUploader(self.fetcher.session, timeout=(5, 5)),
                                   cache=self.cache, time_source=self.time_source)
        self.state = self.client.state
        self.version = V1
        for ecu, version in FACTORY.items():
            data = (self.world / "images" / f"{ecu}-{version}.hex").read_bytes()
            self.state.record_installed(ecu, InstalledImage(f"{ecu}/{ecu}-{version}.hex", len(data),
                                                            hashes_of(data)), 1)

    def check(self, version: str | None = None) -> CheckResult:
        return self.client.check(version or self.version)

    def install(self, result: CheckResult) -> None:
        """What a campaign does after flashing: record the images and the new vehicle version."""
        assert result.assignment is not None
        for ecu in result.assignment.ecus:
            record_install(self.state, ecu.ecu, result.assignment)
        self.version = result.assignment.target_vehicle_version

    def close(self) -> None:
        self.fetcher.session.close()
        self.state.close()
        self.db.close()

    # -- what must stay intact after a refused check -------------------------------------
    def trusted(self) -> dict[str, Any]:
        """Trusted metadata files (by content), installed records, attack-free cache, as a comparable value."""
        out: dict[str, Any] = {}
        for name, store in (("director", self.client.director_store), ("image", self.client.image_store)):
            cur = store.current()
            files = {}
            if cur is not None:
                for p in sorted(cur.resolve().rglob("*")):
                    if p.is_file():
                        files[str(p.relative_to(cur.resolve()))] = hashlib.sha256(p.read_bytes()).hexdigest()
            out[name] = files
        out["installed"] = {e: self.state.installed(e) for e in HARDWARE}
        out["cache"] = sorted(e.sha256 for e in self.cache.entries())
        return out


def fixed_time(when: datetime.datetime) -> Callable[[], datetime.datetime]:
    return lambda: when
