"""The Director: who may upload a manifest, replays, routes, test groups, and what a vehicle is given."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
import yaml
from securesystemslib.signer import CryptoSigner

from agent.errors import ConfigurationError, ProtocolError
from bench.pki import BenchPki
from bench.repository.route import load_route
from dmclient.uptane.manifest import EcuVersionReport, VehicleManifest, sign_manifest
from update_agent.vehicle_version import parse

from .world import (
    V1,
    V2,
    V3,
    VIN_A,
    VIN_B,
    InProcessBackend,
    Vehicle,
    director,
    issue_client_cert,
    register_vehicle,
    route_yaml,
)


def post(backend: InProcessBackend, pki: BenchPki, vin: str, body: bytes,
         cert: tuple[Path, Path] | None = None) -> requests.Response:
    s = requests.Session()
    s.trust_env = False
    return s.post(f"{backend.url}/director/{vin}/manifest", data=body, verify=str(pki.ca_cert),
                  cert=tuple(map(str, cert or (pki.client_cert, pki.client_key))), timeout=10)  # type: ignore[arg-type]


def manifest(vin: str = VIN_A, counter: int = 1, ecus: tuple[str, ...] = ("body", "brake", "engine"),
             version: str = V1, primary: str = "tbox-0001") -> VehicleManifest:
    return VehicleManifest(vin, primary, version, "2030-01-01T00:00:00Z",
                           tuple(EcuVersionReport(e, None, 0, counter) for e in ecus))


def vehicle_signer(world: Path, vin: str = VIN_A) -> CryptoSigner:
    from dmclient.uptane.signing import load_signer

    return load_signer(world / "keys" / f"{vin}-sign.key")


def test_manifest_signed_by_another_key_is_refused(vehicle: Vehicle, world: Path, pki: BenchPki,
                                                   backend: InProcessBackend) -> None:
    r = post(backend, pki, VIN_A, sign_manifest(manifest(), CryptoSigner.generate_ed25519()))
    assert r.status_code == 401 and "no valid signature by the vehicle's key" in r.text
    vehicle.client.signer = CryptoSigner.generate_ed25519()
    with pytest.raises(ProtocolError, match="HTTP 401"):
        vehicle.check()
    assert vehicle.client.director_store.current() is None  # nothing refreshed after a refused upload


def test_replayed_manifest_is_refused(world: Path, pki: BenchPki, backend: InProcessBackend) -> None:
    body = sign_manifest(manifest(counter=3), vehicle_signer(world))
    assert post(backend, pki, VIN_A, body).status_code == 200
    r = post(backend, pki, VIN_A, body)
    assert r.status_code == 409 and "report counter 3 is not above the last accepted 3" in r.text
    older = sign_manifest(manifest(counter=2), vehicle_signer(world))
    assert post(backend, pki, VIN_A, older).status_code == 409


def test_manifest_for_another_vin_with_this_vehicles_certificate_is_refused(world: Path, pki: BenchPki,
                                                                          backend: InProcessBackend) -> None:
    register_vehicle(world, VIN_B, pki)
    body = sign_manifest(manifest(vin=VIN_B), vehicle_signer(world, VIN_B))
    r = post(backend, pki, VIN_B, body)  # client certificate CN = VIN_A
    assert r.status_code == 403 and f"is for {VIN_A}, not for {VIN_B}" in r.text
    s = requests.Session()
    s.trust_env = False
    r = s.get(f"{backend.url}/director/{VIN_B}/1.root.json", verify=str(pki.ca_cert),
              cert=(str(pki.client_cert), str(pki.client_key)), timeout=10)
    assert r.status_code == 403


@pytest.mark.parametrize(("change", "status", "text"), [
    ({"ecus": ("brake", "engine")}, 400, "the vehicle has ['body', 'brake', 'engine']"),
    ({"primary": "tbox-9999"}, 403, "is not the registered tbox-0001"),
    ({"version": "BV OS D 1.0"}, 400, "invalid vehicle version"),
    ({"vin": VIN_B}, 400, f"manifest is for VIN {VIN_B}"),
])
def test_malformed_or_foreign_manifests_are_refused(world: Path, pki: BenchPki, backend: InProcessBackend,
                                                    change: dict[str, object], status: int, text: str) -> None:
    body = sign_manifest(manifest(**change), vehicle_signer(world))  # type: ignore[arg-type]
    r = post(backend, pki, VIN_A, body)
    assert r.status_code == status and text in r.text


def test_unregistered_vehicle_gets_404(world: Path, pki: BenchPki, backend: InProcessBackend) -> None:
    cert = issue_client_cert(pki, "UNKNOWNVIN0000000", world)
    body = sign_manifest(manifest(vin="UNKNOWNVIN0000000"), CryptoSigner.generate_ed25519())
    r = post(backend, pki, "UNKNOWNVIN0000000", body, cert)
    assert r.status_code == 404 and "not registered" in r.text


def test_not_json_is_a_400(world: Path, pki: BenchPki, backend: InProcessBackend) -> None:
    r = post(backend, pki, VIN_A, b"{not json")
    assert r.status_code == 400 and "not JSON" in r.text


def test_a_vehicle_off_the_route_gets_nothing(vehicle: Vehicle) -> None:
    assert vehicle.check("BV OS D 0.5.0").assignment is None
    assert vehicle.check("BV OS T 1.0.0").assignment is None  # another phase: not on this route


def test_director_targets_carry_what_the_vehicle_needs(vehicle: Vehicle, world: Path) -> None:
    """The encrypted image's key is wrapped to this vehicle; the delta is offered for the installed base."""
    r1 = vehicle.check()
    assert r1.assignment is not None
    engine = r1.assignment.ecu("engine")
    assert engine is not None and engine.delta is not None and engine.encryption is None
    assert engine.delta.base == vehicle.state.installed("engine").image.hashes  # type: ignore[union-attr]
    vehicle.install(r1)
    r2 = vehicle.check()
    assert r2.assignment is not None
    body, brake = r2.assignment.ecu("body"), r2.assignment.ecu("brake")
    assert body is not None and body.encryption is not None and body.url.endswith(".enc")
    assert brake is not None and brake.flash_script == "ab_bank" and brake.delta is None
    state = director(world).vehicle_state(VIN_A)
    assert state["decision"]["release"] == "bv-1.2.0" and state["vehicle_version"] == V2


def test_route_publishing_is_picked_up_without_restart(vehicle: Vehicle, world: Path) -> None:
    (world / "route.yaml").write_text(route_yaml(stage2="draft"))
    vehicle.version = V2
    assert vehicle.check().assignment is None
    (world / "route.yaml").write_text(route_yaml(stage2="test", group2=(VIN_A,)))
    result = vehicle.check()
    assert result.assignment is not None and result.assignment.target_vehicle_version == V3


def test_a_broken_route_file_keeps_the_last_good_one(vehicle: Vehicle, world: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    assert vehicle.check().assignment is not None
    (world / "route.yaml").write_text("edges: [{from: nonsense}]\n")
    result = vehicle.check(V2)
    assert result.assignment is not None and result.assignment.target_vehicle_version == V3
    assert any("route.yaml" in r.getMessage() and "keeping the last good version" in r.getMessage()
               for r in caplog.records)


# -- route files ------------------------------------------------------------------------
def _route(tmp_path: Path, edges: list[dict[str, object]]) -> Path:
    path = tmp_path / "route.yaml"
    path.write_text(yaml.safe_dump({"format": 1, "edges": edges}))
    return path


@pytest.mark.parametrize(("edges", "text"), [
    ([{"from": V2, "to": V1, "release": "r", "stage": "published"}], "must lead to a newer vehicle version"),
    ([{"from": V1, "to": "BX OS D 1.1.0", "release": "r", "stage": "published"}], "not of the same model"),
    ([{"from": V1, "to": V2, "release": "r", "stage": "test"}], "needs a test_group"),
    ([{"from": V1, "to": V2, "release": "r", "stage": "shipped"}], "must be one of draft, test, passed, published"),
    ([{"from": V1, "to": V2, "release": "a", "stage": "published"},
      {"from": V1, "to": V3, "release": "b", "stage": "published"}], "two published edges leave BV OS D 1.0.0"),
    ([{"from": V1, "to": V2, "release": "a", "stage": "test", "test_group": [VIN_A]},
      {"from": V1, "to": V3, "release": "b", "stage": "passed", "test_group": [VIN_A]}],
     f"VIN {VIN_A} is in the test groups of two edges"),
    ([{"from": "BV OS D 1.0", "to": V2, "release": "r", "stage": "published"}], "invalid vehicle version"),
    ([{"from": V1, "to": V2, "release": "r", "stage": "published", "typo": 1}], "unknown key 'typo'"),
])
def test_route_file_errors_name_file_key_and_reason(tmp_path: Path, edges: list[dict[str, object]],
                                                    text: str) -> None:
    path = _route(tmp_path, edges)
    with pytest.raises(ConfigurationError) as info:
        load_route(path)
    assert text in str(info.value) and str(path) in str(info.value)


def test_route_graph_test_group_takes_precedence(tmp_path: Path) -> None:
    route = load_route(_route(tmp_path, [
        {"from": V1, "to": V2, "release": "a", "stage": "published"},
        {"from": V1, "to": V3, "release": "skip", "stage": "test", "test_group": [VIN_B]},
        {"from": V2, "to": V3, "release": "b", "stage": "draft"}]))
    a = route.next_edge(parse(V1), VIN_A)
    b = route.next_edge(parse(V1), VIN_B)
    assert a is not None and a.release == "a"
    assert b is not None and b.release == "skip"
    assert route.next_edge(parse(V2), VIN_A) is None  # draft reaches nobody
    assert route.next_edge(parse(V3), VIN_A) is None  # last node
    assert [str(v) for v in route.nodes()] == [V1, V2, V3]


def test_director_state_is_kept_on_disk(vehicle: Vehicle, world: Path) -> None:
    assert vehicle.check().assignment is not None
    state = json.loads((world / "director" / "vehicles" / VIN_A / "state.json").read_text())
    assert state["counters"] == {"body": 1, "brake": 1, "engine": 1}
    assert state["published"]["targets_version"] == 2
