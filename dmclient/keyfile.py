"""What kind of private key a PEM file holds, read with the standard library only.

dmclient checks its key files at start (a wrong path or a key of the wrong kind stops the
daemon naming the file) but loads them with cryptography only on first use: the vehicle
decryption key on the first encrypted target, the manifest signing key on the first
``dmclient.check``. That keeps cryptography (~7 MiB resident) out of an idle daemon. The
check reads the PEM armour and the DER structure as far as the algorithm and curve
identifiers: PKCS#8 ``PRIVATE KEY`` (RFC 5208 / 5958) and SEC1 ``EC PRIVATE KEY`` (RFC 5915).
A file that passes but whose key material is corrupt is refused by cryptography on first use,
with the same :class:`~agent.errors.ConfigurationError`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Collection
from pathlib import Path

from agent.errors import ConfigurationError

EC_P256 = "EC P-256"
ED25519 = "Ed25519"

_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\s*(.*?)\s*-----END \1-----", re.DOTALL)
_SEQUENCE, _INTEGER, _OCTETS, _OID, _EC_PARAMS = 0x30, 0x02, 0x04, 0x06, 0xA0
_OID_EC_PUBLIC_KEY = bytes.fromhex("2a8648ce3d0201")  # 1.2.840.10045.2.1
_OID_P256 = bytes.fromhex("2a8648ce3d030107")  # 1.2.840.10045.3.1.7 (prime256v1)
_OID_ED25519 = bytes.fromhex("2b6570")  # 1.3.101.112


def _tlv(data: bytes, pos: int, tag: int | None = None) -> tuple[int, bytes, int]:
    """The DER element at ``pos``: (tag, value, position after it); ValueError when malformed."""
    if pos + 2 > len(data):
        raise ValueError("truncated DER")
    found, n = data[pos], data[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        if not 1 <= k <= 4 or pos + k > len(data):
            raise ValueError("bad DER length")
        n = int.from_bytes(data[pos:pos + k], "big")
        pos += k
    if pos + n > len(data):
        raise ValueError("truncated DER")
    if tag is not None and found != tag:
        raise ValueError(f"unexpected DER tag 0x{found:02x} (expected 0x{tag:02x})")
    return found, data[pos:pos + n], pos + n


def private_key_kind(pem: bytes) -> str:
    """``EC P-256``, ``Ed25519`` or a description of another kind; ValueError if not a private key PEM."""
    m = _PEM.search(pem)
    if m is None:
        raise ValueError("no PEM block found")
    label = m.group(1).decode()
    try:
        der = base64.b64decode(b"".join(m.group(2).split()), validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"PEM body is not base64: {e}") from e
    if label == "ENCRYPTED PRIVATE KEY":
        raise ValueError("the key is encrypted (no password is configured)")
    _t, body, _end = _tlv(der, 0, _SEQUENCE)
    _t, _version, pos = _tlv(body, 0, _INTEGER)
    if label == "PRIVATE KEY":  # PKCS#8: version, AlgorithmIdentifier {OID, parameters}, key
        _t, algorithm, _pos = _tlv(body, pos, _SEQUENCE)
        _t, oid, apos = _tlv(algorithm, 0, _OID)
        if oid == _OID_ED25519:
            return ED25519
        if oid != _OID_EC_PUBLIC_KEY:
            return f"a key with algorithm OID {oid.hex()}"
        _t, curve, _apos = _tlv(algorithm, apos, _OID)
        return EC_P256 if curve == _OID_P256 else f"an EC key on curve OID {curve.hex()}"
    if label == "EC PRIVATE KEY":  # SEC1: version 1, privateKey, [0] parameters (the curve OID)
        _t, _key, pos = _tlv(body, pos, _OCTETS)
        while pos < len(body):
            tag, value, pos = _tlv(body, pos)
            if tag == _EC_PARAMS:
                _t, curve, _p = _tlv(value, 0, _OID)
                return EC_P256 if curve == _OID_P256 else f"an EC key on curve OID {curve.hex()}"
        raise ValueError("EC PRIVATE KEY without its curve parameters")
    return f"a {label} PEM block"


def check_private_key_file(path: Path, kinds: Collection[str], *, what: str, source: str | None = None,
                           key: str | None = None) -> None:
    """ConfigurationError naming ``path`` unless it is a readable PEM private key of one of ``kinds``."""
    try:
        kind = private_key_kind(path.read_bytes())
    except OSError as e:
        raise ConfigurationError(f"cannot load {what} {path}: {e.strerror or e}", source=source, key=key) from e
    except ValueError as e:
        raise ConfigurationError(f"cannot load {what} {path}: {e}", source=source, key=key) from e
    if kind not in kinds:
        raise ConfigurationError(f"{what} {path} must be an {' or '.join(sorted(kinds))} private key, not {kind}",
                                 source=source, key=key)
