"""Encrypted targets: AES-256-GCM content, content key wrapped to the vehicle's EC key.

Format (version 1; all of it travels in the download order's ``encryption`` section):

* **Content**: AES-256-GCM (NIST SP 800-38D), 96-bit ``nonce``, no associated data. The
  served object is ``ciphertext || tag`` (16-byte tag at the end), so its length is the
  image length + 16; ``hashes`` in the section are those of this served object.
* **Key wrap** ``ECDH-ES-P256-HKDF-SHA256-A256KW``: the sender makes an ephemeral P-256
  key pair ``(e, E)``; ``Z = ECDH(e, V)`` with ``V`` the vehicle's P-256 public key;
  ``KEK = HKDF-SHA256(IKM=Z, salt="", info="ota-agent-stack content key v1" || E || V, L=32)``
  with ``E`` and ``V`` as 65-byte uncompressed X9.62 points; ``wrapped_key`` = AES key
  wrap (RFC 3394) of the 32-byte content key under ``KEK`` (40 bytes).
  ``ephemeral_key`` is ``E`` (65 bytes). Binary fields are base64 (standard alphabet).

Decryption streams (``Cipher(AES, GCM).decryptor()`` + ``finalize_with_tag``: the
``AESGCM`` one-shot API would need the whole file in memory). Plaintext goes to a private
temp file beside the cache and is deleted when the tag does not verify, so unauthenticated
plaintext never reaches the cache; the plaintext digests are computed on the way and
checked against the order by the caller. A content key that does not unwrap (wrapped to
another vehicle) is a :class:`~agent.errors.VerificationError` before any byte is read.
"""

from __future__ import annotations

import base64
import binascii
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.errors import ConfigurationError, VerificationError
from dmclient.digests import Hashes, StreamHasher
from dmclient.keyfile import EC_P256, check_private_key_file
from dmclient.partfile import PartFile, Writer

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

# cryptography (~7 MiB resident) is imported by the functions that use it: an idle
# dmclient that has parsed orders but decrypted nothing has not loaded it.

ALGORITHM = "AES-256-GCM"
KEY_WRAP = "ECDH-ES-P256-HKDF-SHA256-A256KW"
TAG_BYTES = 16
NONCE_BYTES = 12
_INFO = b"ota-agent-stack content key v1"


def _b64(value: Any, where: str, size: int) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"{where}: expected base64 text")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"{where}: not valid base64: {e}") from e
    if len(raw) != size:
        raise ValueError(f"{where}: expected {size} bytes, got {len(raw)}")
    return raw


@dataclass(frozen=True)
class EncryptionSpec:
    ephemeral_key: bytes
    wrapped_key: bytes
    nonce: bytes
    #: digests of the served object (ciphertext || tag)
    hashes: Hashes

    @classmethod
    def parse(cls, data: Any, where: str) -> EncryptionSpec:
        if not isinstance(data, Mapping):
            raise ValueError(f"{where}: expected a mapping")
        known = {"algorithm", "key_wrap", "ephemeral_key", "wrapped_key", "nonce", "hashes"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{where}: unknown key {unknown[0]!r}")
        for key in sorted(known):
            if key not in data:
                raise ValueError(f"{where}.{key}: required")
        if data["algorithm"] != ALGORITHM:
            raise ValueError(f"{where}.algorithm: only {ALGORITHM} is supported, got {data['algorithm']!r}")
        if data["key_wrap"] != KEY_WRAP:
            raise ValueError(f"{where}.key_wrap: only {KEY_WRAP} is supported, got {data['key_wrap']!r}")
        return cls(_b64(data["ephemeral_key"], f"{where}.ephemeral_key", 65),
                   _b64(data["wrapped_key"], f"{where}.wrapped_key", 40),
                   _b64(data["nonce"], f"{where}.nonce", NONCE_BYTES),
                   Hashes.parse(data["hashes"], f"{where}.hashes"))

    def to_dict(self) -> dict[str, Any]:
        return {"algorithm": ALGORITHM, "key_wrap": KEY_WRAP,
                "ephemeral_key": base64.b64encode(self.ephemeral_key).decode(),
                "wrapped_key": base64.b64encode(self.wrapped_key).decode(),
                "nonce": base64.b64encode(self.nonce).decode(), "hashes": self.hashes.to_dict()}


def _point(key: ec.EllipticCurvePublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def _kek(shared: bytes, ephemeral: bytes, vehicle: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=_INFO + ephemeral + vehicle).derive(shared)


def wrap_content_key(vehicle_key: ec.EllipticCurvePublicKey, content_key: bytes) -> tuple[bytes, bytes]:
    """Sender side: ``(ephemeral_key, wrapped_key)`` for ``content_key`` (32 bytes)."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.keywrap import aes_key_wrap

    if len(content_key) != 32:
        raise ValueError("content key must be 32 bytes (AES-256)")
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    e_pub = _point(ephemeral.public_key())
    kek = _kek(ephemeral.exchange(ec.ECDH(), vehicle_key), e_pub, _point(vehicle_key))
    return e_pub, aes_key_wrap(kek, content_key)


def unwrap_content_key(vehicle_key: ec.EllipticCurvePrivateKey, spec: EncryptionSpec, what: str) -> bytes:
    """Vehicle side: the content key, or VerificationError if it was not wrapped to this key."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap

    try:
        e_pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), spec.ephemeral_key)
    except ValueError as e:
        raise VerificationError(f"{what}: ephemeral key is not a P-256 point") from e
    kek = _kek(vehicle_key.exchange(ec.ECDH(), e_pub), spec.ephemeral_key, _point(vehicle_key.public_key()))
    try:
        return aes_key_unwrap(kek, spec.wrapped_key)
    except InvalidUnwrap as e:
        raise VerificationError(f"{what}: content key does not unwrap with this vehicle's key "
                                "(wrapped to another vehicle, or corrupted)") from e


def load_vehicle_key(path: Path, *, source: str | None = None) -> ec.EllipticCurvePrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise ConfigurationError(f"cannot load vehicle decryption key {path}: {e}", source=source,
                                 key="encryption_key") from e
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigurationError(f"vehicle decryption key {path} must be an EC P-256 private key",
                                 source=source, key="encryption_key")
    return key


class VehicleKeyFile:
    """The vehicle decryption key: its file checked now (standard library), loaded on first use.

    The check refuses what :func:`load_vehicle_key` would (unreadable, not PEM, not EC P-256)
    with the same message; :meth:`key` loads it with cryptography once, when the first
    encrypted target needs it.
    """

    def __init__(self, path: Path, *, source: str | None = None) -> None:
        check_private_key_file(path, (EC_P256,), what="vehicle decryption key", source=source, key="encryption_key")
        self.path = path
        self.source = source
        self._key: ec.EllipticCurvePrivateKey | None = None
        self._lock = threading.Lock()

    def key(self) -> ec.EllipticCurvePrivateKey:
        with self._lock:
            if self._key is None:
                self._key = load_vehicle_key(self.path, source=self.source)
            return self._key


def encrypt_file(src: Path, dst: Path, content_key: bytes, nonce: bytes, *, chunk: int = 1 << 20) -> None:
    """Sender side (bench, release builder): ``dst = AES-256-GCM(src) || tag``, streamed."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    enc = Cipher(algorithms.AES(content_key), modes.GCM(nonce)).encryptor()
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while block := fin.read(chunk):
            fout.write(enc.update(block))
        fout.write(enc.finalize())
        fout.write(enc.tag)


def decrypt_file(src: Path, dst: Path, content_key: bytes, nonce: bytes, *, what: str,
                 chunk: int = 1 << 20, write: Writer = os.write) -> StreamHasher:
    """Decrypt ``src`` (ciphertext || tag) into ``dst``; plaintext digests on success.

    ``dst`` exists only if the tag verified: on any failure it is deleted. ``write`` is the low-level
    write (injectable); a disk that fills up is :class:`~dmclient.errors.StorageFullError` naming ``dst``.
    """
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    size = src.stat().st_size
    if size < TAG_BYTES:
        raise VerificationError(f"{what}: encrypted object is {size} bytes, shorter than a GCM tag")
    body = size - TAG_BYTES
    dec = Cipher(algorithms.AES(content_key), modes.GCM(nonce)).decryptor()
    hasher = StreamHasher(sha512=True)
    buf = bytearray(chunk + 15)  # update_into needs len(data) + block_size - 1 of room
    ok = False
    try:
        with open(src, "rb") as fin, PartFile.create(dst, write=write) as fout:  # full disk: StorageFullError
            remaining = body
            while remaining:
                block = fin.read(min(chunk, remaining))
                if not block:
                    raise VerificationError(f"{what}: encrypted object ended early")
                remaining -= len(block)
                n = dec.update_into(block, buf)
                out = memoryview(buf)[:n]
                fout.write(out)
                hasher.update(out)
            tag = fin.read(TAG_BYTES)
            try:
                tail = dec.finalize_with_tag(tag)
            except InvalidTag as e:
                raise VerificationError(f"{what}: AES-GCM authentication failed (wrong content key or "
                                        "tampered ciphertext); plaintext discarded") from e
            fout.write(tail)
            hasher.update(tail)
            fout.sync()
        ok = True
        return hasher
    finally:
        if not ok:
            dst.unlink(missing_ok=True)
