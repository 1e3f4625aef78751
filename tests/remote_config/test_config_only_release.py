"""A configuration-only release through the backend, in process: the release builder takes a release
with only a ``config-change`` target and ``applies_to``, the route names it as the configuration of a
node, the Director assigns it to a vehicle on that node (real repositories, real backend over mutual
TLS) until the vehicle's signed manifest reports its values, and dmclient verifies that the change is
for the version the vehicle is on."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.errors import ConfigurationError
from bench.pki import BenchPki, generate
from bench.repository.builder import build_release
from bench.repository.release_manifest import load_release
from bench.repository.route import load_route
from dmclient.uptane.errors import InvalidMetadataError
from tests.uptane.world import (
    BASELINE,
    V1,
    V2,
    V3,
    VIN_B,
    InProcessBackend,
    Vehicle,
    build_world,
    director,
    image_hex,
    issue_client_cert,
    register_vehicle,
    target,
)

SPORT = {"drive_mode": "sport", "comfort_lights": "on"}


def config_release(name: str, values: dict[str, str], **top: Any) -> str:
    return yaml.safe_dump({"format": 1, "release": name, **(top or {"applies_to": V3}), "baseline": "baseline.xml",
                           "targets": [{"type": "config-change", "values": values}]}, sort_keys=False)


def route_with(world: Path, configurations: list[dict[str, Any]]) -> None:
    route = yaml.safe_load((world / "route.yaml").read_text())
    route["configurations"] = configurations
    (world / "route.yaml").write_text(yaml.safe_dump(route, sort_keys=False))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> BenchPki:
    return generate(tmp_path_factory.mktemp("cfg-only-pki"))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, pki: BenchPki) -> Iterator[tuple[Path, str]]:
    """The Uptane test world plus configuration-only release bv-1.2.0-sport for V3, the node's configuration."""
    world = tmp_path_factory.mktemp("cfg-only") / "world"
    build_world(world, pki)
    (world / "sport.yaml").write_text(config_release("bv-1.2.0-sport", SPORT))
    build_release(world / "sport.yaml", world / "image-repo")
    route_with(world, [{"applies_to": V3, "release": "bv-1.2.0-sport", "stage": "published"}])
    backend = InProcessBackend(world / "backend.yaml")
    try:
        yield world, backend.url
    finally:
        backend.stop()


def test_builder_publishes_a_configuration_only_release(world: tuple[Path, str]) -> None:
    from bench.repository.image import ImageRepository

    release = ImageRepository(world[0] / "image-repo").release("bv-1.2.0-sport")
    assert release is not None and release.configuration_only
    assert release.images == () and release.target_vehicle_version == V3 and release.config_values == SPORT


def test_director_assigns_it_on_its_node_until_the_manifest_reports_the_values(world: tuple[Path, str],
                                                                               pki: BenchPki, tmp_path: Path) -> None:
    vehicle = Vehicle(tmp_path / "car", world[0], pki, world[1])
    try:
        assert vehicle.check(V1).assignment is not None  # a car on V1 takes the software edge first
        result = vehicle.check(V3)
        a = result.assignment
        assert a is not None and a.ecus == () and a.target_vehicle_version == V3
        assert a.config is not None and a.config.values == SPORT
        vehicle.state.record_configuration({"drive_mode": "sport"})  # half of it: still assigned
        assert vehicle.check(V3).assignment is not None
        vehicle.state.record_configuration(SPORT)  # what the engine records after the campaign succeeded
        assert vehicle.check(V3).assignment is None
        assert vehicle.client.build_manifest(V3).to_signed()["configuration"] == SPORT
    finally:
        vehicle.close()


def test_a_configuration_for_another_version_is_refused_by_the_vehicle(world: tuple[Path, str], pki: BenchPki,
                                                                       tmp_path: Path) -> None:
    """The Director (online keys) cannot turn a configuration change into a version change: a car on V2
    that is handed V3's configuration-only release refuses the check."""
    register_vehicle(world[0], VIN_B, pki)  # a car of its own: its report counters start afresh
    vehicle = Vehicle(tmp_path / "car", world[0], pki, world[1], vin=VIN_B,
                      cert=issue_client_cert(pki, VIN_B, tmp_path))
    try:
        vehicle.check(V2)  # the Director publishes this car's repository (V2 -> V3 edge)
        d = director(world[0])
        release = load_release(world[0] / "image-repo", "bv-1.2.0-sport")
        entry = load_route(world[0] / "route.yaml").configurations[0]
        assert release is not None
        # the Director signs V3's configuration for this car on V2 (its decision unchanged: kept on the next check)
        d.vehicle_repo(VIN_B).publish(d._targets(d.registry.get()[VIN_B], release, entry, {}))
        with pytest.raises(InvalidMetadataError, match=re.escape(
                "configuration change without ECU images is for vehicle version 'BV OS D 1.2.0', the vehicle is "
                "on 'BV OS D 1.1.0'")):
            vehicle.client.check(V2)
    finally:
        vehicle.close()


@pytest.mark.parametrize(("top", "targets", "why"), [
    ({"target_vehicle_version": V2}, [], "does not change the vehicle version: say which version it applies to"),
    ({"applies_to": V2}, [target("engine", "1.1.0", 2, "single_bank")], "applies_to is for configuration-only"),
    ({"applies_to": "BV OS D 9.9.0"}, [], "does not list the target vehicle version 'BV OS D 9.9.0'"),
    ({"applies_to": V2}, None, "at least one ECU image or a config-change"),
])
def test_bad_configuration_only_releases_are_refused_before_anything_is_built(
        tmp_path: Path, top: dict[str, Any], targets: list[dict[str, Any]] | None, why: str) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "engine-1.1.0.hex").write_text(image_hex("engine", "1.1.0"))
    shutil.copy(BASELINE, tmp_path / "baseline.xml")
    doc = yaml.safe_load(config_release("cfg", {"drive_mode": "eco"}, **top))
    doc["targets"] = [] if targets is None else [*targets, *doc["targets"]]
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigurationError, match=why):
        build_release(tmp_path / "r.yaml", tmp_path / "repo")
    assert not (tmp_path / "repo").exists()


def test_a_node_has_one_published_configuration(tmp_path: Path) -> None:
    path = tmp_path / "route.yaml"
    path.write_text(yaml.safe_dump({"format": 1, "edges": [], "configurations": [
        {"applies_to": V2, "release": "a", "stage": "published"},
        {"applies_to": V2, "release": "b", "stage": "published"}]}))
    with pytest.raises(ConfigurationError, match=re.escape("two published configurations apply to BV OS D 1.1.0")):
        load_route(path)
