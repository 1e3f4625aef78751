"""Key rotation of the Image and the Director root, followed by the vehicle; an untrusted root refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, Root
from tuf.api.serialization.json import JSONSerializer

from bench.repository.keys import KeyRing, RoleKeys
from bench.repository.tufrepo import TufRepository, root_versions
from dmclient.uptane.errors import SignatureError, UntrustedRootError

from .tamper import director_repo, image_repo
from .test_uptane_attacks import good_check, refused
from .world import VIN_A, Vehicle, director


def new_keys(n: int) -> list[CryptoSigner]:
    return [CryptoSigner.generate_ed25519() for _ in range(n)]


def trusted_root_version(vehicle: Vehicle, repository: str) -> int:
    store = vehicle.client.director_store if repository == "director" else vehicle.client.image_store
    cur = store.current()
    assert cur is not None
    return int(os.readlink(cur / "root.json").split("/")[-1].split(".")[0])


def test_image_root_rotation_is_followed_and_the_old_online_key_is_refused(vehicle: Vehicle, world: Path) -> None:
    good_check(vehicle)
    assert trusted_root_version(vehicle, "image") == 1
    image = image_repo(world)
    old_timestamp_keys = list(image.keys.signers("timestamp"))
    image.repo.rotate("root", new_keys(3), 2)  # v2: new 2-of-3 root keys, signed by old and new
    image.repo.rotate("timestamp", new_keys(1), 1)  # v3: new timestamp key, timestamp re-signed
    result = vehicle.check()
    assert result.assignment is not None
    assert trusted_root_version(vehicle, "image") == 3
    # the retired timestamp key can no longer vouch for anything
    roles = dict(image.keys.roles)
    roles["timestamp"] = RoleKeys(1, old_timestamp_keys, ["old.key"])
    TufRepository(image.metadata_dir, image.metadata_dir, KeyRing(image.keys.directory, roles)).refresh_timestamp()
    err = refused(vehicle, SignatureError, "bad-signature")
    assert "timestamp was signed by 0/1 keys" in str(err)


def test_director_root_rotation_is_followed_and_the_old_targets_key_is_refused(vehicle: Vehicle,
                                                                               world: Path) -> None:
    good_check(vehicle)
    d = director(world)
    old_targets_keys = list(d.keys.signers("targets"))
    d.rotate("root", new_keys(3), 2)
    d.rotate("targets", new_keys(1), 1)  # every vehicle's targets re-signed with the new key
    result = vehicle.check()
    assert result.assignment is not None
    assert trusted_root_version(vehicle, "director") == 3
    repo = director_repo(world)
    roles = dict(repo.keys.roles)
    roles["targets"] = RoleKeys(1, old_targets_keys, ["old.key"])
    TufRepository(repo.metadata_dir, repo.roots_dir, KeyRing(repo.keys.directory, roles)).publish(
        dict(repo.target_files))
    err = refused(vehicle, SignatureError, "bad-signature")
    assert err.repository == "director" and "targets was signed by 0/1 keys" in str(err)


def _rogue_root(roots_dir: Path, signers: list[CryptoSigner], new_root_keys: list[CryptoSigner]) -> None:
    """Root version N+1 handing the root role to ``new_root_keys``, signed only by ``signers``."""
    version = root_versions(roots_dir)[-1]
    md = Metadata[Root].from_bytes((roots_dir / f"{version}.root.json").read_bytes())
    root = md.signed
    root.version += 1
    for keyid in list(root.roles["root"].keyids):
        root.revoke_key(keyid, "root")
    for s in new_root_keys:
        root.add_key(s.public_key, "root")
    root.roles["root"].threshold = 2
    for i, s in enumerate(signers):
        md.sign(s, append=i > 0)
    (roots_dir / f"{root.version}.root.json").write_bytes(md.to_bytes(JSONSerializer(compact=True)))


@pytest.mark.parametrize("repository", ["director", "image"])
def test_root_signed_only_by_new_keys_is_untrusted(vehicle: Vehicle, world: Path, repository: str) -> None:
    good_check(vehicle)
    roots = world / "director" / "roots" if repository == "director" else world / "image-repo" / "metadata"
    keys = new_keys(3)
    _rogue_root(roots, keys, keys)
    err = refused(vehicle, UntrustedRootError, "untrusted-root")
    assert err.repository == repository
    assert "not signed by the trusted root's keys" in str(err)
    assert trusted_root_version(vehicle, repository) == 1


def test_root_signed_below_the_old_threshold_is_untrusted(vehicle: Vehicle, world: Path) -> None:
    good_check(vehicle)
    old = director(world).keys.signers("root")
    new = new_keys(3)
    _rogue_root(world / "director" / "roots", [old[0], *new], new)  # 1 of the 2 old signatures needed
    err = refused(vehicle, UntrustedRootError, "untrusted-root")
    assert "root was signed by 1/2 keys" in str(err)


def test_a_vehicle_provisioned_before_two_rotations_walks_the_root_chain(world: Path, vehicle: Vehicle) -> None:
    d = director(world)
    d.rotate("root", new_keys(3), 2)
    d.rotate("root", new_keys(3), 2)
    d.rotate("snapshot", new_keys(1), 1)
    assert vehicle.check().assignment is not None
    assert trusted_root_version(vehicle, "director") == 4
    assert (world / "director" / "vehicles" / VIN_A / "metadata").is_dir()
