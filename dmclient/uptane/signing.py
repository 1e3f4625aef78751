"""Keys and signatures for what the vehicle signs: PEM keys, canonical JSON, securesystemslib.

The vehicle signs its version manifest the way TUF signs metadata: the ``signed``
object serialised as OLPC canonical JSON (``securesystemslib.formats.encode_canonical``,
what python-tuf's ``CanonicalJSONSerializer`` uses), signatures as
``{"keyid", "sig"}`` made by a ``securesystemslib`` :class:`CryptoSigner`. Ed25519 and
ECDSA P-256 (``ecdsa-sha2-nistp256``) keys are accepted, as PKCS#8 / SubjectPublicKeyInfo
PEM files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from securesystemslib.formats import encode_canonical
from securesystemslib.signer import CryptoSigner, SSlibKey

from agent.errors import ConfigurationError


def canonical_bytes(signed: Any) -> bytes:
    """OLPC canonical JSON of ``signed`` (sorted keys, no whitespace, integers only)."""
    text = encode_canonical(signed)
    if text is None:  # only when an output function is passed
        raise ValueError("canonical JSON encoding produced nothing")
    return text.encode("utf-8")


def _check_kind(key: object, path: Path, source: str | None, what: str) -> None:
    ok = isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey) or (
        isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1))
    if not ok:
        raise ConfigurationError(f"{what} {path} must be an Ed25519 or EC P-256 key, not {type(key).__name__}",
                                 source=source)


def load_signer(path: Path, *, source: str | None = None) -> CryptoSigner:
    """A signer for the PEM private key at ``path``; ConfigurationError naming the file."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise ConfigurationError(f"cannot load signing key {path}: {e}", source=source) from e
    _check_kind(key, path, source, "signing key")
    return CryptoSigner(key)  # type: ignore[arg-type]


def load_public_key(path: Path, *, source: str | None = None) -> SSlibKey:
    """The SSlibKey of a PEM public key file; ConfigurationError naming the file."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError, TypeError) as e:
        raise ConfigurationError(f"cannot load public key {path}: {e}", source=source) from e
    _check_kind(key, path, source, "public key")
    return SSlibKey.from_crypto(key)


def public_pem(signer: CryptoSigner) -> bytes:
    """The signer's public key as SubjectPublicKeyInfo PEM (what the backend registers)."""
    private = serialization.load_pem_private_key(signer.private_bytes, password=None)
    return private.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)


def write_private_key(path: Path, signer: CryptoSigner) -> None:
    """Write the signer's private key as PKCS#8 PEM, mode 0600 (bench and provisioning tools)."""
    import os

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(signer.private_bytes)
