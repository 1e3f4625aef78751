"""``otactl release build``: what it publishes, and what it refuses before writing anything."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import bsdiff4
import pytest
from tuf.api.metadata import Metadata, Root

from agent.cli.main import main
from agent.errors import ConfigurationError
from bench.appimage import build_image, to_hex
from bench.repository.builder import build_release
from bench.repository.image import ImageRepository

from .world import BASELINE, V2, V3, image_hex, release_yaml, target


@pytest.fixture
def src(tmp_path: Path) -> Path:
    d = tmp_path / "src"
    (d / "images").mkdir(parents=True)
    for ecu, version in (("engine", "1.0.0"), ("engine", "1.1.0"), ("brake", "3.5.0"), ("body", "2.1.0")):
        (d / "images" / f"{ecu}-{version}.hex").write_text(image_hex(ecu, version))
    shutil.copy(BASELINE, d / "baseline.xml")
    return d


def write(src: Path, name: str, text: str) -> Path:
    path = src / name
    path.write_text(text)
    return path


def r1(src: Path, **more: Any) -> Path:
    return write(src, "r1.yaml", release_yaml("bv-1.1.0", V2, [target("engine", "1.1.0", 2, "single_bank", **more)]))


def test_cli_builds_a_signed_repository_with_a_threshold_root(src: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "repo"
    assert main(["release", "build", str(r1(src)), "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["targets_version"] == 2
    assert result["new_targets"] == ["baselines/bv-1.1.0.xml", "engine/engine-1.1.0.hex"]
    root = Metadata[Root].from_bytes((out / "metadata" / "1.root.json").read_bytes())
    assert root.signed.roles["root"].threshold == 2 and len(root.signed.roles["root"].keyids) == 3
    assert len(root.signatures) == 3 and root.signed.consistent_snapshot
    root.signed.verify_delegate("root", root.signed_bytes, root.signatures)
    repo = ImageRepository(out)
    info = repo.targets["engine/engine-1.1.0.hex"]
    assert info.custom == {"type": "ecu-image", "hardware_id": "ENG-4711", "release_counter": 2,
                           "software_version": "1.1.0", "release": "bv-1.1.0"}
    stored = out / "targets" / "engine" / f"{info.hashes['sha256']}.engine-1.1.0.hex"
    assert stored.read_bytes() == (src / "images" / "engine-1.1.0.hex").read_bytes()
    assert all(p.stat().st_mode & 0o077 == 0 for p in (out / "keys").glob("*.key"))
    release = repo.release("bv-1.1.0")
    assert release is not None and release.target_vehicle_version == V2
    assert main(["release", "build", str(r1(src)), "--out", str(out)]) == 2  # same release again: refused


def test_second_release_adds_to_the_repository_with_a_delta_from_a_published_version(src: Path,
                                                                                      tmp_path: Path) -> None:
    out = tmp_path / "repo"
    write(src, "r0.yaml", release_yaml("bv-1.0.9", "BV OS D 1.0.0", [target("engine", "1.0.0", 1, "single_bank")]))
    build_release(src / "r0.yaml", out)
    build_release(r1(src, deltas=[{"from_version": "1.0.0"}]), out)
    repo = ImageRepository(out)
    patch = repo.targets["engine/engine-1.0.0-to-1.1.0.bsdiff"]
    assert patch.custom["of"] == "engine/engine-1.1.0.hex" and patch.custom["base_version"] == "1.0.0"
    base = (src / "images" / "engine-1.0.0.hex").read_bytes()
    assert bsdiff4.patch(base, repo.read_target(patch.path)) == (src / "images" / "engine-1.1.0.hex").read_bytes()
    assert set(repo.releases()) == {"bv-1.0.9", "bv-1.1.0"}
    assert repo.repo.targets.signed.version == 3


def test_encrypted_image_and_other_formats(src: Path, tmp_path: Path) -> None:
    img = build_image("3.5.0", "BRK-0815", 1024, seed="brake")
    (src / "images" / "brake-3.5.0.s19").write_text(to_hex(img, 0x20000, fmt="srec"))
    (src / "images" / "body-2.1.0.bin").write_bytes(build_image("2.1.0", "BCM-2201", 1024, seed="body"))
    write(src, "r2.yaml", release_yaml("bv-1.2.0", V3, [
        {**target("brake", "3.5.0", 2, "ab_bank"), "image": "images/brake-3.5.0.s19"},
        {**target("body", "2.1.0", 2, "single_bank"), "image": "images/body-2.1.0.bin", "base_address": 0x8000,
         "encrypt": True}]))
    build_release(src / "r2.yaml", tmp_path / "repo")
    repo = ImageRepository(tmp_path / "repo")
    body = repo.targets["body/body-2.1.0.bin"]
    cipher = repo.targets["body/body-2.1.0.bin.enc"]
    assert body.custom["ciphertext"] == cipher.path and cipher.length == body.length + 16
    key, nonce = repo.content_key(body.hashes["sha256"])
    assert len(key) == 32 and len(nonce) == 12
    assert (tmp_path / "repo" / "content-keys").stat().st_mode & 0o077 == 0
    assert "brake/brake-3.5.0.s19" in repo.targets


def _refused(spec: Path, out: Path, text: str) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as info:
        build_release(spec, out)
    assert text in str(info.value), str(info.value)
    return info.value


def test_malformed_image_is_refused_naming_its_line(src: Path, tmp_path: Path) -> None:
    lines = (src / "images" / "engine-1.1.0.hex").read_text().splitlines()
    lines[3] = lines[3][:-2] + ("00" if lines[3][-2:] != "00" else "01")  # bad record checksum
    (src / "images" / "engine-1.1.0.hex").write_text("\n".join(lines) + "\n")
    err = _refused(r1(src), tmp_path / "repo", "line 4")
    assert "engine-1.1.0.hex" in str(err)
    assert not (tmp_path / "repo" / "releases").exists() or not any((tmp_path / "repo" / "releases").iterdir())


@pytest.mark.parametrize(("spec", "text"), [
    ({"software_version": "1.1.1"}, "software version 1.1.1 of ECU engine is not what the baseline lists"),
    ({"ecu": "gearbox"}, "ECU 'gearbox' is not part of 'BV OS D 1.1.0' in the baseline"),
    ({"encrypt": True, "deltas": [{"from_version": "1.0.0", "base_image": "images/engine-1.0.0.hex"}]},
     "an encrypted image cannot have delta patches"),
    ({"type": "ecu-config"}, "unknown target type 'ecu-config' (supported: ecu-image, config-change, linux-image)"),
    ({"image": "images/missing.hex"}, "no such file"),
    ({"deltas": [{"from_version": "0.9.0"}]}, "no published image of ECU engine (ENG-4711) with software version "
                                              "0.9.0"),
    ({"release_counter": -1}, "must be in [0"),
    ({"flash_script": "../etc"}, "flash_script"),
])
def test_bad_release_files_are_refused(src: Path, tmp_path: Path, spec: dict[str, Any], text: str) -> None:
    t = {**target("engine", "1.1.0", 2, "single_bank"), **spec}
    write(src, "bad.yaml", release_yaml("bv-1.1.0", V2, [t]))
    err = _refused(src / "bad.yaml", tmp_path / "repo", text)
    assert "bad.yaml" in str(err) or "engine" in str(err)


def test_raw_binary_needs_a_base_address(src: Path, tmp_path: Path) -> None:
    (src / "images" / "engine-1.1.0.bin").write_bytes(b"\x01" * 64)
    write(src, "bin.yaml", release_yaml("bv-1.1.0", V2, [
        {**target("engine", "1.1.0", 2, "single_bank"), "image": "images/engine-1.1.0.bin"}]))
    _refused(src / "bin.yaml", tmp_path / "repo", "needs a base address")


def test_target_vehicle_version_must_be_in_the_baseline(src: Path, tmp_path: Path) -> None:
    write(src, "r.yaml", release_yaml("bv-9", "BV OS D 9.0.0", [target("engine", "1.1.0", 2, "single_bank")]))
    _refused(src / "r.yaml", tmp_path / "repo", "does not list the target vehicle version 'BV OS D 9.0.0'")


def test_release_counter_below_a_published_one_for_the_same_hardware_is_refused(src: Path, tmp_path: Path) -> None:
    out = tmp_path / "repo"
    build_release(r1(src), out)
    write(src, "r2.yaml", release_yaml("bv-1.2.0", V3, [target("engine", "1.1.0", 1, "single_bank")]))
    _refused(src / "r2.yaml", out, "release counter 1 of engine is below 2 of the already published")


def test_targets_are_immutable(src: Path, tmp_path: Path) -> None:
    out = tmp_path / "repo"
    build_release(r1(src), out)
    (src / "images" / "engine-1.1.0.hex").write_text(image_hex("engine", "1.1.9"))
    write(src, "again.yaml", release_yaml("bv-1.1.0b", V2, [target("engine", "1.1.0", 2, "single_bank")]))
    _refused(src / "again.yaml", out, "already exists in the Image repository with other content")


def test_cli_rotates_a_role_key(src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "repo"
    build_release(r1(src), out)
    assert main(["release", "rotate", "--repo", str(out), "--role", "root", "--keys", "3", "--threshold", "2"]) == 0
    assert "root is now version 2" in capsys.readouterr().out
    v2 = Metadata[Root].from_bytes((out / "metadata" / "2.root.json").read_bytes())
    v1 = Metadata[Root].from_bytes((out / "metadata" / "1.root.json").read_bytes())
    v1.signed.verify_delegate("root", v2.signed_bytes, v2.signatures)  # signed by the old keys
    v2.signed.verify_delegate("root", v2.signed_bytes, v2.signatures)  # and by the new ones
    assert set(v2.signed.roles["root"].keyids).isdisjoint(v1.signed.roles["root"].keyids)
