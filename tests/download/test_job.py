"""A target from order to cache over the real backend: cache hits, deltas, encrypted images."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import bsdiff4
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from agent.errors import ConfigurationError, VerificationError
from dmclient.cache import PackageCache
from dmclient.encryption import EncryptionSpec, encrypt_file, wrap_content_key
from dmclient.job import JobResult, JobSettings, TargetJob
from dmclient.order import TargetSpec

from .conftest import Backend, Client, digests, payload, rot

VEHICLE = ec.generate_private_key(ec.SECP256R1())


def run(client: Client, target: dict[str, Any], *, key: ec.EllipticCurvePrivateKey | None = VEHICLE) -> JobResult:
    spec = TargetSpec.parse(target, "target")
    job = TargetJob(spec, cache=client.cache, db=client.db, fetcher=client.fetcher,
                    settings=JobSettings(client.policy(), 64 * 1024, 1 << 20, 0, key))
    return job.run()


def seed_cache(cache: PackageCache, data: bytes) -> None:
    h = digests(data)
    p = cache.temp_path("seed")
    p.write_bytes(data)
    cache.admit(p, h, len(data))


def nothing_unverified(client: Client) -> None:
    assert not any(client.cache.tmp.iterdir())
    for e in client.cache.entries():
        assert digests((client.cache.objects / e.sha256).read_bytes()).sha256 == e.sha256


def test_full_image_lands_in_the_cache(backend: Backend, client: Client) -> None:
    f = backend.put("job-full.bin", payload(200_000, 51))
    r = run(client, f.target())
    assert r.source == "full" and r.path.read_bytes() == f.data
    assert r.path == client.cache.objects / f.hashes.sha256
    assert client.db.transfer(f.hashes.sha256) is None and not any(client.cache.parts.iterdir())


def test_cached_image_is_not_fetched_again(backend: Backend, client: Client) -> None:
    f = backend.put("job-hit.bin", payload(1000, 52))
    seed_cache(client.cache, f.data)
    assert run(client, f.target()).source == "cache"
    assert backend.stats(f.name)["requests"] == []


def test_a_cached_image_changed_at_rest_is_fetched_again(backend: Backend, client: Client) -> None:
    f = backend.put("job-rotten.bin", payload(50_000, 59))
    seed_cache(client.cache, f.data)
    cached = client.cache.objects / f.hashes.sha256
    rot(cached, at=25_000)
    r = run(client, f.target())
    assert r.source == "full" and r.path == cached and cached.read_bytes() == f.data
    assert r.fetched == f.length and backend.stats(f.name)["requests"] != []
    nothing_unverified(client)


def test_tampered_content_never_reaches_the_cache(backend: Backend, client: Client) -> None:
    f = backend.put("job-tampered.bin", payload(200_000, 53))
    backend.faults({"path": f.name, "corrupt_at": 150_000})
    with pytest.raises(VerificationError):
        run(client, f.target())
    assert client.cache.entries() == [] and not any(client.cache.parts.iterdir())
    nothing_unverified(client)


def delta_setup(backend: Backend, name: str, seed: int) -> tuple[bytes, bytes, dict[str, Any]]:
    base = payload(150_000, seed)
    new = base[:70_000] + b"calibration v2" * 50 + base[70_000:]
    full = backend.put(f"{name}-full.bin", new)
    patch = backend.put(f"{name}.patch", bsdiff4.diff(base, new))
    target = full.target(delta={"base": digests(base).to_dict(), "url": patch.url, "length": patch.length,
                                "hashes": patch.hashes.to_dict()})
    return base, new, target


def test_delta_with_the_right_base(backend: Backend, client: Client) -> None:
    base, new, target = delta_setup(backend, "job-delta-ok", 54)
    seed_cache(client.cache, base)
    r = run(client, target)
    assert r.source == "delta" and r.path.read_bytes() == new
    assert backend.stats("job-delta-ok-full.bin")["requests"] == []  # the full image was not needed
    nothing_unverified(client)


def test_a_delta_base_changed_at_rest_is_dropped_and_the_full_image_fetched(backend: Backend,
                                                                           client: Client) -> None:
    base, new, target = delta_setup(backend, "job-delta-rotbase", 60)
    seed_cache(client.cache, base)
    rot(client.cache.objects / digests(base).sha256, at=100_000)
    r = run(client, target)
    assert r.source == "full" and r.path.read_bytes() == new
    assert any("not in the cache" in n for n in r.notes)
    assert [e.sha256 for e in client.cache.entries()] == [digests(new).sha256]  # the bad base is gone
    nothing_unverified(client)


def test_delta_without_its_base_falls_back_to_the_full_image(backend: Backend, client: Client) -> None:
    _, new, target = delta_setup(backend, "job-delta-nobase", 55)
    seed_cache(client.cache, payload(150_000, 99))  # the vehicle holds another version
    r = run(client, target)
    assert r.source == "full" and r.path.read_bytes() == new
    assert any("not in the cache" in n and "fell back" in n for n in r.notes)
    assert backend.stats("job-delta-nobase.patch")["requests"] == []


def test_delta_made_from_another_base_falls_back(backend: Backend, client: Client) -> None:
    _, new, target = delta_setup(backend, "job-delta-wrongbase", 56)
    other = payload(150_000, 98)
    seed_cache(client.cache, other)
    target["delta"]["base"] = digests(other).to_dict()  # order claims the patch applies to `other`
    r = run(client, target)
    assert r.source == "full" and r.path.read_bytes() == new
    assert any("fell back" in n for n in r.notes)
    nothing_unverified(client)


def test_delta_without_base_or_full_image_is_a_clear_error(backend: Backend, client: Client) -> None:
    _, _, target = delta_setup(backend, "job-delta-only", 57)
    del target["url"]
    with pytest.raises(VerificationError, match="is not in the cache, and no full image is offered"):
        run(client, target)


def test_tampered_patch_falls_back_to_the_full_image(backend: Backend, client: Client) -> None:
    base, new, target = delta_setup(backend, "job-delta-tampered", 58)
    seed_cache(client.cache, base)
    backend.faults({"path": "job-delta-tampered.patch", "corrupt_at": 10})
    r = run(client, target)
    assert r.source == "full" and r.path.read_bytes() == new
    nothing_unverified(client)


def encrypted_target(backend: Backend, tmp_path: Path, name: str, data: bytes, *,
                     wrap_to: ec.EllipticCurvePublicKey, wrapped_key: bytes | None = None) -> dict[str, Any]:
    key, nonce = os.urandom(32), os.urandom(12)
    plain, cipher = tmp_path / f"{name}.plain", tmp_path / f"{name}.enc"
    plain.write_bytes(data)
    encrypt_file(plain, cipher, key, nonce)
    served = backend.put(name, cipher.read_bytes())
    eph, wrapped = wrap_content_key(wrap_to, wrapped_key or key)
    spec = EncryptionSpec(eph, wrapped, nonce, served.hashes)
    return {"name": name, "url": served.url, "length": len(data), "hashes": digests(data).to_dict(),
            "encryption": spec.to_dict()}


def test_encrypted_target_with_the_right_key(backend: Backend, client: Client, tmp_path: Path) -> None:
    data = payload(300_000, 59)
    r = run(client, encrypted_target(backend, tmp_path, "job-enc-ok.bin", data, wrap_to=VEHICLE.public_key()))
    assert r.source == "full" and r.path.read_bytes() == data
    assert not any(client.cache.parts.iterdir())
    nothing_unverified(client)


def test_key_wrapped_to_another_vehicle_fails_before_fetching(backend: Backend, client: Client,
                                                              tmp_path: Path) -> None:
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    target = encrypted_target(backend, tmp_path, "job-enc-other.bin", payload(1000, 60), wrap_to=other)
    with pytest.raises(VerificationError, match="does not unwrap"):
        run(client, target)
    assert backend.stats("job-enc-other.bin")["requests"] == []


def test_wrong_content_key_discards_the_plaintext(backend: Backend, client: Client, tmp_path: Path) -> None:
    target = encrypted_target(backend, tmp_path, "job-enc-wrongkey.bin", payload(300_000, 61),
                              wrap_to=VEHICLE.public_key(), wrapped_key=os.urandom(32))
    with pytest.raises(VerificationError, match="AES-GCM authentication failed"):
        run(client, target)
    assert client.cache.entries() == [] and not any(client.cache.parts.iterdir())
    nothing_unverified(client)


def test_tampered_ciphertext_is_rejected_before_decryption(backend: Backend, client: Client,
                                                          tmp_path: Path) -> None:
    target = encrypted_target(backend, tmp_path, "job-enc-tampered.bin", payload(300_000, 62),
                              wrap_to=VEHICLE.public_key())
    backend.faults({"path": "job-enc-tampered.bin", "corrupt_at": 5})
    with pytest.raises(VerificationError, match="SHA-256 mismatch"):
        run(client, target)
    assert client.cache.entries() == []
    nothing_unverified(client)


def test_encrypted_target_without_a_configured_key(backend: Backend, client: Client, tmp_path: Path) -> None:
    target = encrypted_target(backend, tmp_path, "job-enc-nokey.bin", b"x" * 100, wrap_to=VEHICLE.public_key())
    with pytest.raises(ConfigurationError, match="no vehicle decryption key"):
        run(client, target, key=None)
