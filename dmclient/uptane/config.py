"""The ``uptane`` section of dmclient's configuration, validated at start-up.

::

    uptane:
      vin: BENCHVIN000000001
      primary_id: tbox-0001                 # this primary ECU's id in the manifest
      vehicle_config: vehicle.yaml          # every ECU below must exist there
      signing_key: keys/vehicle-sign.key    # Ed25519 or EC P-256, PKCS#8 PEM: signs the manifest
      state_dir: /var/lib/ota-agent/uptane  # metadata generations and uptane.db
      director:
        url: https://backend/director/BENCHVIN000000001   # metadata base; manifest: POST <url>/manifest
        root: director-root.json            # trust anchor provisioned at end of line
      image:
        metadata_url: https://backend/image/metadata
        targets_url: https://backend/image/targets
        root: image-root.json
      ecus:                                 # the ECU registry: hardware id of each ECU
        engine: {hardware_id: ENG-4711}
        ivi: {hardware_id: IVI-9000, linux: true}   # a Linux ECU (SOME/IP, independent download): no CAN
        brake: {hardware_id: BRK-0815}
      time: {source: system}                # or {source: file, path: /run/ota-agent/secure-time}
      metadata_limits: {root: 512000, timestamp: 16384, snapshot: 2000000, targets: 5000000}

Relative paths are relative to the config file; URLs may be paths relative to the
backend URL dmclient is configured with. The trust anchors are read once here: a
missing or malformed root stops the daemon with the file named.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from agent.config.node import Node
from agent.config.vehicle import VehicleConfig, load_vehicle_config
from dmclient.order import resolve_url
from dmclient.uptane.custom import check_ident
from dmclient.uptane.timesource import FileTime, TimeSource, system_time

if TYPE_CHECKING:
    from tuf.ngclient import UpdaterConfig


@dataclass(frozen=True)
class MetadataLimits:
    """The largest metadata file of each role (bytes). The defaults are python-tuf's
    ``UpdaterConfig`` ones; kept here so reading the config does not import python-tuf (~14 MiB
    resident), which the daemon loads on its first check."""

    root: int = 512000
    timestamp: int = 16384
    snapshot: int = 2000000
    targets: int = 5000000

    def updater_config(self) -> UpdaterConfig:
        from tuf.ngclient import UpdaterConfig

        return UpdaterConfig(root_max_length=self.root, timestamp_max_length=self.timestamp,
                             snapshot_max_length=self.snapshot, targets_max_length=self.targets)


@dataclass(frozen=True)
class RepositoryEndpoint:
    metadata_url: str
    targets_url: str
    #: the provisioned trust anchor (root.json bytes)
    root: bytes
    root_file: Path


@dataclass(frozen=True)
class UptaneConfig:
    vin: str
    primary_id: str
    vehicle: VehicleConfig
    signing_key: Path
    state_dir: Path
    director: RepositoryEndpoint
    image: RepositoryEndpoint
    #: ECU name -> registered hardware id
    ecus: dict[str, str]
    time_source: TimeSource = system_time
    time_description: str = "system"
    limits: MetadataLimits = field(default_factory=MetadataLimits)
    source: str = "<memory>"

    @property
    def manifest_url(self) -> str:
        return self.director.metadata_url.rstrip("/") + "/manifest"


def _path(node: Node, key: str, base: Path) -> Path:
    p = Path(node.get(key, str))
    return p if p.is_absolute() else base / p


def _root(node: Node, key: str, base: Path) -> tuple[bytes, Path]:
    path = _path(node, key, base)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise node.error(f"cannot read trusted root {path}: {e.strerror or e}", key) from e
    try:
        doc = json.loads(data)
        ok = isinstance(doc, dict) and isinstance(doc.get("signed"), dict) and doc["signed"].get("_type") == "root"
    except ValueError:
        ok = False
    if not ok:
        raise node.error(f"{path} is not TUF root metadata", key)
    return data, path


def _url(node: Node, key: str, base_url: str | None) -> str:
    try:
        return resolve_url(node.get(key, str), node.key_path(key), base_url).rstrip("/")
    except ValueError as e:
        raise node.error(str(e), key) from e


def _ident(node: Node, key: str) -> str:
    try:
        return check_ident(node.get(key, str), node.key_path(key))
    except ValueError as e:
        raise node.error(str(e), key) from e


def load_uptane_config(node: Node, *, base_url: str | None = None) -> UptaneConfig:
    """The ``uptane`` section (``node``); relative paths against the section's file."""
    base = Path(node.source).resolve().parent if node.source and not node.source.startswith("<") else Path.cwd()
    vehicle_path = _path(node, "vehicle_config", base)
    vehicle = load_vehicle_config(vehicle_path)
    director_node, image_node = node.child("director"), node.child("image")
    d_root, d_file = _root(director_node, "root", base)
    i_root, i_file = _root(image_node, "root", base)
    d_url = _url(director_node, "url", base_url)
    director = RepositoryEndpoint(d_url, d_url, d_root, d_file)
    image = RepositoryEndpoint(_url(image_node, "metadata_url", base_url), _url(image_node, "targets_url", base_url),
                               i_root, i_file)
    director_node.done()
    image_node.done()
    ecus: dict[str, str] = {}
    for name, ecu in node.children("ecus"):
        # a Linux ECU reached over SOME/IP (independent download) is not on a CAN bus: ``linux: true``
        if name not in vehicle.ecus and not ecu.get("linux", bool, False):
            raise ecu.error(f"ECU {name!r} is not in the vehicle config {vehicle_path} "
                            f"(known: {', '.join(sorted(vehicle.ecus))}; a Linux ECU says linux: true)")
        ecus[name] = _ident(ecu, "hardware_id")
        ecu.done()
    if not ecus:
        raise node.error("at least one ECU is needed", "ecus")
    time_node = node.child("time", {"source": "system"})
    kind = time_node.choice("source", ("system", "file"), "system")
    time_source: TimeSource = system_time
    described = "system clock"
    if kind == "file":
        path = _path(time_node, "path", base)
        time_source, described = FileTime(path), f"file {path}"
    time_node.done()
    limits = MetadataLimits()
    if node.has("metadata_limits"):
        lim = node.child("metadata_limits")
        limits = MetadataLimits(
            root=lim.integer("root", limits.root, minimum=1024, maximum=1 << 24),
            timestamp=lim.integer("timestamp", limits.timestamp, minimum=512, maximum=1 << 20),
            snapshot=lim.integer("snapshot", limits.snapshot, minimum=1024, maximum=1 << 28),
            targets=lim.integer("targets", limits.targets, minimum=1024, maximum=1 << 28))
        lim.done()
    signing_key = _path(node, "signing_key", base)
    if not signing_key.is_file():
        raise node.error(f"no such file: {signing_key}", "signing_key")
    cfg = UptaneConfig(vin=_ident(node, "vin"), primary_id=_ident(node, "primary_id"), vehicle=vehicle,
                       signing_key=signing_key, state_dir=_path(node, "state_dir", base), director=director,
                       image=image, ecus=ecus, time_source=time_source, time_description=described, limits=limits,
                       source=node.source)
    node.done()
    return cfg
