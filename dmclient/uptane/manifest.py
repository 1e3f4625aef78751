"""The vehicle version manifest: what the car has installed, signed by the car.

Uploaded to the Director before every Director refresh. The envelope has TUF's shape
(``signatures`` over the canonical JSON of ``signed``, see :mod:`.signing`)::

    {"signatures": [{"keyid": "...", "sig": "..."}],
     "signed": {
       "type": "vehicle-manifest", "format": 1,
       "vin": "BENCHVIN000000001", "primary_id": "tbox-0001",
       "vehicle_version": "BV OS D 1.0.0",         # as matched against the baseline XML
       "issued": "2025-01-01T12:00:00Z",
       "ecu_version_reports": [
         {"ecu": "engine",
          "installed": {"name": "engine/engine-1.0.0.hex", "length": 1234,
                        "hashes": {"sha256": "...", "sha512": "..."}},   # null when unknown
          "release_counter": 1,
          "report_counter": 42,     # strictly increasing per ECU: a replayed report is refused
          "attack": ""}],           # "" or the attack the last check detected for this ECU
       "configuration": {"drive_mode": "sport"}}}  # optional: remote configuration values confirmed

``configuration`` (remote configuration, FAW paper 3.4): per item, the value the last
campaign that changed it wrote and read back from every ECU of the item. The Director
decides from it whether a configuration-only release is still to be applied: the
manifest, not a result report, because it is what Uptane's Director already trusts - signed
by the vehicle's registered key, replay-checked by the per-ECU report counters, and sent
again before every check, so a lost report cannot leave the backend believing the wrong
thing, and nothing unsigned can make the Director stop (or keep) assigning a change.

The same module verifies it on the backend (:func:`verify_manifest`): signature by the
vehicle's registered key first, then the structure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from securesystemslib.exceptions import UnverifiedSignatureError
from securesystemslib.signer import CryptoSigner, Key, Signature

from agent.errors import ProtocolError, VerificationError
from dmclient.digests import Hashes
from dmclient.uptane.custom import check_ident, check_target_name
from dmclient.uptane.signing import canonical_bytes

MANIFEST_TYPE = "vehicle-manifest"
FORMAT = 1
MAX_MANIFEST_BYTES = 256 * 1024
MAX_ATTACK = 200
#: the most configuration items a manifest reports
MAX_CONFIG_ITEMS = 256
_CONFIG_ITEM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class InvalidManifestError(ProtocolError):
    """A manifest that is not well formed (the message names the field)."""


class ManifestSignatureError(VerificationError):
    """A manifest not signed by the vehicle's registered key."""


@dataclass(frozen=True)
class InstalledImage:
    name: str
    length: int
    hashes: Hashes

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "length": self.length, "hashes": self.hashes.to_dict()}

    @classmethod
    def parse(cls, data: Any, where: str) -> InstalledImage:
        d = _keys(data, where, {"name", "length", "hashes"})
        length = d["length"]
        if not isinstance(length, int) or isinstance(length, bool) or length < 0:
            raise ValueError(f"{where}.length: expected a byte count, got {length!r}")
        return cls(check_target_name(d["name"], f"{where}.name"), length, Hashes.parse(d["hashes"], f"{where}.hashes"))


@dataclass(frozen=True)
class EcuVersionReport:
    ecu: str
    installed: InstalledImage | None
    release_counter: int
    report_counter: int
    attack: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"ecu": self.ecu, "installed": self.installed.to_dict() if self.installed else None,
                "release_counter": self.release_counter, "report_counter": self.report_counter,
                "attack": self.attack}

    @classmethod
    def parse(cls, data: Any, where: str) -> EcuVersionReport:
        d = _keys(data, where, {"ecu", "installed", "release_counter", "report_counter", "attack"})
        counters = []
        for key in ("release_counter", "report_counter"):
            value = d[key]
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{where}.{key}: expected an integer >= 0, got {value!r}")
            counters.append(value)
        attack = d["attack"]
        if not isinstance(attack, str) or len(attack) > MAX_ATTACK:
            raise ValueError(f"{where}.attack: expected a string of at most {MAX_ATTACK} characters")
        installed = None if d["installed"] is None else InstalledImage.parse(d["installed"], f"{where}.installed")
        return cls(check_ident(d["ecu"], f"{where}.ecu"), installed, counters[0], counters[1], attack)


@dataclass(frozen=True)
class VehicleManifest:
    vin: str
    primary_id: str
    vehicle_version: str
    issued: str
    reports: tuple[EcuVersionReport, ...]
    #: remote configuration item -> the value confirmed on every ECU of it (see the module docstring)
    configuration: Mapping[str, str] = field(default_factory=dict)

    def to_signed(self) -> dict[str, Any]:
        out = {"type": MANIFEST_TYPE, "format": FORMAT, "vin": self.vin, "primary_id": self.primary_id,
               "vehicle_version": self.vehicle_version, "issued": self.issued,
               "ecu_version_reports": [r.to_dict() for r in self.reports]}
        if self.configuration:
            out["configuration"] = dict(self.configuration)
        return out

    @classmethod
    def parse(cls, data: Any) -> VehicleManifest:
        where = "signed"
        d = _keys(data, where, {"type", "format", "vin", "primary_id", "vehicle_version", "issued",
                                "ecu_version_reports"}, {"configuration"})
        if d["type"] != MANIFEST_TYPE:
            raise ValueError(f"{where}.type: expected {MANIFEST_TYPE!r}, got {d['type']!r}")
        if d["format"] != FORMAT:
            raise ValueError(f"{where}.format: only format {FORMAT} is understood, got {d['format']!r}")
        for key in ("vehicle_version", "issued"):
            if not isinstance(d[key], str) or not 0 < len(d[key]) <= 64:
                raise ValueError(f"{where}.{key}: expected a non-empty string")
        raw = d["ecu_version_reports"]
        if not isinstance(raw, list) or not raw:
            raise ValueError(f"{where}.ecu_version_reports: expected a non-empty list")
        reports = tuple(EcuVersionReport.parse(r, f"{where}.ecu_version_reports[{i}]") for i, r in enumerate(raw))
        seen: set[str] = set()
        for i, r in enumerate(reports):
            if r.ecu in seen:
                raise ValueError(f"{where}.ecu_version_reports[{i}].ecu: {r.ecu!r} reported twice")
            seen.add(r.ecu)
        return cls(check_ident(d["vin"], f"{where}.vin"), check_ident(d["primary_id"], f"{where}.primary_id"),
                   d["vehicle_version"], d["issued"], reports, _configuration(d.get("configuration", {}), where))

    def report(self, ecu: str) -> EcuVersionReport | None:
        return next((r for r in self.reports if r.ecu == ecu), None)


def _configuration(data: Any, where: str) -> dict[str, str]:
    where = f"{where}.configuration"
    if not isinstance(data, Mapping) or len(data) > MAX_CONFIG_ITEMS:
        raise ValueError(f"{where}: expected an object of at most {MAX_CONFIG_ITEMS} items")
    for name, value in data.items():
        if not isinstance(name, str) or not _CONFIG_ITEM.match(name):
            raise ValueError(f"{where}: not a configuration item name: {name!r}")
        if not isinstance(value, str) or not 0 < len(value) <= 128:
            raise ValueError(f"{where}.{name}: expected a value of 1..128 characters")
    return dict(data)


def _keys(data: Any, where: str, required: set[str], optional: frozenset[str] | set[str] = frozenset()
          ) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected an object")
    unknown = sorted(set(data) - required - set(optional))
    if unknown:
        raise ValueError(f"{where}: unknown field {unknown[0]!r}")
    missing = sorted(required - set(data))
    if missing:
        raise ValueError(f"{where}.{missing[0]}: required")
    return data


def sign_manifest(manifest: VehicleManifest, signer: CryptoSigner) -> bytes:
    """The signed envelope as JSON bytes, ready to upload."""
    signed = manifest.to_signed()
    sig = signer.sign(canonical_bytes(signed))
    return json.dumps({"signatures": [sig.to_dict()], "signed": signed}, separators=(",", ":"),
                      sort_keys=True).encode()


def verify_manifest(data: bytes, key: Key) -> VehicleManifest:
    """Check the envelope's signature with ``key``, then parse ``signed``.

    InvalidManifestError (malformed, too large) or ManifestSignatureError (no valid
    signature by ``key``); nothing in ``signed`` is trusted before the signature is.
    """
    if len(data) > MAX_MANIFEST_BYTES:
        raise InvalidManifestError(f"manifest of {len(data)} bytes is larger than {MAX_MANIFEST_BYTES}")
    try:
        envelope = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidManifestError(f"manifest is not JSON: {e}") from e
    if not isinstance(envelope, dict) or set(envelope) != {"signatures", "signed"}:
        raise InvalidManifestError("manifest must be an object with exactly 'signatures' and 'signed'")
    sigs = envelope["signatures"]
    if not isinstance(sigs, list):
        raise InvalidManifestError("signatures: expected a list")
    try:
        payload = canonical_bytes(envelope["signed"])
    except Exception as e:  # securesystemslib raises FormatError for floats and other non-canonical values
        raise InvalidManifestError(f"signed: not canonical-JSON encodable: {e}") from e
    verified = False
    for i, raw in enumerate(sigs):
        try:
            sig = Signature.from_dict(dict(raw))
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidManifestError(f"signatures[{i}]: malformed: {e}") from e
        if sig.keyid != key.keyid:
            continue
        try:
            key.verify_signature(sig, payload)
            verified = True
            break
        except UnverifiedSignatureError:
            continue
    if not verified:
        raise ManifestSignatureError(f"manifest carries no valid signature by the vehicle's key {key.keyid[:16]}")
    try:
        return VehicleManifest.parse(envelope["signed"])
    except ValueError as e:
        raise InvalidManifestError(str(e)) from e
