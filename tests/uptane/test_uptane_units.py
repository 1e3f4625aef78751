"""Pure parts: the cross-checks, the manifest, the metadata store, the state database, error mapping."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from securesystemslib.signer import CryptoSigner
from tuf.api import exceptions as tx
from tuf.api.metadata import TargetFile

from agent.errors import ConfigurationError, OtaTimeoutError, TransportError
from dmclient.digests import Hashes
from dmclient.uptane import custom
from dmclient.uptane.errors import (
    ArbitrarySoftwareError,
    EndlessDataError,
    FreezeError,
    InvalidMetadataError,
    MixAndMatchError,
    PartialBundleError,
    RollbackError,
    SignatureError,
    UntrustedRootError,
)
from dmclient.uptane.manifest import (
    EcuVersionReport,
    InstalledImage,
    InvalidManifestError,
    ManifestSignatureError,
    VehicleManifest,
    sign_manifest,
    verify_manifest,
)
from dmclient.uptane.metadata_store import MetadataStore
from dmclient.uptane.signing import load_signer, public_pem, write_private_key
from dmclient.uptane.state import UptaneState
from dmclient.uptane.tuf_errors import map_tuf_error
from dmclient.uptane.verification import cross_check

URL = "https://backend/image/targets"
ECUS = {"engine": "ENG-4711", "brake": "BRK-0815"}


def tf(name: str, data: bytes, c: dict[str, Any]) -> TargetFile:
    info = TargetFile.from_data(name, data, ["sha256", "sha512"])
    info.unrecognized_fields["custom"] = c
    return info


def bundle(**director_changes: Any) -> tuple[dict[str, TargetFile], dict[str, TargetFile]]:
    """Director and Image targets of a one-ECU release, consistent unless changed."""
    img, base = b"engine 1.1.0 image", b"<baseline/>"
    image = {"engine/e.hex": tf("engine/e.hex", img, custom.ImageEcuImage("ENG-4711", 2, "1.1.0", "r1").to_dict()),
             "b.xml": tf("b.xml", base, custom.ImageBaseline("BV OS D 1.1.0").to_dict())}
    d = custom.DirectorEcuImage("engine", "ENG-4711", 2, "1.1.0", "r1", "BV OS D 1.1.0", "single_bank").to_dict()
    d.update(director_changes)
    director = {"engine/e.hex": tf("engine/e.hex", img, d),
                "b.xml": tf("b.xml", base, custom.DirectorBaseline("BV OS D 1.1.0").to_dict())}
    return director, image


def check(director: dict[str, TargetFile], image: dict[str, TargetFile], current: str = "BV OS D 1.0.0") -> Any:
    return cross_check(director, image.get, ecus=ECUS, installed=lambda _e: None, current_vehicle_version=current,
                       targets_url=URL)


def test_consistent_bundle_gives_urls_with_the_hash_prefix() -> None:
    d, i = bundle()
    result = check(d, i)
    (engine,) = result.ecus
    sha = i["engine/e.hex"].hashes["sha256"]
    assert engine.url == f"{URL}/engine/{sha}.e.hex"
    assert result.target_vehicle_version == "BV OS D 1.1.0"
    assert check({}, i) is None


@pytest.mark.parametrize(("mutate", "error", "text"), [
    (lambda d, i: d["engine/e.hex"].unrecognized_fields.update(custom={"type": "firmware"}), InvalidMetadataError,
     "unknown target type 'firmware'"),
    (lambda d, i: d["engine/e.hex"].unrecognized_fields.pop("custom"), InvalidMetadataError, "has no custom object"),
    (lambda d, i: d["engine/e.hex"].unrecognized_fields["custom"].update(release_counter="2"), InvalidMetadataError,
     "release_counter"),
    (lambda d, i: d["engine/e.hex"].unrecognized_fields["custom"].update(extra=1), InvalidMetadataError,
     "unknown field 'extra'"),
    (lambda d, i: setattr(d["engine/e.hex"], "length", 3), ArbitrarySoftwareError, "the Director says 3 bytes"),
    (lambda d, i: d["engine/e.hex"].hashes.pop("sha256"), InvalidMetadataError, "gives no sha256"),
    (lambda d, i: i["engine/e.hex"].hashes.pop("sha512"), ArbitrarySoftwareError, "sha512 differs"),
    (lambda d, i: i["engine/e.hex"].unrecognized_fields.update(
        custom=custom.ImageBaseline("BV OS D 1.1.0").to_dict()), ArbitrarySoftwareError,
     "lists engine/e.hex as a baseline target"),
    (lambda d, i: d["engine/e.hex"].unrecognized_fields["custom"].update(software_version="1.1.1"),
     ArbitrarySoftwareError, "software 1.1.1 of release r1"),
    (lambda d, i: d["b.xml"].unrecognized_fields.update(custom=custom.DirectorBaseline("BV OS D 1.2.0").to_dict()),
     InvalidMetadataError, "lead to different vehicle versions"),
    (lambda d, i: i["b.xml"].unrecognized_fields.update(custom=custom.ImageBaseline("BV OS D 1.2.0").to_dict()),
     ArbitrarySoftwareError, "the baseline of 'BV OS D 1.2.0'"),
    (lambda d, i: d.update({"x.xml": copy.deepcopy(d["b.xml"])}), InvalidMetadataError, "lists 2 baseline targets"),
    (lambda d, i: d.update({"engine/f.hex": copy.deepcopy(d["engine/e.hex"])}), InvalidMetadataError,
     "two images to ECU engine"),
    (lambda d, i: d["engine/e.hex"].unrecognized_fields["custom"].update(
        delta={"target": "engine/p.bsdiff", "base": {"sha256": "0" * 64}}), PartialBundleError,
     "engine/p.bsdiff is not in the Image repository"),
])
def test_cross_check_refusals(mutate: Any, error: type[Exception], text: str) -> None:
    d, i = bundle()
    mutate(d, i)
    with pytest.raises(error) as info:
        check(d, i)
    assert text in str(info.value)


def test_delta_and_ciphertext_must_be_what_the_image_repository_says() -> None:
    d, i = bundle(delta={"target": "engine/p.bsdiff", "base": {"sha256": "a" * 64}})
    i["engine/p.bsdiff"] = tf("engine/p.bsdiff", b"patch",
                              custom.ImageDelta("engine/e.hex", "1.0.0", Hashes("b" * 64)).to_dict())
    with pytest.raises(ArbitrarySoftwareError, match=r"delta patch engine/p\.bsdiff is, per the Image repository"):
        check(d, i)
    i["engine/p.bsdiff"] = tf("engine/p.bsdiff", b"patch",
                              custom.ImageDelta("engine/e.hex", "1.0.0", Hashes("a" * 64)).to_dict())
    (engine,) = check(d, i).ecus
    assert engine.delta is not None and engine.delta.base == Hashes("a" * 64)


def test_vehicle_version_must_move_forward_on_the_same_line() -> None:
    d, i = bundle()
    with pytest.raises(RollbackError, match=r"not newer than the vehicle's 'BV OS D 1\.1\.0'"):
        check(d, i, current="BV OS D 1.1.0")
    with pytest.raises(InvalidMetadataError, match="not of the same model and platform"):
        check(d, i, current="XX OS D 1.0.0")


# -- the manifest ----------------------------------------------------------------------------
def _manifest() -> VehicleManifest:
    img = InstalledImage("engine/e.hex", 10, Hashes("a" * 64, "b" * 128))
    return VehicleManifest("VIN1", "tbox-1", "BV OS D 1.0.0", "2030-01-01T00:00:00Z",
                           (EcuVersionReport("engine", img, 2, 7, ""), EcuVersionReport("brake", None, 0, 7, "x")))


@pytest.mark.parametrize("make", [CryptoSigner.generate_ed25519, CryptoSigner.generate_ecdsa])
def test_manifest_round_trip_with_ed25519_and_ecdsa(tmp_path: Path, make: Any) -> None:
    signer = make()
    write_private_key(tmp_path / "k.key", signer)
    assert (tmp_path / "k.key").stat().st_mode & 0o077 == 0
    loaded = load_signer(tmp_path / "k.key")
    (tmp_path / "k.pub").write_bytes(public_pem(loaded))
    from dmclient.uptane.signing import load_public_key

    key = load_public_key(tmp_path / "k.pub")
    m = _manifest()
    assert verify_manifest(sign_manifest(m, loaded), key) == m


def test_manifest_tampering_and_malformed_input() -> None:
    signer = CryptoSigner.generate_ed25519()
    body = json.loads(sign_manifest(_manifest(), signer))
    body["signed"]["vehicle_version"] = "BV OS D 9.9.9"
    with pytest.raises(ManifestSignatureError):
        verify_manifest(json.dumps(body).encode(), signer.public_key)
    with pytest.raises(ManifestSignatureError):
        verify_manifest(sign_manifest(_manifest(), CryptoSigner.generate_ed25519()), signer.public_key)
    body = json.loads(sign_manifest(_manifest(), signer))
    body["signed"]["ecu_version_reports"][0]["release_counter"] = 1.5
    with pytest.raises(InvalidManifestError, match="canonical"):
        verify_manifest(json.dumps(body).encode(), signer.public_key)
    with pytest.raises(InvalidManifestError, match="larger than"):
        verify_manifest(b" " * 300_000, signer.public_key)
    dup = VehicleManifest("VIN1", "tbox-1", "v", "t", (_manifest().reports[0], _manifest().reports[0]))
    with pytest.raises(InvalidManifestError, match="reported twice"):
        verify_manifest(sign_manifest(dup, signer), signer.public_key)


def test_signing_key_of_another_kind_is_a_configuration_error(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    (tmp_path / "k.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    with pytest.raises(ConfigurationError, match="must be an Ed25519 or EC P-256 key"):
        load_signer(tmp_path / "k.key")
    with pytest.raises(ConfigurationError, match="cannot load signing key"):
        load_signer(tmp_path / "missing.key")


# -- state and metadata store -------------------------------------------------------------
def test_state_counters_attacks_and_time_floor(tmp_path: Path) -> None:
    from datetime import datetime, timezone

    state = UptaneState(tmp_path / "u.db")
    assert state.next_report_counters(["a", "b"]) == {"a": (1, ""), "b": (1, "")}
    state.set_attacks({"a": "rollback: x"})
    assert state.next_report_counters(["a", "b"]) == {"a": (2, "rollback: x"), "b": (2, "")}
    state.clear_attacks()
    img = InstalledImage("a/x.hex", 3, Hashes("c" * 64))
    state.record_installed("a", img, 4)
    state.close()
    again = UptaneState(tmp_path / "u.db")  # everything survives a restart
    rec = again.installed("a")
    assert rec is not None and rec.image == img and rec.release_counter == 4
    assert again.next_report_counters(["a"]) == {"a": (3, "")}
    t1, t0 = datetime(2030, 1, 2, tzinfo=timezone.utc), datetime(2030, 1, 1, tzinfo=timezone.utc)
    again.raise_time_floor(t1)
    again.raise_time_floor(t0)
    assert again.time_floor() == t1


def test_metadata_store_commits_atomically_and_cleans_up(tmp_path: Path) -> None:
    store = MetadataStore(tmp_path / "m")
    assert store.current() is None
    stage = store.stage()
    (stage / "root_history").mkdir()
    (stage / "root_history" / "1.root.json").write_text("1")
    os.symlink("root_history/1.root.json", stage / "root.json")
    store.commit(stage)
    cur = store.current()
    assert cur is not None and (cur / "root.json").read_text() == "1"
    second = store.stage()
    (second / "timestamp.json").write_text("t")
    store.discard(second)
    third = store.stage()  # a crash mid-check leaves a stage behind ...
    assert (third / "root.json").read_text() == "1"
    MetadataStore(tmp_path / "m")  # ... which the next start removes
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["current", "gen-000001"]


def test_metadata_store_keeps_an_unchanged_stage_for_the_next_check(tmp_path: Path) -> None:
    store = MetadataStore(tmp_path / "m")
    first = store.stage()
    (first / "root_history").mkdir()
    (first / "root_history" / "1.root.json").write_text("root 1")
    (first / "timestamp.json").write_text("timestamp 1")
    store.commit(first)
    same = store.stage()
    (same / "root_history" / "1.root.json").write_text("root 1")  # python-tuf rewrites the bootstrap root
    store.commit(same)  # nothing new: no new generation ...
    store.discard(same)
    assert os.readlink(tmp_path / "m" / "current") == "gen-000001"
    assert store.stage() == same  # ... and the next check starts from that stage, not from a fresh copy
    (same / "timestamp.json").write_text("timestamp 2")
    store.commit(same)
    cur = store.current()
    assert cur is not None and os.readlink(cur) == "gen-000002"
    assert (cur / "timestamp.json").read_text() == "timestamp 2"
    refused = store.stage()  # a stage that is not committed is never handed out again
    (refused / "timestamp.json").write_text("timestamp 3, refused")
    store.discard(refused)
    fresh = store.stage()
    assert fresh != refused and not refused.exists() and (fresh / "timestamp.json").read_text() == "timestamp 2"
    (fresh / "unexpected.tmp").write_text("")  # any file more or less is a change
    store.commit(fresh)
    assert os.readlink(tmp_path / "m" / "current") == "gen-000003"
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["current", "gen-000003"]


# -- python-tuf errors -----------------------------------------------------------------------
@pytest.mark.parametrize(("exc", "target", "ours"), [
    (tx.ExpiredMetadataError("timestamp.json is expired"), None, FreezeError),
    (tx.UnsignedMetadataError("root was signed by 0/2 keys"), None, UntrustedRootError),
    (tx.UnsignedMetadataError("snapshot was signed by 0/1 keys"), None, SignatureError),
    (tx.BadVersionNumberError("Expected snapshot version 3, got 2"), None, MixAndMatchError),
    (tx.BadVersionNumberError("Expected targets v3, got v2."), None, MixAndMatchError),
    (tx.BadVersionNumberError("New timestamp version 2 must be >= 3"), None, RollbackError),
    (tx.BadVersionNumberError("Expected targets.json version 1, got 2."), None, RollbackError),
    (tx.LengthOrHashMismatchError("Observed hash"), None, MixAndMatchError),
    (tx.LengthOrHashMismatchError("Observed hash"), "b.xml", ArbitrarySoftwareError),
    (tx.DownloadLengthMismatchError("exceeding"), None, EndlessDataError),
    (tx.RepositoryError("New snapshot is missing info for 'targets.json'"), None, InvalidMetadataError),
    (tx.DownloadError("failed"), None, TransportError),
])
def test_tuf_error_mapping(exc: Exception, target: str | None, ours: type[Exception]) -> None:
    mapped = map_tuf_error(exc, "image", target=target)
    assert type(mapped) is ours


def test_fetcher_errors_come_back_unchanged_through_tuf() -> None:
    inner = OtaTimeoutError("https://x: timed out")
    try:
        try:
            raise inner
        except OtaTimeoutError as e:
            raise tx.DownloadError("Failed to download https://x") from e
    except tx.DownloadError as outer:
        assert map_tuf_error(outer, "director") is inner


def test_target_names_are_safe_paths() -> None:
    for bad in ("../x", "/abs", "a/../b", "a//b", "", "a/./b", "x" * 201):
        with pytest.raises(ValueError):
            custom.check_target_name(bad, "t")
    assert custom.check_target_name("engine/engine-1.1.0.hex", "t") == "engine/engine-1.1.0.hex"


# -- the uptane config section -----------------------------------------------------------------
def _config(tmp_path: Path, **changes: Any) -> Path:
    import yaml

    from .world import VEHICLE_CONFIG

    root_doc = {"signed": {"_type": "root"}, "signatures": []}
    (tmp_path / "root.json").write_text(json.dumps(root_doc))
    write_private_key(tmp_path / "sign.key", CryptoSigner.generate_ed25519())
    section: dict[str, Any] = {
        "vin": "VIN1", "primary_id": "tbox-1", "vehicle_config": str(VEHICLE_CONFIG), "signing_key": "sign.key",
        "state_dir": "state", "director": {"url": "https://b/director/VIN1", "root": "root.json"},
        "image": {"metadata_url": "https://b/image/metadata", "targets_url": "https://b/image/targets",
                  "root": "root.json"},
        "ecus": {"engine": {"hardware_id": "ENG-4711"}}}
    section.update(changes)
    path = tmp_path / "dm.yaml"
    path.write_text(yaml.safe_dump({"uptane": section}))
    return path


@pytest.mark.parametrize(("changes", "text"), [
    ({"ecus": {"gearbox": {"hardware_id": "G-1"}}}, "ECU 'gearbox' is not in the vehicle config"),
    ({"ecus": {}}, "at least one ECU is needed"),
    ({"director": {"url": "http://b/director/VIN1", "root": "root.json"}}, "expected an https:// URL"),
    ({"image": {"metadata_url": "https://b/m", "targets_url": "https://b/t", "root": "missing.json"}},
     "cannot read trusted root"),
    ({"director": {"url": "https://b/d", "root": "sign.key"}}, "is not TUF root metadata"),
    ({"time": {"source": "gnss"}}, "must be one of system, file"),
    ({"signing_key": "nope.key"}, "no such file"),
    ({"vin": "bad vin"}, "uptane.vin"),
    ({"typo": 1}, "unknown key 'typo'"),
])
def test_config_errors_name_file_key_and_reason(tmp_path: Path, changes: dict[str, Any], text: str) -> None:
    from agent.config.node import load_yaml
    from dmclient.uptane.config import load_uptane_config

    path = _config(tmp_path, **changes)
    with pytest.raises(ConfigurationError) as info:
        load_uptane_config(load_yaml(path).child("uptane"))
    assert text in str(info.value) and str(path) in str(info.value)


def test_config_resolves_paths_and_relative_urls(tmp_path: Path) -> None:
    from agent.config.node import load_yaml
    from dmclient.uptane.config import load_uptane_config

    path = _config(tmp_path, director={"url": "director/VIN1", "root": "root.json"})
    cfg = load_uptane_config(load_yaml(path).child("uptane"), base_url="https://backend:8443/")
    assert cfg.director.metadata_url == "https://backend:8443/director/VIN1"
    assert cfg.manifest_url == "https://backend:8443/director/VIN1/manifest"
    assert cfg.state_dir == tmp_path / "state" and cfg.ecus == {"engine": "ENG-4711"}
    assert cfg.time_description == "system clock"
