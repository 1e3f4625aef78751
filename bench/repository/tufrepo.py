"""A TUF repository on disk, written with python-tuf's metadata API (``tuf.api.metadata``).

Consistent snapshots, as ngclient fetches them::

    <roots_dir>/1.root.json, 2.root.json ...    root history (shared by all Director vehicles)
    <metadata_dir>/N.targets.json, N.snapshot.json, timestamp.json

Snapshot lists ``targets.json`` with version, length and SHA-256; timestamp lists the
snapshot likewise, so a client detects any mix of files (mix-and-match). Files are
written to a temporary name and renamed, timestamp last, so a reader sees either the
old or the new repository state. Versions only go up; old versions stay on disk.

Root rotation (:meth:`TufRepository.rotate`): the new root (version + 1) lists the new
keys and is signed by a threshold of the *old* root keys and of the *new* ones, as the
TUF client workflow demands (5.3.4); when a non-root role's keys change, that role's
metadata is re-signed in new versions.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp
from tuf.api.serialization.json import JSONSerializer

from agent.errors import ConfigurationError
from bench.repository.keys import ROLES, KeyRing

Clock = Callable[[], datetime]
S = TypeVar("S", Root, Timestamp, Snapshot, Targets)
_SERIALIZER = JSONSerializer(compact=True)
_VERSIONED = re.compile(r"^(\d+)\.root\.json$")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Expiry:
    """How long each role's metadata is valid after it is signed."""

    root: timedelta = timedelta(days=365)
    targets: timedelta = timedelta(days=30)
    snapshot: timedelta = timedelta(days=7)
    timestamp: timedelta = timedelta(days=1)

    def of(self, role: str) -> timedelta:
        value: timedelta = getattr(self, role)
        return value


DEFAULT_EXPIRY = Expiry()


def _expires(clock: Clock, lifetime: timedelta) -> datetime:
    return (clock() + lifetime).replace(microsecond=0)


def write_file(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def sign_with(md: Metadata[Any], signers: list[CryptoSigner], *, append: bool = False) -> None:
    for i, signer in enumerate(signers):
        md.sign(signer, append=append or i > 0)


def _meta(data: bytes, version: int) -> MetaFile:
    return MetaFile(version=version, length=len(data), hashes={"sha256": hashlib.sha256(data).hexdigest()})


def root_versions(roots_dir: Path) -> list[int]:
    if not roots_dir.is_dir():
        return []
    return sorted(int(m.group(1)) for p in roots_dir.iterdir() if (m := _VERSIONED.match(p.name)))


def init_root(roots_dir: Path, keys: KeyRing, *, expiry: Expiry = DEFAULT_EXPIRY, clock: Clock = utc_now) -> bytes:
    """Write ``1.root.json`` (and ``root.json``, the trust anchor to provision); its bytes."""
    roots_dir.mkdir(parents=True, exist_ok=True)
    if root_versions(roots_dir):
        raise ConfigurationError("repository already has root metadata", source=str(roots_dir))
    root = Root(expires=_expires(clock, expiry.root), consistent_snapshot=True)
    for role in ROLES:
        for signer in keys.signers(role):
            root.add_key(signer.public_key, role)
        root.roles[role].threshold = keys.threshold(role)
    md = Metadata(root)
    sign_with(md, keys.signers("root"))
    data = md.to_bytes(_SERIALIZER)
    write_file(roots_dir / "1.root.json", data)
    write_file(roots_dir / "root.json", data)
    return data


def load_metadata(path: Path, kind: type[S]) -> Metadata[S]:
    try:
        md = Metadata[S].from_bytes(path.read_bytes())
    except (OSError, ValueError) as e:
        raise ConfigurationError(f"cannot load {kind.type} metadata: {e}", source=str(path)) from e
    if not isinstance(md.signed, kind):
        raise ConfigurationError(f"expected {kind.type} metadata, found {md.signed.type}", source=str(path))
    return md


class TufRepository:
    """The newest metadata of one repository and the keys to sign new versions."""

    def __init__(self, metadata_dir: Path, roots_dir: Path, keys: KeyRing, *, expiry: Expiry = DEFAULT_EXPIRY,
                 clock: Clock = utc_now) -> None:
        self.metadata_dir = metadata_dir
        self.roots_dir = roots_dir
        self.keys = keys
        self.expiry = expiry
        self.clock = clock
        metadata_dir.mkdir(parents=True, exist_ok=True)
        versions = root_versions(roots_dir)
        if not versions:
            raise ConfigurationError("no root metadata (N.root.json)", source=str(roots_dir))
        self.root = load_metadata(roots_dir / f"{versions[-1]}.root.json", Root)
        ts_path = metadata_dir / "timestamp.json"
        if ts_path.is_file():
            self.timestamp = load_metadata(ts_path, Timestamp)
            self.snapshot = load_metadata(metadata_dir / f"{self.timestamp.signed.snapshot_meta.version}.snapshot.json",
                                          Snapshot)
            version = self.snapshot.signed.meta["targets.json"].version
            self.targets = load_metadata(metadata_dir / f"{version}.targets.json", Targets)
        else:  # a new repository: version 1 of everything, no targets
            self.targets = Metadata(Targets(version=1, expires=clock()))
            t_bytes = self._sign(self.targets, "targets")
            write_file(self.file("1.targets.json"), t_bytes)
            self.snapshot = Metadata(Snapshot(version=1, expires=clock(), meta={"targets.json": _meta(t_bytes, 1)}))
            s_bytes = self._sign(self.snapshot, "snapshot")
            write_file(self.file("1.snapshot.json"), s_bytes)
            self.timestamp = Metadata(Timestamp(version=1, expires=clock(), snapshot_meta=_meta(s_bytes, 1)))
            write_file(ts_path, self._sign(self.timestamp, "timestamp"))

    # -- reading -------------------------------------------------------------------------
    @property
    def target_files(self) -> Mapping[str, TargetFile]:
        return self.targets.signed.targets

    def file(self, name: str) -> Path:
        return self.metadata_dir / name

    # -- writing -------------------------------------------------------------------------
    def _sign(self, md: Metadata[Any], role: str) -> bytes:
        md.signed.expires = _expires(self.clock, self.expiry.of(role))
        sign_with(md, self.keys.signers(role))
        return md.to_bytes(_SERIALIZER)

    def publish(self, targets: Mapping[str, TargetFile] | None = None) -> None:
        """New targets (when given), snapshot and timestamp versions, signed and written."""
        if targets is not None:
            new_targets = Targets(version=self.targets.signed.version + 1, expires=self.clock(),
                                  targets=dict(targets))
            self.targets = Metadata(new_targets)
        else:
            self.targets.signed.version += 1
        t_bytes = self._sign(self.targets, "targets")
        write_file(self.file(f"{self.targets.signed.version}.targets.json"), t_bytes)
        self._publish_snapshot(t_bytes)

    def _publish_snapshot(self, t_bytes: bytes) -> None:
        snap = Snapshot(version=self.snapshot.signed.version + 1, expires=self.clock(),
                        meta={"targets.json": _meta(t_bytes, self.targets.signed.version)})
        self.snapshot = Metadata(snap)
        s_bytes = self._sign(self.snapshot, "snapshot")
        write_file(self.file(f"{snap.version}.snapshot.json"), s_bytes)
        self._publish_timestamp(s_bytes)

    def _publish_timestamp(self, s_bytes: bytes) -> None:
        ts = Timestamp(version=self.timestamp.signed.version + 1, expires=self.clock(),
                       snapshot_meta=_meta(s_bytes, self.snapshot.signed.version))
        self.timestamp = Metadata(ts)
        write_file(self.file("timestamp.json"), self._sign(self.timestamp, "timestamp"))

    def refresh_timestamp(self) -> None:
        """A new timestamp version over the same snapshot (the online timestamp key's daily job)."""
        s_bytes = self.file(f"{self.snapshot.signed.version}.snapshot.json").read_bytes()
        self._publish_timestamp(s_bytes)

    def timestamp_expires_within(self, margin: timedelta) -> bool:
        return self.timestamp.signed.expires <= self.clock() + margin

    def rotate(self, role: str, signers: list[CryptoSigner], threshold: int) -> bytes:
        """Replace ``role``'s keys: a new root version signed by old and new root keys; its bytes.

        When ``role`` is not root, targets / snapshot / timestamp are re-signed in new versions.
        """
        data = rotate_root(self.roots_dir, self.keys, role, signers, threshold, expiry=self.expiry, clock=self.clock)
        self.root = Metadata[Root].from_bytes(data)
        if role != "root":
            self.publish()
        return data


def rotate_root(roots_dir: Path, keys: KeyRing, role: str, signers: list[CryptoSigner], threshold: int, *,
                expiry: Expiry = DEFAULT_EXPIRY, clock: Clock = utc_now) -> bytes:
    """Write root version N+1 giving ``role`` the keys ``signers``; signed by old and new root keys.

    ``keys`` is updated (and saved) to the new signers.
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    if not 1 <= threshold <= len(signers):
        raise ValueError(f"threshold {threshold} must be between 1 and {len(signers)}")
    versions = root_versions(roots_dir)
    old = load_metadata(roots_dir / f"{versions[-1]}.root.json", Root)
    old_root_signers = list(keys.signers("root"))
    new_root = copy.deepcopy(old.signed)
    new_root.version += 1
    new_root.expires = _expires(clock, expiry.root)
    for keyid in list(new_root.roles[role].keyids):
        new_root.revoke_key(keyid, role)
    for signer in signers:
        new_root.add_key(signer.public_key, role)
    new_root.roles[role].threshold = threshold
    md = Metadata(new_root)
    sign_with(md, old_root_signers)
    for signer in signers if role == "root" else []:
        if signer.public_key.keyid not in md.signatures:
            md.sign(signer, append=True)
    data = md.to_bytes(_SERIALIZER)
    write_file(roots_dir / f"{new_root.version}.root.json", data)
    keys.replace(role, signers, threshold)
    keys.save()
    return data
