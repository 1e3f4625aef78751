"""Encryption format and delta reconstruction as pure file operations."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import bsdiff4
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from agent.errors import VerificationError
from dmclient.delta import DeltaTooLarge, apply_delta
from dmclient.digests import Hashes
from dmclient.encryption import EncryptionSpec, decrypt_file, encrypt_file, unwrap_content_key, wrap_content_key

from .conftest import digests, payload


def encrypted(tmp_path: Path, data: bytes, vehicle: ec.EllipticCurvePublicKey,
              content_key: bytes | None = None) -> tuple[Path, EncryptionSpec, bytes]:
    key = content_key or os.urandom(32)
    nonce = os.urandom(12)
    src, dst = tmp_path / "plain", tmp_path / "cipher"
    src.write_bytes(data)
    encrypt_file(src, dst, key, nonce, chunk=4096)
    eph, wrapped = wrap_content_key(vehicle, key)
    return dst, EncryptionSpec(eph, wrapped, nonce, digests(dst.read_bytes())), key


def test_round_trip_streams_in_chunks(tmp_path: Path) -> None:
    vehicle = ec.generate_private_key(ec.SECP256R1())
    data = payload(100_003, 1)
    cipher, spec, _ = encrypted(tmp_path, data, vehicle.public_key())
    assert cipher.stat().st_size == len(data) + 16
    spec = EncryptionSpec.parse(spec.to_dict(), "encryption")  # survives its JSON form
    key = unwrap_content_key(vehicle, spec, "t")
    out = tmp_path / "out"
    hasher = decrypt_file(cipher, out, key, spec.nonce, what="t", chunk=4096)
    assert out.read_bytes() == data and hasher.result() == digests(data)


def test_key_wrapped_to_another_vehicle_does_not_unwrap(tmp_path: Path) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    _, spec, _ = encrypted(tmp_path, b"x" * 100, other.public_key())
    with pytest.raises(VerificationError, match="does not unwrap with this vehicle's key"):
        unwrap_content_key(ec.generate_private_key(ec.SECP256R1()), spec, "t")


@pytest.mark.parametrize("damage", ["wrong-key", "flipped-ciphertext", "flipped-tag"])
def test_authentication_failure_discards_the_plaintext(tmp_path: Path, damage: str) -> None:
    vehicle = ec.generate_private_key(ec.SECP256R1())
    cipher, spec, key = encrypted(tmp_path, payload(50_000, 2), vehicle.public_key())
    raw = bytearray(cipher.read_bytes())
    if damage == "wrong-key":
        key = os.urandom(32)
    else:
        raw[100 if damage == "flipped-ciphertext" else -1] ^= 1
        cipher.write_bytes(bytes(raw))
    out = tmp_path / "out"
    with pytest.raises(VerificationError, match="AES-GCM authentication failed"):
        decrypt_file(cipher, out, key, spec.nonce, what="t", chunk=4096)
    assert not out.exists()


def test_malformed_encryption_sections_are_named() -> None:
    good = {"algorithm": "AES-256-GCM", "key_wrap": "ECDH-ES-P256-HKDF-SHA256-A256KW",
            "ephemeral_key": base64.b64encode(bytes(65)).decode(), "wrapped_key": base64.b64encode(bytes(40)).decode(),
            "nonce": base64.b64encode(bytes(12)).decode(), "hashes": {"sha256": "a" * 64}}
    EncryptionSpec.parse(good, "e")
    for key, value, message in [("algorithm", "AES-128-CBC", "only AES-256-GCM"),
                                ("nonce", "AAAA", "expected 12 bytes"),
                                ("wrapped_key", "!!", "not valid base64")]:
        with pytest.raises(ValueError, match=message):
            EncryptionSpec.parse({**good, key: value}, "e")


def delta_files(tmp_path: Path, base: bytes, target: bytes) -> tuple[Path, Path]:
    b, p = tmp_path / "base", tmp_path / "patch"
    b.write_bytes(base)
    p.write_bytes(bsdiff4.diff(base, target))
    return b, p


def test_delta_rebuilds_the_target(tmp_path: Path) -> None:
    base = payload(50_000, 3)
    target = base[:20_000] + b"new code" + base[20_000:]
    b, p = delta_files(tmp_path, base, target)
    out = tmp_path / "out"
    result = apply_delta(b, p, out, base_hashes=digests(base), target_hashes=digests(target),
                         target_length=len(target), max_bytes=1 << 20, what="t")
    assert out.read_bytes() == target and result == digests(target)


def test_delta_refuses_a_base_that_does_not_match(tmp_path: Path) -> None:
    base = payload(50_000, 4)
    target = base + b"tail"
    b, p = delta_files(tmp_path, base, target)
    out = tmp_path / "out"
    with pytest.raises(VerificationError, match="delta base"):
        apply_delta(b, p, out, base_hashes=digests(b"another base"), target_hashes=digests(target),
                    target_length=len(target), max_bytes=1 << 20, what="t")
    assert not out.exists()


def test_delta_result_must_match_the_target_hashes(tmp_path: Path) -> None:
    base = payload(50_000, 5)
    b, p = delta_files(tmp_path, base, base + b"tail")
    with pytest.raises(VerificationError, match="delta result"):
        apply_delta(b, p, tmp_path / "out", base_hashes=digests(base), target_hashes=Hashes("0" * 64),
                    target_length=len(base) + 4, max_bytes=1 << 20, what="t")
    assert not (tmp_path / "out").exists()


def test_delta_over_the_memory_limit_is_refused(tmp_path: Path) -> None:
    base = payload(5000, 6)
    b, p = delta_files(tmp_path, base, base)
    with pytest.raises(DeltaTooLarge, match="exceeds the delta limit"):
        apply_delta(b, p, tmp_path / "out", base_hashes=digests(base), target_hashes=digests(base),
                    target_length=5000, max_bytes=4096, what="t")


def test_garbage_patch_is_a_verification_error(tmp_path: Path) -> None:
    base = payload(5000, 7)
    b, p = tmp_path / "base", tmp_path / "patch"
    b.write_bytes(base)
    p.write_bytes(b"BSDIFF40" + b"\0" * 100)
    with pytest.raises(VerificationError, match="patch does not apply"):
        apply_delta(b, p, tmp_path / "out", base_hashes=digests(base), target_hashes=digests(base),
                    target_length=5000, max_bytes=1 << 20, what="t")
