"""Bench PKI: an OEM-style private PKI generated at run time (never committed).

``generate(directory)`` writes, with the ``cryptography`` package (EC P-256 keys,
SHA-256 signatures, keys mode 0600):

* ``ca.pem`` / ``ca.key``: the root CA of the OEM's private PKI;
* ``server.pem`` / ``server.key``: the backend's certificate (SAN ``localhost``,
  ``127.0.0.1``, ``::1``; EKU serverAuth), issued by the root;
* ``client.pem`` / ``client.key``: the vehicle's client certificate, CN = VIN (EKU
  clientAuth), issued by the root;
* ``rogue-ca.pem`` and, issued by it, ``rogue-server.pem|key`` and ``rogue-client.pem|key``:
  an unrelated CA for refusal tests (a backend or a vehicle the other side must not trust);
* ``vehicle-enc.key`` / ``vehicle-enc.pub.pem``: the vehicle's P-256 key that content keys of
  encrypted targets are wrapped to (kept apart from the TLS key).

``otactl bench pki DIR [--vin VIN]`` (or ``python -m bench.pki DIR``) does the same and prints
the paths as JSON.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

BENCH_VIN = "BENCHVIN000000001"
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class BenchPki:
    directory: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_ca_cert: Path
    rogue_server_cert: Path
    rogue_server_key: Path
    rogue_client_cert: Path
    rogue_client_key: Path
    vehicle_enc_key: Path
    vehicle_enc_pub: Path
    vin: str

    def to_json(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}


def _name(cn: str, org: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _ca(cn: str, days: int) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _key()
    now = datetime.datetime.now(datetime.timezone.utc)
    name = _name(cn, "Bench OEM")
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def _leaf(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, cn: str, *, server: bool,
          hosts: Sequence[str], days: int) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _key()
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name(cn, "Bench OEM")).issuer_name(ca_cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False, key_agreement=True,
                                            key_cert_sign=False, crl_sign=False, encipher_only=False,
                                            decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                     else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
                              critical=False))
    if server:
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def generate(directory: Path, *, vin: str = BENCH_VIN, hosts: Sequence[str] = DEFAULT_HOSTS,
             days: int = 30) -> BenchPki:
    """Write a fresh bench PKI into ``directory`` (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    d = directory
    pki = BenchPki(d, d / "ca.pem", d / "ca.key", d / "server.pem", d / "server.key", d / "client.pem",
                   d / "client.key", d / "rogue-ca.pem", d / "rogue-server.pem", d / "rogue-server.key",
                   d / "rogue-client.pem", d / "rogue-client.key", d / "vehicle-enc.key",
                   d / "vehicle-enc.pub.pem", vin)
    ca_key, ca_cert = _ca("Bench OEM Root CA", days)
    _write_key(pki.ca_key, ca_key)
    _write_cert(pki.ca_cert, ca_cert)
    for cert_path, key_path, cn, server in ((pki.server_cert, pki.server_key, "bench-backend", True),
                                            (pki.client_cert, pki.client_key, vin, False)):
        k, c = _leaf(ca_key, ca_cert, cn, server=server, hosts=hosts, days=days)
        _write_key(key_path, k)
        _write_cert(cert_path, c)
    rogue_key, rogue_cert = _ca("Unrelated CA", days)
    _write_cert(pki.rogue_ca_cert, rogue_cert)
    for cert_path, key_path, cn, server in ((pki.rogue_server_cert, pki.rogue_server_key, "rogue-backend", True),
                                            (pki.rogue_client_cert, pki.rogue_client_key, vin, False)):
        k, c = _leaf(rogue_key, rogue_cert, cn, server=server, hosts=hosts, days=days)
        _write_key(key_path, k)
        _write_cert(cert_path, c)
    enc = _key()
    _write_key(pki.vehicle_enc_key, enc)
    pki.vehicle_enc_pub.write_bytes(enc.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return pki
