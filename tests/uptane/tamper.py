"""What an attacker does to the repositories, through the same python-tuf metadata API.

A compromised Director holds the online keys and signs whatever it likes
(:func:`director_publishes`); a man in the middle or a compromised mirror serves other
bytes than were signed (:func:`serve`). Nothing here bypasses the vehicle's code.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, TargetFile
from tuf.api.serialization.json import JSONSerializer

from bench.repository.image import ImageRepository
from bench.repository.keys import KeyRing, RoleKeys
from bench.repository.tufrepo import TufRepository

from .world import VIN_A, director


def director_repo(world: Path, vin: str = VIN_A) -> TufRepository:
    return director(world).vehicle_repo(vin)


def director_publishes(world: Path, change: Callable[[dict[str, TargetFile]], object], vin: str = VIN_A) -> None:
    """The Director's online keys sign targets changed by ``change`` (new targets/snapshot/timestamp)."""
    repo = director_repo(world, vin)
    targets = {name: copy.deepcopy(info) for name, info in repo.target_files.items()}
    change(targets)
    repo.publish(targets)


def custom_of(targets: dict[str, TargetFile], name: str) -> dict[str, Any]:
    c: dict[str, Any] = targets[name].unrecognized_fields["custom"]
    return c


def image_repo(world: Path) -> ImageRepository:
    return ImageRepository(world / "image-repo")


def resign(path: Path, signers: list[CryptoSigner], change: Callable[[Any], None]) -> None:
    """Load metadata, change its ``signed`` part, sign it with ``signers``, write it back."""
    md = Metadata.from_bytes(path.read_bytes())
    change(md.signed)
    for i, s in enumerate(signers):
        md.sign(s, append=i > 0)
    path.write_bytes(md.to_bytes(JSONSerializer(compact=True)))


def with_foreign_key(keys: KeyRing, role: str) -> KeyRing:
    """A key ring like ``keys`` but with an unknown key for ``role`` (never saved)."""
    roles = dict(keys.roles)
    roles[role] = RoleKeys(1, [CryptoSigner.generate_ed25519()], ["foreign.key"])
    return KeyRing(keys.directory, roles)


def stored_target(world: Path, name: str) -> Path:
    repo = image_repo(world)
    return repo.stored_path(name, repo.targets[name].hashes["sha256"])


def serve(path: Path, data: bytes) -> None:
    path.write_bytes(data)
