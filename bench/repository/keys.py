"""Signing keys of a bench TUF repository, generated at run time and kept beside it.

A :class:`KeyRing` holds, per top-level role, its signers and threshold, stored as
``<dir>/keys/<role>-<n>.key`` (PKCS#8 PEM, mode 0600, directory 0700) plus
``<dir>/keys/keyring.json`` naming the files of each role and the threshold. Keys are
Ed25519 (``securesystemslib`` :class:`CryptoSigner`). On a real backend the root keys
would be offline (HSM / air-gapped) and only timestamp / snapshot (and the Director's
targets) online; the bench keeps them all on disk, generated fresh for every
repository and never committed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from securesystemslib.signer import CryptoSigner

from agent.errors import ConfigurationError
from dmclient.uptane.signing import write_private_key

ROLES = ("root", "targets", "snapshot", "timestamp")
#: the default: 2-of-3 root keys, one key each for the other roles
DEFAULT_LAYOUT: Mapping[str, tuple[int, int]] = {"root": (3, 2), "targets": (1, 1), "snapshot": (1, 1),
                                                 "timestamp": (1, 1)}


@dataclass
class RoleKeys:
    threshold: int
    signers: list[CryptoSigner] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


class KeyRing:
    def __init__(self, directory: Path, roles: dict[str, RoleKeys]) -> None:
        self.directory = directory
        self.roles = roles

    def signers(self, role: str) -> list[CryptoSigner]:
        return self.roles[role].signers

    def threshold(self, role: str) -> int:
        return self.roles[role].threshold

    @classmethod
    def generate(cls, directory: Path, layout: Mapping[str, tuple[int, int]] = DEFAULT_LAYOUT) -> KeyRing:
        """Fresh keys: ``layout[role] = (number of keys, threshold)``."""
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        ring = cls(directory, {})
        for role in ROLES:
            count, threshold = layout[role]
            if not 1 <= threshold <= count:
                raise ValueError(f"{role}: threshold {threshold} must be between 1 and the key count {count}")
            ring.roles[role] = RoleKeys(threshold)
            for _ in range(count):
                ring.add(role, CryptoSigner.generate_ed25519())
        ring.save()
        return ring

    def add(self, role: str, signer: CryptoSigner) -> str:
        """Store one more key for ``role`` (call :meth:`save` after); its file name."""
        keys = self.roles.setdefault(role, RoleKeys(1))
        n = 1
        while (self.directory / f"{role}-{n}.key").exists() or f"{role}-{n}.key" in keys.files:
            n += 1
        name = f"{role}-{n}.key"
        write_private_key(self.directory / name, signer)
        keys.signers.append(signer)
        keys.files.append(name)
        return name

    def replace(self, role: str, signers: list[CryptoSigner], threshold: int) -> None:
        """``role`` is now signed by ``signers`` (old key files stay on disk for the record)."""
        self.roles[role] = RoleKeys(threshold)
        for s in signers:
            self.add(role, s)

    def save(self) -> None:
        doc = {"roles": {r: {"threshold": k.threshold, "keys": k.files} for r, k in self.roles.items()}}
        tmp = self.directory / "keyring.json.tmp"
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        os.replace(tmp, self.directory / "keyring.json")

    @classmethod
    def load(cls, directory: Path) -> KeyRing:
        path = directory / "keyring.json"
        try:
            doc = json.loads(path.read_text())
            roles: dict[str, RoleKeys] = {}
            for role, entry in doc["roles"].items():
                keys = RoleKeys(int(entry["threshold"]))
                for name in entry["keys"]:
                    pem = (directory / name).read_bytes()
                    private = serialization.load_pem_private_key(pem, password=None)
                    keys.signers.append(CryptoSigner(private))  # type: ignore[arg-type]
                    keys.files.append(name)
                roles[role] = keys
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ConfigurationError(f"cannot load repository keys: {e}", source=str(path)) from e
        missing = [r for r in ROLES if r not in roles]
        if missing:
            raise ConfigurationError(f"no keys for role(s) {', '.join(missing)}", source=str(path))
        return cls(directory, roles)
