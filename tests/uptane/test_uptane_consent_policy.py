"""A release's ``mandatory`` / ``deadline``: validated by the builder, signed by the Director, verified by dmclient.

The release file says it; the Director puts it in the ``custom`` of the baseline target it
signs for the vehicle; dmclient returns it in the verified assignment (the form
``dmclient.check`` declares). A man in the middle cannot change it (the targets
signature no longer verifies), and a malformed value the Director signs is refused as
invalid metadata naming the field, not a crash.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from tuf.api.metadata import TargetFile

from agent.cli.main import main
from agent.errors import ConfigurationError, VerificationError
from agent.ipc.declarations.dmclient_check import ASSIGNMENT
from bench.pki import BenchPki
from bench.repository.builder import build_release
from bench.repository.image import ImageRepository
from bench.repository.release_spec import load_release_spec
from dmclient.uptane.errors import InvalidMetadataError, MixAndMatchError

from .tamper import custom_of, director_publishes, serve
from .world import BASELINE, V2, VIN_A, Vehicle, build_world, image_hex, release_yaml, target

PAST = "2020-01-01T00:00:00Z"
LATER = "2099-01-01T00:00:00Z"
BASELINE_TARGET = "baselines/bv-1.1.0.xml"


# -- the release file ---------------------------------------------------------------------------
@pytest.fixture
def src(tmp_path: Path) -> Path:
    d = tmp_path / "src"
    (d / "images").mkdir(parents=True)
    (d / "images" / "engine-1.1.0.hex").write_text(image_hex("engine", "1.1.0"))
    shutil.copy(BASELINE, d / "baseline.xml")
    return d


def spec(src: Path, policy: str) -> Path:
    """r1 (engine 1.1.0) with ``policy`` (YAML lines) appended at the top level."""
    path = src / "r1.yaml"
    path.write_text(release_yaml("bv-1.1.0", V2, [target("engine", "1.1.0", 2, "single_bank")]) + policy)
    return path


def test_release_file_policy_is_canonical_whether_the_deadline_is_quoted_or_a_yaml_timestamp(src: Path) -> None:
    unquoted = load_release_spec(spec(src, "mandatory: true\ndeadline: 2026-12-01T10:00:00+00:00\n"))
    assert (unquoted.mandatory, unquoted.deadline) == (True, "2026-12-01T10:00:00Z")
    quoted = load_release_spec(spec(src, "mandatory: true\ndeadline: '2026-12-01T10:00:00Z'\n"))
    assert (quoted.mandatory, quoted.deadline) == (True, "2026-12-01T10:00:00Z")
    assert (load_release_spec(spec(src, "mandatory: false\n")).mandatory, load_release_spec(spec(src, "")).mandatory) \
        == (False, None)  # false is said; absent is not


@pytest.mark.parametrize(("policy", "key", "reason"), [
    ("mandatory: yes please\n", "mandatory", "expected bool"),
    ("mandatory: 1\n", "mandatory", "expected bool"),
    ("mandatory: true\ndeadline: next week\n", "deadline", "not an ISO 8601 time"),
    ("mandatory: true\ndeadline: 2026-12-01T10:00:00\n", "deadline", "must be in UTC"),
    ("mandatory: true\ndeadline: 2026-12-01T10:00:00+02:00\n", "deadline", "must be in UTC"),
    ("mandatory: true\ndeadline: 2026-12-01\n", "deadline", "expected an ISO 8601 UTC time"),
    ("mandatory: true\ndeadline: 1800000000\n", "deadline", "expected an ISO 8601 UTC time"),
    ("deadline: 2026-12-01T10:00:00Z\n", "deadline", "a deadline needs mandatory: true"),
    ("mandatory: false\ndeadline: 2026-12-01T10:00:00Z\n", "deadline", "a deadline needs mandatory: true"),
])
def test_release_file_with_a_bad_policy_is_refused_naming_the_key(src: Path, policy: str, key: str,
                                                                  reason: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        load_release_spec(spec(src, policy))
    assert info.value.key == key and reason in info.value.reason and str(src / "r1.yaml") in str(info.value)


def test_cli_refuses_a_bad_deadline_before_writing_anything(src: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "repo"
    assert main(["release", "build", str(spec(src, "mandatory: true\ndeadline: soon\n")), "--out", str(out)]) == 2
    assert "deadline: not an ISO 8601 time: 'soon'" in capsys.readouterr().err
    assert not out.exists()


def test_release_manifest_carries_the_policy_for_the_director(src: Path, tmp_path: Path) -> None:
    out = tmp_path / "repo"
    build_release(spec(src, f"mandatory: true\ndeadline: {PAST}\n"), out)
    doc = json.loads((out / "releases" / "bv-1.1.0.json").read_text())
    assert (doc["mandatory"], doc["deadline"]) == (True, PAST)
    release = ImageRepository(out).release("bv-1.1.0")
    assert release is not None and (release.mandatory, release.deadline) == (True, PAST)
    # the Image repository's own targets stay as they were: the policy is the Director's to sign
    assert "mandatory" not in ImageRepository(out).targets[BASELINE_TARGET].custom


# -- Director to vehicle ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def policy_world(tmp_path_factory: pytest.TempPathFactory, pki: BenchPki) -> Path:
    """The Uptane world with bv-1.1.0 mandatory and a deadline, bv-1.2.0 saying nothing."""
    world = tmp_path_factory.mktemp("policy-world") / "world"
    build_world(world, pki, releases=False)
    doc = yaml.safe_load((world / "r1.yaml").read_text())
    doc.update(mandatory=True, deadline=PAST)
    (world / "r1.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    build_release(world / "r1.yaml", world / "image-repo")
    build_release(world / "r2.yaml", world / "image-repo")
    return world


@pytest.fixture
def world(tmp_path: Path, policy_world: Path) -> Path:
    """Overrides conftest's ``world``: a copy of the policy world per test (backend and vehicle use it)."""
    dst = tmp_path / "world"
    shutil.copytree(policy_world, dst)
    return dst


def test_verified_assignment_carries_the_release_policy_signed_by_the_director(vehicle: Vehicle,
                                                                               world: Path) -> None:
    first = vehicle.check()
    assert first.assignment is not None
    assert (first.assignment.mandatory, first.assignment.deadline) == (True, PAST)
    as_json = first.to_json()["assignment"]
    assert (as_json["mandatory"], as_json["deadline"]) == (True, PAST)
    ASSIGNMENT.validate(as_json, "assignment")  # what dmclient.check answers over IPC
    signed = json.loads(sorted((world / "director" / "vehicles" / VIN_A / "metadata").glob("*.targets.json"))[-1]
                        .read_text())
    assert signed["signed"]["targets"][BASELINE_TARGET]["custom"]["deadline"] == PAST
    vehicle.install(first)
    second = vehicle.check()  # bv-1.2.0 says nothing: nothing in the assignment either
    assert second.assignment is not None and (second.assignment.mandatory, second.assignment.deadline) == (None, None)
    assert not {"mandatory", "deadline"} & set(second.to_json()["assignment"])


def test_man_in_the_middle_cannot_move_the_deadline_in_the_signed_targets(vehicle: Vehicle, world: Path) -> None:
    uploader = vehicle.client.uploader
    genuine = uploader.upload
    served: list[tuple[Path, bytes]] = []

    def upload_then_tamper(url: str, body: bytes) -> None:
        genuine(url, body)  # the Director publishes this vehicle's targets on the manifest
        metadata = world / "director" / "vehicles" / VIN_A / "metadata"
        path = max(metadata.glob("*.targets.json"), key=lambda p: int(p.name.split(".")[0]))
        data = path.read_bytes()
        assert data.count(PAST.encode()) == 1
        served.append((path, data))
        serve(path, data.replace(PAST.encode(), LATER.encode()))  # a later deadline: same length, other bytes

    uploader.upload = upload_then_tamper  # type: ignore[method-assign]
    with pytest.raises(MixAndMatchError) as info:
        vehicle.check()
    assert info.value.repository == "director" and "does not match the length and hashes" in str(info.value)
    uploader.upload = genuine  # type: ignore[method-assign]
    serve(*served[0])  # the Director's own bytes again: accepted, with the signed deadline
    result = vehicle.check()
    assert result.assignment is not None and (result.assignment.mandatory, result.assignment.deadline) == (True, PAST)


def set_policy(world: Path, **values: Any) -> None:
    """A compromised or buggy Director signs ``values`` into the baseline target's custom."""
    def change(targets: dict[str, TargetFile]) -> None:
        custom_of(targets, BASELINE_TARGET).update(values)
    director_publishes(world, change)


@pytest.mark.parametrize(("values", "field", "reason"), [
    ({"mandatory": "yes"}, "custom.mandatory", "expected true or false, got 'yes'"),
    ({"mandatory": 1}, "custom.mandatory", "expected true or false, got 1"),
    ({"deadline": 1_600_000_000}, "custom.deadline", "expected an ISO 8601 UTC time"),
    ({"deadline": "2020-01-01T00:00:00"}, "custom.deadline", "must be in UTC"),
    ({"mandatory": False}, "custom.deadline", "a deadline applies to a mandatory update only"),
    ({"mandatory": None}, "custom.mandatory", "expected true or false, got None"),
])
def test_a_malformed_policy_signed_by_the_director_is_invalid_metadata_naming_the_field(
        vehicle: Vehicle, world: Path, values: dict[str, Any], field: str, reason: str) -> None:
    assert vehicle.check().assignment is not None  # the Director has published for this vehicle
    set_policy(world, **values)
    with pytest.raises(InvalidMetadataError) as info:
        vehicle.check()
    err = info.value
    assert isinstance(err, VerificationError) and err.attack == "invalid-metadata" and err.repository == "director"
    assert f"Director target {BASELINE_TARGET}: {field}: {reason}" in str(err)
