"""The ``custom`` fields of our targets, in the Image and in the Director repository.

TUF leaves a target's ``custom`` object to the application; Uptane puts the hardware
id and the release counter there. Both the bench repositories (which write them) and
the vehicle (which checks them) use this module, so the format is written down once.

Image repository targets (offline keys; what exists)::

    {"type": "ecu-image", "hardware_id": "ENG-4711", "release_counter": 3,
     "software_version": "1.1.0", "release": "bv-1.1.0",
     "ciphertext": "engine/engine-1.1.0.hex.enc"}         # only when encrypted
    {"type": "ciphertext", "of": "engine/engine-1.1.0.hex"}  # AES-256-GCM object
    {"type": "delta", "of": "engine/engine-1.1.0.hex", "base_version": "1.0.0",
     "base": {"sha256": ..., "sha512": ...}}              # bsdiff4 patch from base
    {"type": "baseline", "vehicle_version": "BV OS D 1.1.0"}  # software baseline XML
    {"type": "config", "release": "bv-1.1.0"}             # configuration change (JSON, below)

Director targets (online keys; what this vehicle is to install)::

    {"type": "ecu-image", "ecu": "engine", "hardware_id": "ENG-4711",
     "release_counter": 3, "software_version": "1.1.0", "release": "bv-1.1.0",
     "target_vehicle_version": "BV OS D 1.1.0", "flash_script": "single_bank",
     "delta": {"target": "engine/...bsdiff", "base": {"sha256": ...}},        # optional
     "encryption": {"target": "engine/...enc", "spec": {...}},               # optional
     "independent": {"instance": 1, "install_script": "..."}}   # optional: a Linux ECU
    {"type": "baseline", "target_vehicle_version": "BV OS D 1.1.0",
     "mandatory": true, "deadline": "2026-12-01T00:00:00Z"}   # both optional: the release's policy
    {"type": "config", "target_vehicle_version": "BV OS D 1.1.0"}

``independent`` marks an image a Linux ECU downloads itself (independent download, FAW paper
3.3): the gateway sends that ECU the download order over SOME/IP (service "OTA secondary",
``instance``) instead of downloading it, and hands it ``install_script`` (a small YAML list of
steps the ECU's own agent runs) at install time. ``flash_script`` then names that script.

The baseline target is the one every assignment has exactly once, so it carries the
release's consent policy: ``mandatory`` (true/false; absent: the release does not say,
the HMI agent's configuration decides) and ``deadline`` (ISO 8601 UTC, only with
``mandatory: true``: after it the update proceeds at the next maintenance window).
Signed by the Director's targets key, so no one on the way can change them.

A configuration change target (remote configuration, applied by the update agent after
the release's images are installed) is a small JSON file::

    {"format": 1, "values": {"drive_mode": "sport", "comfort_lights": "on"}}

``spec`` is :class:`dmclient.encryption.EncryptionSpec` (content key wrapped to this
vehicle). ``type`` is the extension point: a later target kind (ECU configuration)
adds a value here; the vehicle refuses a type it does not know rather than skip it.
Parsers raise ``ValueError`` naming the field; the vehicle turns that into
:class:`~dmclient.uptane.errors.InvalidMetadataError`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from dmclient.digests import Hashes
from dmclient.encryption import EncryptionSpec

ECU_IMAGE, CIPHERTEXT, DELTA, BASELINE, CONFIG = "ecu-image", "ciphertext", "delta", "baseline", "config"
IMAGE_TYPES = (ECU_IMAGE, CIPHERTEXT, DELTA, BASELINE, CONFIG)
DIRECTOR_TYPES = (ECU_IMAGE, BASELINE, CONFIG)
#: the largest configuration change target a vehicle accepts
MAX_CONFIG_BYTES = 64 * 1024
_CONFIG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

_TARGET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*(/[A-Za-z0-9][A-Za-z0-9._+-]*)*$")
_IDENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,63}$")
MAX_COUNTER = (1 << 63) - 1


def check_target_name(value: Any, where: str) -> str:
    """A relative path of safe components (no ``..``, no leading ``/``), at most 200 chars."""
    if not isinstance(value, str) or len(value) > 200 or not _TARGET_NAME.match(value) \
            or any(part in (".", "..") for part in value.split("/")):
        raise ValueError(f"{where}: not a valid target name: {value!r}")
    return value


def check_ident(value: Any, where: str) -> str:
    """An ECU name, hardware id, release id, software version or flash script name."""
    if not isinstance(value, str) or not _IDENT.match(value):
        raise ValueError(f"{where}: expected 1-64 letters, digits or ._:+- starting with a letter or digit, "
                         f"got {value!r}")
    return value


def check_counter(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_COUNTER:
        raise ValueError(f"{where}: expected a release counter (integer >= 0), got {value!r}")
    return value


def check_deadline(value: Any, where: str) -> str:
    """An ISO 8601 UTC time to the second (text, or a YAML timestamp); canonical ``YYYY-MM-DDTHH:MM:SSZ``."""
    when = value
    if isinstance(value, str) and len(value) <= 64:
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{where}: not an ISO 8601 time: {value!r} (e.g. 2026-12-01T00:00:00Z)") from None
    if not isinstance(when, datetime):
        raise ValueError(f"{where}: expected an ISO 8601 UTC time such as 2026-12-01T00:00:00Z, got {value!r}")
    if when.utcoffset() != timedelta(0):
        raise ValueError(f"{where}: must be in UTC (end in Z or +00:00), got {value!r}")
    if when.microsecond:
        raise ValueError(f"{where}: give the time to the second, got {value!r}")
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def policy_fields(mandatory: bool | None, deadline: str | None) -> dict[str, Any]:
    """The release's consent policy as JSON fields: only what the release says."""
    out: dict[str, Any] = {} if mandatory is None else {"mandatory": mandatory}
    return out if deadline is None else {**out, "deadline": deadline}


def check_mandatory(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{where}: expected true or false, got {value!r}")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 128:
        raise ValueError(f"{where}: expected a non-empty string, got {value!r}")
    return value


def _mapping(data: Any, where: str, required: set[str], optional: frozenset[str] | set[str] = frozenset()
             ) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected an object, got {type(data).__name__}")
    unknown = sorted(set(data) - required - optional)
    if unknown:
        raise ValueError(f"{where}: unknown field {unknown[0]!r}")
    for key in sorted(required):
        if key not in data:
            raise ValueError(f"{where}.{key}: required")
    return data


def target_type(custom: Any, where: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(custom, Mapping):
        raise ValueError(f"{where}: has no custom object (type, hardware id, release counter)")
    kind = custom.get("type")
    if kind not in allowed:
        raise ValueError(f"{where}.type: unknown target type {kind!r} (this vehicle knows {', '.join(allowed)})")
    return str(kind)


# -- Image repository ------------------------------------------------------------------
@dataclass(frozen=True)
class ImageEcuImage:
    hardware_id: str
    release_counter: int
    software_version: str
    release: str
    ciphertext: str | None = None

    @classmethod
    def parse(cls, data: Any, where: str) -> ImageEcuImage:
        d = _mapping(data, where, {"type", "hardware_id", "release_counter", "software_version", "release"},
                     {"ciphertext"})
        return cls(check_ident(d["hardware_id"], f"{where}.hardware_id"),
                   check_counter(d["release_counter"], f"{where}.release_counter"),
                   check_ident(d["software_version"], f"{where}.software_version"),
                   check_ident(d["release"], f"{where}.release"),
                   check_target_name(d["ciphertext"], f"{where}.ciphertext") if "ciphertext" in d else None)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": ECU_IMAGE, "hardware_id": self.hardware_id,
                               "release_counter": self.release_counter,
                               "software_version": self.software_version, "release": self.release}
        if self.ciphertext is not None:
            out["ciphertext"] = self.ciphertext
        return out


@dataclass(frozen=True)
class ImageCiphertext:
    of: str

    @classmethod
    def parse(cls, data: Any, where: str) -> ImageCiphertext:
        d = _mapping(data, where, {"type", "of"})
        return cls(check_target_name(d["of"], f"{where}.of"))

    def to_dict(self) -> dict[str, Any]:
        return {"type": CIPHERTEXT, "of": self.of}


@dataclass(frozen=True)
class ImageDelta:
    of: str
    base_version: str
    base: Hashes

    @classmethod
    def parse(cls, data: Any, where: str) -> ImageDelta:
        d = _mapping(data, where, {"type", "of", "base_version", "base"})
        return cls(check_target_name(d["of"], f"{where}.of"), check_ident(d["base_version"], f"{where}.base_version"),
                   Hashes.parse(d["base"], f"{where}.base"))

    def to_dict(self) -> dict[str, Any]:
        return {"type": DELTA, "of": self.of, "base_version": self.base_version, "base": self.base.to_dict()}


@dataclass(frozen=True)
class ImageBaseline:
    vehicle_version: str

    @classmethod
    def parse(cls, data: Any, where: str) -> ImageBaseline:
        d = _mapping(data, where, {"type", "vehicle_version"})
        return cls(_text(d["vehicle_version"], f"{where}.vehicle_version"))

    def to_dict(self) -> dict[str, Any]:
        return {"type": BASELINE, "vehicle_version": self.vehicle_version}


# -- Director repository ---------------------------------------------------------------
@dataclass(frozen=True)
class DirectorDelta:
    target: str
    base: Hashes

    @classmethod
    def parse(cls, data: Any, where: str) -> DirectorDelta:
        d = _mapping(data, where, {"target", "base"})
        return cls(check_target_name(d["target"], f"{where}.target"), Hashes.parse(d["base"], f"{where}.base"))

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "base": self.base.to_dict()}


@dataclass(frozen=True)
class DirectorEncryption:
    target: str
    spec: EncryptionSpec

    @classmethod
    def parse(cls, data: Any, where: str) -> DirectorEncryption:
        d = _mapping(data, where, {"target", "spec"})
        return cls(check_target_name(d["target"], f"{where}.target"), EncryptionSpec.parse(d["spec"], f"{where}.spec"))

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "spec": self.spec.to_dict()}


#: the longest install script a Director target may carry for an independent-download ECU
MAX_INSTALL_SCRIPT = 16 * 1024


@dataclass(frozen=True)
class DirectorIndependent:
    """A Linux ECU's image it downloads itself: its SOME/IP instance and the install script handed to it."""

    instance: int
    install_script: str

    @classmethod
    def parse(cls, data: Any, where: str) -> DirectorIndependent:
        d = _mapping(data, where, {"instance", "install_script"})
        instance = d["instance"]
        if not isinstance(instance, int) or isinstance(instance, bool) or not 1 <= instance <= 0xFFFE:
            raise ValueError(f"{where}.instance: expected a SOME/IP instance id 1..0xFFFE, got {instance!r}")
        script = d["install_script"]
        if not isinstance(script, str) or not script.strip() or len(script) > MAX_INSTALL_SCRIPT:
            raise ValueError(f"{where}.install_script: expected the script text (1..{MAX_INSTALL_SCRIPT} chars)")
        return cls(instance, script)

    def to_dict(self) -> dict[str, Any]:
        return {"instance": self.instance, "install_script": self.install_script}


@dataclass(frozen=True)
class DirectorEcuImage:
    ecu: str
    hardware_id: str
    release_counter: int
    software_version: str
    release: str
    target_vehicle_version: str
    flash_script: str
    delta: DirectorDelta | None = None
    encryption: DirectorEncryption | None = None
    independent: DirectorIndependent | None = None

    @classmethod
    def parse(cls, data: Any, where: str) -> DirectorEcuImage:
        d = _mapping(data, where, {"type", "ecu", "hardware_id", "release_counter", "software_version", "release",
                                   "target_vehicle_version", "flash_script"}, {"delta", "encryption", "independent"})
        return cls(check_ident(d["ecu"], f"{where}.ecu"), check_ident(d["hardware_id"], f"{where}.hardware_id"),
                   check_counter(d["release_counter"], f"{where}.release_counter"),
                   check_ident(d["software_version"], f"{where}.software_version"),
                   check_ident(d["release"], f"{where}.release"),
                   _text(d["target_vehicle_version"], f"{where}.target_vehicle_version"),
                   check_ident(d["flash_script"], f"{where}.flash_script"),
                   DirectorDelta.parse(d["delta"], f"{where}.delta") if d.get("delta") is not None else None,
                   DirectorEncryption.parse(d["encryption"], f"{where}.encryption")
                   if d.get("encryption") is not None else None,
                   DirectorIndependent.parse(d["independent"], f"{where}.independent")
                   if d.get("independent") is not None else None)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": ECU_IMAGE, "ecu": self.ecu, "hardware_id": self.hardware_id,
                               "release_counter": self.release_counter, "software_version": self.software_version,
                               "release": self.release, "target_vehicle_version": self.target_vehicle_version,
                               "flash_script": self.flash_script}
        if self.delta is not None:
            out["delta"] = self.delta.to_dict()
        if self.encryption is not None:
            out["encryption"] = self.encryption.to_dict()
        if self.independent is not None:
            out["independent"] = self.independent.to_dict()
        return out


@dataclass(frozen=True)
class DirectorBaseline:
    target_vehicle_version: str
    #: the release's consent policy (None: the release does not say)
    mandatory: bool | None = None
    #: ISO 8601 UTC; only with ``mandatory`` true
    deadline: str | None = None

    @classmethod
    def parse(cls, data: Any, where: str) -> DirectorBaseline:
        d = _mapping(data, where, {"type", "target_vehicle_version"}, {"mandatory", "deadline"})
        mandatory = check_mandatory(d["mandatory"], f"{where}.mandatory") if "mandatory" in d else None
        deadline = check_deadline(d["deadline"], f"{where}.deadline") if "deadline" in d else None
        if deadline is not None and mandatory is not True:
            raise ValueError(f"{where}.deadline: a deadline applies to a mandatory update only (mandatory is "
                             f"{mandatory!r})")
        return cls(_text(d["target_vehicle_version"], f"{where}.target_vehicle_version"), mandatory, deadline)

    def to_dict(self) -> dict[str, Any]:
        return {"type": BASELINE, "target_vehicle_version": self.target_vehicle_version,
                **policy_fields(self.mandatory, self.deadline)}


# -- configuration change --------------------------------------------------------------
@dataclass(frozen=True)
class ImageConfig:
    release: str

    @classmethod
    def parse(cls, data: Any, where: str) -> ImageConfig:
        d = _mapping(data, where, {"type", "release"})
        return cls(check_ident(d["release"], f"{where}.release"))

    def to_dict(self) -> dict[str, Any]:
        return {"type": CONFIG, "release": self.release}


@dataclass(frozen=True)
class DirectorConfig:
    target_vehicle_version: str

    @classmethod
    def parse(cls, data: Any, where: str) -> DirectorConfig:
        d = _mapping(data, where, {"type", "target_vehicle_version"})
        return cls(_text(d["target_vehicle_version"], f"{where}.target_vehicle_version"))

    def to_dict(self) -> dict[str, Any]:
        return {"type": CONFIG, "target_vehicle_version": self.target_vehicle_version}


def config_document(values: Mapping[str, str]) -> bytes:
    """The bytes of a configuration change target (canonical: sorted keys, no spaces)."""
    return json.dumps({"format": 1, "values": dict(values)}, sort_keys=True, separators=(",", ":")).encode()


def parse_config_document(data: bytes, where: str) -> dict[str, str]:
    """The values of a configuration change target; ValueError naming what is wrong."""
    if len(data) > MAX_CONFIG_BYTES:
        raise ValueError(f"{where}: {len(data)} bytes, more than {MAX_CONFIG_BYTES}")
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise ValueError(f"{where}: not JSON: {e}") from None
    d = _mapping(doc, where, {"format", "values"})
    if d["format"] != 1:
        raise ValueError(f"{where}.format: only format 1 is understood, got {d['format']!r}")
    values = d["values"]
    if not isinstance(values, Mapping) or not values:
        raise ValueError(f"{where}.values: expected a non-empty object")
    out: dict[str, str] = {}
    for name, value in values.items():
        if not isinstance(name, str) or not _CONFIG_NAME.match(name):
            raise ValueError(f"{where}.values: not a configuration item name: {name!r}")
        out[name] = _text(value, f"{where}.values.{name}")
    return out
