"""The Director's vehicle registry: who may upload manifests, with which key, for which ECUs.

::

    vehicles:
      BENCHVIN000000001:
        primary_id: tbox-0001
        manifest_key: keys/BENCHVIN000000001-sign.pub.pem   # Ed25519 / P-256 public key (PEM)
        encryption_key: pki/vehicle-enc.pub.pem             # optional: P-256 key content keys are wrapped to
        ecus:
          engine: {hardware_id: ENG-4711}
          brake: {hardware_id: BRK-0815}
          ivi: {hardware_id: IVI-9000, someip_instance: 1,   # a Linux ECU: its "OTA secondary" instance
                encryption_key: ivi-enc.pub.pem}       # optional: its own P-256 key (independent download)

Relative paths are relative to the registry file. The file is re-read when it changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from securesystemslib.signer import SSlibKey

from agent.config.node import Node, load_yaml
from dmclient.uptane.custom import check_ident
from dmclient.uptane.signing import load_public_key


@dataclass(frozen=True)
class RegisteredVehicle:
    vin: str
    primary_id: str
    manifest_key: SSlibKey
    encryption_key: ec.EllipticCurvePublicKey | None
    #: ECU name -> hardware id
    ecus: dict[str, str]
    #: Linux ECU name -> its SOME/IP "OTA secondary" instance (signed into independent-download targets)
    instances: dict[str, int] = field(default_factory=dict)
    #: ECU name -> its own encryption key (a Linux ECU decrypting what it downloads itself)
    ecu_keys: dict[str, ec.EllipticCurvePublicKey] = field(default_factory=dict)


def _ident(node: Node, key: str) -> str:
    try:
        return check_ident(node.get(key, str), node.key_path(key))
    except ValueError as e:
        raise node.error(str(e).split(": ", 1)[1], key) from e


def _path(node: Node, key: str, base: Path) -> Path:
    p = Path(node.get(key, str))
    return p if p.is_absolute() else base / p


def _encryption_key(node: Node, base: Path) -> ec.EllipticCurvePublicKey:
    path = _path(node, "encryption_key", base)
    try:
        loaded = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as e:
        raise node.error(f"cannot load {path}: {e}", "encryption_key") from e
    if not isinstance(loaded, ec.EllipticCurvePublicKey) or not isinstance(loaded.curve, ec.SECP256R1):
        raise node.error(f"{path} must be an EC P-256 public key", "encryption_key")
    return loaded


def _vehicle(vin: str, node: Node, base: Path) -> RegisteredVehicle:
    try:
        check_ident(vin, node.key_path())
    except ValueError as e:
        raise node.error(f"not a valid VIN: {vin!r}") from e
    key = load_public_key(_path(node, "manifest_key", base), source=node.source)
    enc = _encryption_key(node, base) if node.has("encryption_key") else None
    ecus: dict[str, str] = {}
    instances: dict[str, int] = {}
    ecu_keys: dict[str, ec.EllipticCurvePublicKey] = {}
    for name, ecu in node.children("ecus"):
        ecus[name] = _ident(ecu, "hardware_id")
        if ecu.has("someip_instance"):
            instances[name] = ecu.integer("someip_instance", minimum=1, maximum=0xFFFE)
        if ecu.has("encryption_key"):
            ecu_keys[name] = _encryption_key(ecu, base)
        ecu.done()
    vehicle = RegisteredVehicle(vin, _ident(node, "primary_id"), key, enc, ecus, instances, ecu_keys)
    node.done()
    return vehicle


def load_registry(path: str | Path) -> dict[str, RegisteredVehicle]:
    root = load_yaml(path)
    base = Path(path).resolve().parent
    vehicles = {vin: _vehicle(vin, node, base) for vin, node in root.children("vehicles")}
    root.done()
    return vehicles
