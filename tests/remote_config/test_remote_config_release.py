"""A configuration change as a signed target of a release: the release builder publishes it, the
Director assigns it with the release's images, dmclient verifies it against the Image repository
and hands its values to the campaign (real repositories, real backend over mutual TLS)."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tuf.api.metadata import TargetFile

from agent.errors import ConfigurationError
from bench.pki import BenchPki, generate
from bench.repository.builder import build_release
from bench.repository.image import ImageRepository
from dmclient.uptane import custom
from dmclient.uptane.errors import ArbitrarySoftwareError
from tests.uptane.tamper import director_publishes
from tests.uptane.world import BASELINE, V2, InProcessBackend, Vehicle, build_world, image_hex, release_yaml, target

VALUES = {"launch_control": "on", "drive_mode": "sport"}
CONFIG = "config/bv-1.1.0.json"


def _with_config(world: Path, values: dict[str, Any]) -> None:
    spec = yaml.safe_load((world / "r1.yaml").read_text())
    spec["targets"].append({"type": "config-change", "values": values})
    (world / "r1.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> BenchPki:
    return generate(tmp_path_factory.mktemp("rc-pki"))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, pki: BenchPki) -> Iterator[tuple[Path, str, Path]]:
    """The Uptane test world with a configuration change in release bv-1.1.0, served; and a pristine copy."""
    world = tmp_path_factory.mktemp("rc-world") / "world"
    build_world(world, pki, releases=False)
    _with_config(world, VALUES)
    build_release(world / "r1.yaml", world / "image-repo")
    build_release(world / "r2.yaml", world / "image-repo")
    pristine = world.parent / "pristine"
    shutil.copytree(world, pristine)
    backend = InProcessBackend(world / "backend.yaml")
    try:
        yield world, backend.url, pristine
    finally:
        backend.stop()


def test_builder_publishes_the_change_as_a_signed_json_target(world: tuple[Path, str, Path]) -> None:
    repo = ImageRepository(world[0] / "image-repo")
    info = repo.targets["config/bv-1.1.0.json"]
    assert info.custom == {"type": "config", "release": "bv-1.1.0"}
    assert custom.parse_config_document(repo.read_target(info.path), "t") == VALUES
    release = repo.release("bv-1.1.0")
    assert release is not None and release.config is not None and release.config.target == "config/bv-1.1.0.json"
    assert repo.release("bv-1.2.0").config is None  # type: ignore[union-attr]


def test_vehicle_gets_the_verified_values_with_the_images(world: tuple[Path, str, Path], pki: BenchPki,
                                                          tmp_path: Path) -> None:
    vehicle = Vehicle(tmp_path / "car", world[0], pki, world[1])
    try:
        result = vehicle.check()
        assert result.assignment is not None
        assert result.assignment.target_vehicle_version == V2
        assert [e.ecu for e in result.assignment.ecus] == ["engine"]
        assert result.assignment.config is not None and result.assignment.config.values == VALUES
        assert result.to_json()["assignment"]["config"]["values"] == VALUES  # what the campaign core reads
        vehicle.install(result)
        nxt = vehicle.check()  # the next release has no configuration change
        assert nxt.assignment is not None and nxt.assignment.config is None
        assert "config" not in nxt.to_json()["assignment"]
    finally:
        vehicle.close()


def test_a_director_sending_other_values_is_refused(world: tuple[Path, str, Path], pki: BenchPki,
                                                    tmp_path: Path) -> None:
    """A compromised Director lists the config target with the digests of values of its own: the Image
    repository (offline keys) disagrees, so the check is refused and nothing is assigned."""
    copy = tmp_path / "world"
    shutil.copytree(world[2], copy)
    backend = InProcessBackend(copy / "backend.yaml")
    vehicle = Vehicle(tmp_path / "car", copy, pki, backend.url)
    try:
        assert vehicle.check().assignment is not None  # the Director publishes this vehicle's targets
        evil = custom.config_document({"launch_control": "on", "drive_mode": "eco"})

        def swap(targets: dict[str, TargetFile]) -> None:
            targets[CONFIG].hashes = {"sha256": hashlib.sha256(evil).hexdigest(),
                                      "sha512": hashlib.sha512(evil).hexdigest()}
            targets[CONFIG].length = len(evil)
        director_publishes(copy, swap)
        with pytest.raises(ArbitrarySoftwareError, match=r"configuration config/bv-1\.1\.0\.json"):
            vehicle.check()
    finally:
        vehicle.close()
        backend.stop()


@pytest.mark.parametrize(("targets", "why"), [
    ([{"type": "config-change", "values": {"comfort_lights": True}}], "quote on/off"),
    ([{"type": "config-change", "values": {}}], "non-empty object"),
    ([{"type": "config-change", "values": {"a": "1"}}, {"type": "config-change", "values": {"b": "2"}}],
     "at most one config-change"),
])
def test_bad_config_changes_are_refused_before_anything_is_built(tmp_path: Path, targets: list[dict[str, Any]],
                                                                 why: str) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "engine-1.1.0.hex").write_text(image_hex("engine", "1.1.0"))
    (tmp_path / "baseline.xml").write_bytes(BASELINE.read_bytes())
    spec = tmp_path / "r.yaml"
    spec.write_text(release_yaml("bv-1.1.0", V2, [target("engine", "1.1.0", 2, "single_bank"), *targets]))
    with pytest.raises(ConfigurationError, match=why):
        build_release(spec, tmp_path / "repo")
    assert not (tmp_path / "repo").exists()
