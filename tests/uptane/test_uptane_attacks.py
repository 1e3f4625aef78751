"""The Uptane threat model, one attack at a time, against the real repositories over mutual TLS.

Every attack ends with a clear error (the class of the attack, its ``attack`` name,
the repository / ECU / values in the message), nothing new in the package cache,
the installed image records unchanged, and the trusted metadata directories
byte-for-byte as they were after the last good check.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from tuf.api.metadata import TargetFile

from agent.errors import VerificationError
from bench.pki import BenchPki
from bench.repository.tufrepo import TufRepository
from dmclient.job import JobSettings, TargetJob
from dmclient.order import TargetSpec
from dmclient.retry import RetryPolicy
from dmclient.uptane.errors import (
    ArbitrarySoftwareError,
    BaselineMismatchError,
    EndlessDataError,
    FreezeError,
    MixAndMatchError,
    PartialBundleError,
    RollbackError,
    SignatureError,
    UnknownEcuError,
    UptaneVerificationError,
    WrongHardwareError,
)
from dmclient.uptane.manifest import InstalledImage

from .tamper import (
    custom_of,
    director_publishes,
    director_repo,
    image_repo,
    resign,
    serve,
    stored_target,
    with_foreign_key,
)
from .world import HARDWARE, V2, V3, VIN_A, InProcessBackend, Vehicle, director, hashes_of

ENGINE = "engine/engine-1.1.0.hex"
BASELINE = "baselines/bv-1.1.0.xml"


def refused(vehicle: Vehicle, kind: type[UptaneVerificationError], attack: str,
            version: str | None = None) -> UptaneVerificationError:
    """Check, expect ``kind``; assert nothing trusted, installed or cached changed."""
    before = vehicle.trusted()
    with pytest.raises(kind) as info:
        vehicle.check(version)
    err = info.value
    assert err.attack == attack
    assert isinstance(err, VerificationError) and err.exit_code == 5
    assert vehicle.trusted() == before
    assert any(text.startswith(f"{attack}: ") for text in vehicle.state.attacks().values())
    return err


def good_check(vehicle: Vehicle, version: str | None = None) -> None:
    result = vehicle.check(version)
    assert result.assignment is not None


def forget_cached(vehicle: Vehicle) -> None:
    """Empty the package cache: the next check downloads the baseline again (a check re-hashes the
    verified copy it holds instead of downloading it, so a tampered file served would go unseen)."""
    for entry in vehicle.cache.entries():
        assert vehicle.cache.remove(entry.sha256)


# -- rollback ------------------------------------------------------------------------------
def test_rollback_assigned_release_counter_below_the_installed_one(vehicle: Vehicle) -> None:
    assert vehicle.check(V3).assignment is None  # trusted metadata on file
    factory = vehicle.state.installed("engine")
    assert factory is not None
    vehicle.state.record_installed("engine", factory.image, 5)  # the ECU already has counter 5
    err = refused(vehicle, RollbackError, "rollback")
    assert err.ecu == "engine"
    assert "release counter 2 is lower than the installed image's" in str(err)


@pytest.mark.parametrize("repository", ["director", "image"])
def test_rollback_of_timestamp_metadata_version(vehicle: Vehicle, world: Path, repository: str) -> None:
    good_check(vehicle)
    if repository == "director":
        path = world / "director" / "vehicles" / VIN_A / "metadata" / "timestamp.json"
        old = path.read_bytes()
        director_repo(world).refresh_timestamp()
    else:
        path = world / "image-repo" / "metadata" / "timestamp.json"
        old = path.read_bytes()
        image_repo(world).repo.refresh_timestamp()
    good_check(vehicle)  # the vehicle now trusts the newer timestamp
    serve(path, old)  # ... and is served the older one again
    err = refused(vehicle, RollbackError, "rollback")
    assert err.repository == repository
    assert "timestamp version" in str(err)


def test_rollback_of_vehicle_version(vehicle: Vehicle, world: Path) -> None:
    """A Director that leads a car back to an older vehicle version, with images it never had."""
    def back(targets: dict[str, TargetFile]) -> None:
        for name in targets:
            c = custom_of(targets, name)
            c["target_vehicle_version"] = "BV OS D 0.9.0"
    assert vehicle.check(V3).assignment is None
    good_check(vehicle)
    director_publishes(world, back)
    err = refused(vehicle, RollbackError, "rollback")
    assert "not newer than the vehicle's" in str(err)


# -- freeze --------------------------------------------------------------------------------
def test_freeze_expired_director_timestamp_at_injected_time(vehicle: Vehicle) -> None:
    good_check(vehicle)
    vehicle.client.time_source = lambda: datetime.now(timezone.utc) + timedelta(days=2)
    err = refused(vehicle, FreezeError, "freeze")
    assert err.repository == "director" and "timestamp.json is expired" in str(err)


# -- mix and match ------------------------------------------------------------------------
def test_mix_and_match_snapshot_disagrees_with_timestamp(vehicle: Vehicle, world: Path) -> None:
    good_check(vehicle)
    image = image_repo(world)
    image.repo.publish()  # new targets, snapshot and timestamp versions
    version = image.repo.snapshot.signed.version
    path = world / "image-repo" / "metadata" / f"{version}.snapshot.json"

    def later(signed: Any) -> None:  # a validly signed snapshot of that version, but not the one timestamp names
        signed.expires += timedelta(hours=1)
    resign(path, image.keys.signers("snapshot"), later)
    err = refused(vehicle, MixAndMatchError, "mix-and-match")
    assert err.repository == "image"


# -- arbitrary software ------------------------------------------------------------------
def test_arbitrary_software_director_hashes_differ_from_image(vehicle: Vehicle, world: Path) -> None:
    good_check(vehicle)
    evil = b"x" * 10

    def swap(targets: dict[str, TargetFile]) -> None:
        targets[ENGINE].hashes = {"sha256": hashlib.sha256(evil).hexdigest(),
                                  "sha512": hashlib.sha512(evil).hexdigest()}
    director_publishes(world, swap)
    err = refused(vehicle, ArbitrarySoftwareError, "arbitrary-software")
    assert err.ecu == "engine" and "sha256 differs between Director" in str(err)


def test_arbitrary_software_release_counter_differs_from_image(vehicle: Vehicle, world: Path) -> None:
    good_check(vehicle)
    director_publishes(world, lambda t: custom_of(t, ENGINE).update(release_counter=7))
    err = refused(vehicle, ArbitrarySoftwareError, "arbitrary-software")
    assert "release counter 7 from the Director, 2 from the Image repository" in str(err)


def test_arbitrary_software_served_file_differs_from_signed(vehicle: Vehicle, world: Path) -> None:
    good_check(vehicle)
    forget_cached(vehicle)
    path = stored_target(world, BASELINE)
    data = path.read_bytes()
    serve(path, data.replace(b"Engine", b"Engin3", 1))  # same length, other bytes
    err = refused(vehicle, ArbitrarySoftwareError, "arbitrary-software")
    assert err.repository == "image" and BASELINE in str(err)


# -- endless data ---------------------------------------------------------------------------
def test_endless_data_metadata_longer_than_allowed(vehicle: Vehicle, world: Path) -> None:
    good_check(vehicle)
    serve(world / "director" / "vehicles" / VIN_A / "metadata" / "timestamp.json", b" " * 40_000)
    err = refused(vehicle, EndlessDataError, "endless-data")
    assert err.repository == "director"


def test_endless_data_target_longer_than_signed(vehicle: Vehicle, world: Path) -> None:
    good_check(vehicle)
    forget_cached(vehicle)
    path = stored_target(world, BASELINE)
    serve(path, path.read_bytes() + b"<!-- more -->" * 1000)
    err = refused(vehicle, EndlessDataError, "endless-data")
    assert BASELINE in str(err)


def test_endless_data_image_download_capped_at_verified_length(vehicle: Vehicle, world: Path) -> None:
    """The assignment's length caps dmclient's own downloader: the longer image never reaches the cache."""
    result = vehicle.check()
    assert result.assignment is not None
    path = stored_target(world, ENGINE)
    serve(path, path.read_bytes() + b"\0" * 4096)
    cached = sorted(e.sha256 for e in vehicle.cache.entries())
    order = result.assignment.download_order()
    spec = TargetSpec.parse(order["targets"][0], "targets[0]")
    settings = JobSettings(policy=RetryPolicy(max_attempts=1, base_delay=0, max_delay=0, max_retry_after=0),
                           checkpoint_bytes=1 << 16, delta_max_bytes=1 << 20, min_free_bytes=0)
    spec_full = TargetSpec(spec.name, spec.length, spec.hashes, spec.url)  # no delta: the full image only
    with pytest.raises(VerificationError):
        TargetJob(spec_full, cache=vehicle.cache, db=vehicle.db, fetcher=vehicle.fetcher, settings=settings).run()
    assert sorted(e.sha256 for e in vehicle.cache.entries()) == cached


# -- partial bundle --------------------------------------------------------------------------
def test_partial_bundle_director_target_missing_from_image(vehicle: Vehicle, world: Path) -> None:
    good_check(vehicle)

    def rename(targets: dict[str, TargetFile]) -> None:
        info = targets.pop(ENGINE)
        info.path = "engine/engine-1.1.1.hex"
        targets[info.path] = info
    director_publishes(world, rename)
    err = refused(vehicle, PartialBundleError, "partial-bundle")
    assert "engine/engine-1.1.1.hex is not in the Image repository" in str(err)


def test_partial_bundle_without_the_baseline_xml(vehicle: Vehicle, world: Path) -> None:
    good_check(vehicle)
    director_publishes(world, lambda t: t.pop(BASELINE))
    err = refused(vehicle, PartialBundleError, "partial-bundle")
    assert "without its baseline XML" in str(err)


# -- wrong hardware, wrong ECU --------------------------------------------------------------
def test_wrong_hardware_id_director_disagrees_with_image(vehicle: Vehicle, world: Path) -> None:
    good_check(vehicle)
    director_publishes(world, lambda t: custom_of(t, ENGINE).update(hardware_id="ENG-9999"))
    err = refused(vehicle, WrongHardwareError, "wrong-hardware")
    assert "'ENG-9999' from the Director, 'ENG-4711' from the Image repository" in str(err)


def test_wrong_hardware_id_image_is_not_for_this_ecu(tmp_path: Path, world: Path, pki: BenchPki,
                                                     backend: InProcessBackend) -> None:
    v = Vehicle(tmp_path / "other-hw", world, pki, backend.url, hardware={**HARDWARE, "engine": "ENG-4712"})
    try:
        assert v.check(V3).assignment is None
        err = refused(v, WrongHardwareError, "wrong-hardware")
        assert "image is for hardware 'ENG-4711', ECU engine is 'ENG-4712'" in str(err)
    finally:
        v.close()


def test_wrong_ecu_not_in_this_vehicle(vehicle: Vehicle, world: Path) -> None:
    good_check(vehicle)
    director_publishes(world, lambda t: custom_of(t, ENGINE).update(ecu="gearbox"))
    err = refused(vehicle, UnknownEcuError, "unknown-ecu")
    assert "this vehicle has no ECU 'gearbox'" in str(err)


# -- signatures -----------------------------------------------------------------------------
def test_bad_signature_on_director_timestamp(vehicle: Vehicle, world: Path) -> None:
    good_check(vehicle)
    repo = director_repo(world)
    repo.refresh_timestamp()
    path = world / "director" / "vehicles" / VIN_A / "metadata" / "timestamp.json"
    doc = json.loads(path.read_bytes())
    sig = doc["signatures"][0]["sig"]
    doc["signatures"][0]["sig"] = ("0" if sig[0] != "0" else "1") + sig[1:]
    serve(path, json.dumps(doc).encode())
    err = refused(vehicle, SignatureError, "bad-signature")
    assert "timestamp was signed by 0/1 keys" in str(err)


def test_missing_signatures_on_image_timestamp(vehicle: Vehicle, world: Path) -> None:
    good_check(vehicle)
    image_repo(world).repo.refresh_timestamp()
    path = world / "image-repo" / "metadata" / "timestamp.json"
    doc = json.loads(path.read_bytes())
    doc["signatures"] = []
    serve(path, json.dumps(doc).encode())
    err = refused(vehicle, SignatureError, "bad-signature")
    assert err.repository == "image"


def test_director_targets_signed_by_an_unknown_key(vehicle: Vehicle, world: Path) -> None:
    good_check(vehicle)
    legit = director_repo(world)
    attacker = TufRepository(legit.metadata_dir, legit.roots_dir, with_foreign_key(legit.keys, "targets"))
    attacker.publish(dict(legit.target_files))
    err = refused(vehicle, SignatureError, "bad-signature")
    assert "targets was signed by 0/1 keys" in str(err)


# -- reporting -------------------------------------------------------------------------------
def test_detected_attack_goes_into_the_next_manifest_and_clears_after_a_good_check(
        vehicle: Vehicle, world: Path) -> None:
    good_check(vehicle)
    saved = world / "saved-targets"
    meta = world / "director" / "vehicles" / VIN_A / "metadata"
    shutil.copytree(meta, saved)
    director_publishes(world, lambda t: custom_of(t, ENGINE).update(ecu="gearbox"))
    with pytest.raises(UnknownEcuError):
        vehicle.check()
    with pytest.raises(UnknownEcuError):
        vehicle.check()  # its manifest carried the first detection
    reported = director(world).vehicle_state(VIN_A)["attacks"]
    assert set(reported) == {"engine", "brake", "body"}  # not one ECU's image: the whole bundle is suspect
    assert all(text.startswith("unknown-ecu: ") for text in reported.values())
    # the Director is repaired (new decision: republished), the next good check clears the indicator
    shutil.rmtree(meta)
    shutil.copytree(saved, meta)
    director(world).vehicle_repo(VIN_A).publish()  # versions above what the vehicle saw
    result = vehicle.check()
    assert result.assignment is not None
    assert vehicle.state.attacks() == {}
    vehicle.check()
    assert director(world).vehicle_state(VIN_A)["attacks"] == {}


def test_refused_check_installs_nothing(vehicle: Vehicle, world: Path) -> None:
    """After a refused check, the installed records and the version report are exactly as before."""
    before = {e: vehicle.state.installed(e) for e in ("engine", "brake", "body")}
    good_check(vehicle)
    director_publishes(world, lambda t: custom_of(t, ENGINE).update(hardware_id="X-1"))
    with pytest.raises(WrongHardwareError):
        vehicle.check()
    after = {e: vehicle.state.installed(e) for e in ("engine", "brake", "body")}
    assert after == before
    engine = after["engine"]
    assert engine is not None and engine.image == InstalledImage(
        "engine/engine-1.0.0.hex", engine.image.length,
        hashes_of((world / "images" / "engine-1.0.0.hex").read_bytes()))


def test_a_good_check_after_refusals_still_works(vehicle: Vehicle) -> None:
    """Sanity of the suite: the unmodified world verifies (every refusal above is the tampering's)."""
    result = vehicle.check()
    assert result.assignment is not None and result.assignment.target_vehicle_version == V2
    assert [e.ecu for e in result.assignment.ecus] == ["engine"]


# -- the signed baseline must describe the assignment ----------------------------------------
def test_baseline_that_does_not_list_the_assigned_software_is_refused(vehicle: Vehicle, world: Path) -> None:
    """Even with both repositories' keys, a baseline XML that contradicts the images is caught."""
    good_check(vehicle)
    image = image_repo(world)
    forged = (world / "baseline.xml").read_bytes().replace(b"<softwareVersion>1.1.0</softwareVersion>",
                                                           b"<softwareVersion>1.1.5</softwareVersion>")
    info = TargetFile.from_data(BASELINE, forged, ["sha256", "sha512"])
    info.unrecognized_fields["custom"] = image.targets[BASELINE].custom
    stored = image.stored_path(BASELINE, info.hashes["sha256"])
    stored.write_bytes(forged)
    image.repo.publish({**image.targets, BASELINE: info})

    def point_to_forgery(targets: dict[str, TargetFile]) -> None:
        targets[BASELINE].length, targets[BASELINE].hashes = info.length, dict(info.hashes)
    director_publishes(world, point_to_forgery)
    err = refused(vehicle, BaselineMismatchError, "baseline-mismatch")
    assert err.ecu == "engine" and "assigned software 1.1.0 is not what the baseline" in str(err)
