"""The Image repository on disk: signed metadata, targets, release manifests, content keys.

Layout of the directory ``otactl release build --out DIR`` writes::

    DIR/keys/            signing keys (0700; root 2-of-3, targets, snapshot, timestamp)
    DIR/metadata/        1.root.json ... N.targets.json, N.snapshot.json, timestamp.json
                         (root.json = version 1, the trust anchor to provision in vehicles)
    DIR/targets/         <dir>/<sha256>.<name>: every target under its hash-prefixed name
    DIR/releases/        <release>.json: release manifests for the Director
    DIR/content-keys/    <sha256 of image>.json: AES-256-GCM key + nonce of encrypted images (0700)

Targets are immutable: adding a name that exists with other content is refused;
adding it again with the same content is a no-op.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from tuf.api.metadata import TargetFile

from agent.errors import ConfigurationError
from bench.repository.keys import DEFAULT_LAYOUT, KeyRing
from bench.repository.release_manifest import ReleaseManifest, load_release
from bench.repository.tufrepo import DEFAULT_EXPIRY, Clock, Expiry, TufRepository, init_root, utc_now, write_file
from dmclient.digests import Hashes
from dmclient.uptane.assignment import target_url


class ImageRepository:
    def __init__(self, directory: Path, *, expiry: Expiry = DEFAULT_EXPIRY, clock: Clock = utc_now) -> None:
        self.directory = directory
        self.metadata_dir = directory / "metadata"
        self.targets_dir = directory / "targets"
        self.releases_dir = directory / "releases"
        self.content_keys_dir = directory / "content-keys"
        if not (directory / "keys" / "keyring.json").is_file():
            raise ConfigurationError("not an Image repository (no keys/keyring.json); build a release into it first",
                                     source=str(directory))
        self.keys = KeyRing.load(directory / "keys")
        self.repo = TufRepository(self.metadata_dir, self.metadata_dir, self.keys, expiry=expiry, clock=clock)
        for d in (self.targets_dir, self.releases_dir):
            d.mkdir(parents=True, exist_ok=True)

    @classmethod
    def create(cls, directory: Path, *, expiry: Expiry = DEFAULT_EXPIRY, clock: Clock = utc_now,
               layout: Mapping[str, tuple[int, int]] = DEFAULT_LAYOUT) -> ImageRepository:
        directory.mkdir(parents=True, exist_ok=True)
        keys = KeyRing.generate(directory / "keys", layout)
        init_root(directory / "metadata", keys, expiry=expiry, clock=clock)
        return cls(directory, expiry=expiry, clock=clock)

    @classmethod
    def open_or_create(cls, directory: Path, *, expiry: Expiry = DEFAULT_EXPIRY,
                       clock: Clock = utc_now) -> ImageRepository:
        if (directory / "keys" / "keyring.json").is_file():
            return cls(directory, expiry=expiry, clock=clock)
        return cls.create(directory, expiry=expiry, clock=clock)

    # -- targets ---------------------------------------------------------------------------
    @property
    def targets(self) -> Mapping[str, TargetFile]:
        return self.repo.target_files

    def stored_path(self, name: str, sha256: str) -> Path:
        """Where a target's bytes live: the hash-prefixed name clients download."""
        parent, sep, base = name.rpartition("/")
        return self.targets_dir / f"{parent}{sep}{sha256}.{base}"

    def read_target(self, name: str) -> bytes:
        info = self.targets[name]
        return self.stored_path(name, info.hashes["sha256"]).read_bytes()

    def url(self, base_url: str, name: str) -> str:
        return target_url(base_url, name, Hashes.parse(self.targets[name].hashes, name))

    def prepare_target(self, name: str, data: bytes, custom: dict[str, Any]) -> TargetFile:
        """Store ``data`` under its hash-prefixed name; the TargetFile to publish (not yet signed)."""
        info = TargetFile.from_data(name, data, ["sha256", "sha512"])
        info.unrecognized_fields["custom"] = custom
        existing = self.targets.get(name)
        if existing is not None and (existing.hashes != info.hashes or existing.custom != custom):
            raise ConfigurationError(f"target {name} already exists in the Image repository with other content; "
                                     "targets are immutable (give the image a new version)",
                                     source=str(self.directory))
        path = self.stored_path(name, info.hashes["sha256"])
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file():
            write_file(path, data)
        return info

    def publish(self, new_targets: Mapping[str, TargetFile], release: ReleaseManifest | None = None) -> None:
        """Sign a new targets / snapshot / timestamp with ``new_targets`` added, then record ``release``."""
        merged = dict(self.targets)
        merged.update(new_targets)
        self.repo.publish(merged)
        if release is not None:
            write_file(self.releases_dir / f"{release.release}.json",
                       (json.dumps(release.to_json(), indent=2, sort_keys=True) + "\n").encode())

    # -- releases ----------------------------------------------------------------------
    def release(self, release_id: str) -> ReleaseManifest | None:
        return load_release(self.directory, release_id)

    def releases(self) -> dict[str, ReleaseManifest]:
        return {p.stem: ReleaseManifest.load(p) for p in sorted(self.releases_dir.glob("*.json"))}

    # -- content keys of encrypted images ----------------------------------------------------
    def store_content_key(self, image_sha256: str, key: bytes, nonce: bytes) -> None:
        self.content_keys_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.content_keys_dir, 0o700)
        path = self.content_keys_dir / f"{image_sha256}.json"
        data = json.dumps({"content_key": base64.b64encode(key).decode(), "nonce": base64.b64encode(nonce).decode()})
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(data)

    def content_key(self, image_sha256: str) -> tuple[bytes, bytes]:
        return load_content_key(self.directory, image_sha256)

    # -- timestamp ---------------------------------------------------------------------------
    def refresh_timestamp_if_due(self, margin: timedelta) -> bool:
        """Re-sign the timestamp when it expires within ``margin`` (as an online timestamp service does)."""
        if self.repo.timestamp_expires_within(margin):
            self.repo.refresh_timestamp()
            return True
        return False


def load_content_key(image_dir: Path, image_sha256: str) -> tuple[bytes, bytes]:
    """``(content key, nonce)`` of an encrypted image of the Image repository in ``image_dir``."""
    path = image_dir / "content-keys" / f"{image_sha256}.json"
    try:
        doc = json.loads(path.read_text())
        return base64.b64decode(doc["content_key"]), base64.b64decode(doc["nonce"])
    except (OSError, ValueError, KeyError) as e:
        raise ConfigurationError(f"no usable content key for image {image_sha256[:16]}...: {e}",
                                 source=str(path)) from e


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
