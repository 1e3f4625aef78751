"""An idle dmclient: key files checked at start without cryptography, the libraries loaded on first use.

The daemon checks its decryption key (and the manifest signing key) at start with the standard
library only (:mod:`dmclient.keyfile`), so a wrong file still stops it naming the file, and
loads cryptography, requests and python-tuf on the first download, encrypted target or check:
an idle daemon's memory stays small (issue 6's idle RSS goal).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from agent.errors import ConfigurationError
from bench.pki import BenchPki
from dmclient.encryption import EncryptionSpec, VehicleKeyFile, encrypt_file, load_vehicle_key, wrap_content_key
from dmclient.keyfile import EC_P256, ED25519, check_private_key_file, private_key_kind

from .conftest import Backend, digests, payload
from .daemon_fixture import DmclientProcess, wait_state

PKCS8 = serialization.PrivateFormat.PKCS8
SEC1 = serialization.PrivateFormat.TraditionalOpenSSL
KeyMaker = Callable[[], object]


def pem(key: object, fmt: serialization.PrivateFormat = PKCS8,
        encryption: serialization.KeySerializationEncryption | None = None) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, fmt,  # type: ignore[attr-defined, no-any-return]
                             encryption or serialization.NoEncryption())


@pytest.mark.parametrize(("key", "fmt", "kind"), [
    (lambda: ec.generate_private_key(ec.SECP256R1()), PKCS8, EC_P256),
    (lambda: ec.generate_private_key(ec.SECP256R1()), SEC1, EC_P256),
    (ed25519.Ed25519PrivateKey.generate, PKCS8, ED25519),
    (lambda: ec.generate_private_key(ec.SECP384R1()), PKCS8, "an EC key on curve OID 2b81040022"),
    (lambda: ec.generate_private_key(ec.SECP384R1()), SEC1, "an EC key on curve OID 2b81040022"),
    (lambda: rsa.generate_private_key(65537, 2048), PKCS8, "a key with algorithm OID 2a864886f70d010101"),
    (lambda: rsa.generate_private_key(65537, 2048), SEC1, "a RSA PRIVATE KEY PEM block"),
], ids=["p256-pkcs8", "p256-sec1", "ed25519", "p384-pkcs8", "p384-sec1", "rsa-pkcs8", "rsa-pkcs1"])
def test_the_kind_of_a_private_key_file_read_without_cryptography(key: KeyMaker, fmt: serialization.PrivateFormat,
                                                                   kind: str) -> None:
    assert private_key_kind(pem(key(), fmt)) == kind


def test_a_bad_key_file_is_refused_at_start_naming_it(tmp_path: Path) -> None:
    cases = {
        "missing.key": None,
        "garbage.key": b"not a key at all\n",
        "base64.key": b"-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",
        "encrypted.key": pem(ec.generate_private_key(ec.SECP256R1()),
                             encryption=serialization.BestAvailableEncryption(b"pw")),
        "p384.key": pem(ec.generate_private_key(ec.SECP384R1())),
        "truncated.key": pem(ec.generate_private_key(ec.SECP256R1()))[:80] + b"\n-----END PRIVATE KEY-----\n",
    }
    reasons = {"missing.key": "cannot load vehicle decryption key .*missing.key: No such file",
               "garbage.key": "no PEM block", "base64.key": "not base64", "encrypted.key": "encrypted",
               "p384.key": "must be an EC P-256 private key, not an EC key on curve",
               "truncated.key": "cannot load vehicle decryption key"}
    for name, data in cases.items():
        if data is not None:
            (tmp_path / name).write_bytes(data)
        with pytest.raises(ConfigurationError, match=reasons[name]) as raised:
            VehicleKeyFile(tmp_path / name, source="agent.yaml")
        assert raised.value.key == "encryption_key" and str(tmp_path / name) in str(raised.value)
        with pytest.raises(ConfigurationError):  # what the full load says too
            load_vehicle_key(tmp_path / name)
    ed = tmp_path / "ed.key"
    ed.write_bytes(pem(ed25519.Ed25519PrivateKey.generate()))
    check_private_key_file(ed, (ED25519, EC_P256), what="signing key")  # a signing key may be Ed25519
    with pytest.raises(ConfigurationError, match="must be an EC P-256 private key, not Ed25519"):
        VehicleKeyFile(ed)


def test_the_key_file_loads_on_first_use_to_the_same_key(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "v.key").write_bytes(pem(key, SEC1))
    lazy = VehicleKeyFile(tmp_path / "v.key")
    assert lazy.key().private_numbers() == key.private_numbers()
    assert lazy.key() is lazy.key()  # loaded once


# -- the daemon ---------------------------------------------------------------------------------
@pytest.fixture
def idle_dmclient(tmp_path_factory: pytest.TempPathFactory, pki: BenchPki, backend: Backend,
                  ) -> Iterator[DmclientProcess]:
    d = DmclientProcess(tmp_path_factory.mktemp("lazy"), pki, backend)
    d.start()
    yield d
    d.cleanup()


def mapped(d: DmclientProcess, fragment: str) -> bool:
    """Whether the daemon has a shared object whose path contains ``fragment`` mapped."""
    assert d.proc is not None
    return any(fragment in line for line in Path(f"/proc/{d.proc.pid}/maps").read_text().splitlines())


@pytest.mark.e2e
def test_an_idle_daemon_has_not_loaded_cryptography_and_an_encrypted_download_still_works(
        idle_dmclient: DmclientProcess, pki: BenchPki, backend: Backend, tmp_path: Path) -> None:
    assert not mapped(idle_dmclient, "cryptography/hazmat/bindings")  # key checked at start, not loaded
    plain = payload(200_000, 9)
    content_key, nonce = os.urandom(32), os.urandom(12)
    (tmp_path / "plain").write_bytes(plain)
    encrypt_file(tmp_path / "plain", tmp_path / "cipher", content_key, nonce)
    served = backend.put("lazy/enc.bin", (tmp_path / "cipher").read_bytes())
    ephemeral, wrapped = wrap_content_key(load_vehicle_key(pki.vehicle_enc_key).public_key(), content_key)
    spec = EncryptionSpec(ephemeral, wrapped, nonce, served.hashes)
    target = {"name": "enc.bin", "url": served.url, "length": len(plain), "hashes": digests(plain).to_dict(),
              "encryption": spec.to_dict()}
    with idle_dmclient.client() as c, c.subscribe("dmclient.download.state") as sub:
        tid = c.call("dmclient.download.start", {"targets": [target]})["targets"][0]["id"]
        final = wait_state(sub, tid)
    assert final["state"] == "done", final
    assert Path(final["path"]).read_bytes() == plain
    assert mapped(idle_dmclient, "cryptography/hazmat/bindings")  # loaded by the first encrypted target
