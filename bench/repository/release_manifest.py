"""The release manifest: what the builder tells the Director about a release.

Written by ``otactl release build`` next to the Image repository metadata
(``releases/<release>.json``) and read by the Director to make a vehicle's targets, so
the Director never parses the Image repository's metadata. It holds no secrets (content
keys of encrypted images are in ``content-keys/``)::

    {"format": 1, "release": "bv-1.1.0", "target_vehicle_version": "BV OS D 1.1.0",
     "baseline": {"target": "baselines/bv-1.1.0.xml", "length": 1973, "hashes": {...}},
     "images": [{"ecu": "engine", "target": "engine/engine-1.1.0.hex", "length": 4892, "hashes": {...},
                 "hardware_id": "ENG-4711", "release_counter": 2, "software_version": "1.1.0",
                 "flash_script": "single_bank",
                 "deltas": [{"target": "engine/engine-1.0.0-to-1.1.0.bsdiff", "length": 2550, "hashes": {...},
                             "base_version": "1.0.0", "base": {"sha256": "...", "sha512": "..."}}],
                 "ciphertext": null}],          # or {"target": ..., "length": ..., "hashes": ...}
     "config": {"target": "config/bv-1.1.0.json", "length": 52, "hashes": {...},     # optional
                "values": {"drive_mode": "sport"}},   # what the target says: the Director compares it with
                                                      # the configuration a vehicle manifest reports
     # a configuration-only release: "images": [] and a "config"; target_vehicle_version is the one it applies to
     "mandatory": true, "deadline": "2026-12-01T00:00:00Z"}   # optional: the release's consent policy
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.errors import ConfigurationError
from dmclient.digests import Hashes
from dmclient.uptane import custom

FORMAT = 1


@dataclass(frozen=True)
class FileRef:
    """A target of the Image repository: name, length, digests."""

    target: str
    length: int
    hashes: Hashes

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "length": self.length, "hashes": self.hashes.to_dict()}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> FileRef:
        return cls(str(d["target"]), int(d["length"]), Hashes.parse(d["hashes"], "hashes"))


@dataclass(frozen=True)
class ReleaseDelta:
    patch: FileRef
    base_version: str
    base: Hashes

    def to_json(self) -> dict[str, Any]:
        return {**self.patch.to_json(), "base_version": self.base_version, "base": self.base.to_dict()}


@dataclass(frozen=True)
class ReleaseImage:
    ecu: str
    file: FileRef
    hardware_id: str
    release_counter: int
    software_version: str
    flash_script: str
    deltas: tuple[ReleaseDelta, ...] = ()
    ciphertext: FileRef | None = None
    #: a Linux ECU's image it downloads itself: the install script handed to it (None: a flash image)
    install_script: str | None = None

    @property
    def target(self) -> str:
        return self.file.target

    def to_json(self) -> dict[str, Any]:
        return {"ecu": self.ecu, **self.file.to_json(), "hardware_id": self.hardware_id,
                "release_counter": self.release_counter, "software_version": self.software_version,
                "flash_script": self.flash_script, "deltas": [d.to_json() for d in self.deltas],
                "ciphertext": self.ciphertext.to_json() if self.ciphertext else None,
                **({"install_script": self.install_script} if self.install_script is not None else {})}

    @classmethod
    def from_json(cls, i: Mapping[str, Any]) -> ReleaseImage:
        return cls(str(i["ecu"]), FileRef.from_json(i), str(i["hardware_id"]), int(i["release_counter"]),
                   str(i["software_version"]), str(i["flash_script"]),
                   tuple(ReleaseDelta(FileRef.from_json(d), str(d["base_version"]), Hashes.parse(d["base"], "base"))
                         for d in i["deltas"]),
                   FileRef.from_json(i["ciphertext"]) if i.get("ciphertext") else None,
                   str(i["install_script"]) if i.get("install_script") is not None else None)


@dataclass(frozen=True)
class ReleaseManifest:
    release: str
    target_vehicle_version: str
    baseline: FileRef
    images: tuple[ReleaseImage, ...]
    #: the configuration change target, when the release has one
    config: FileRef | None = None
    #: the release's consent policy (None: the release does not say); deadline ISO 8601 UTC
    mandatory: bool | None = None
    deadline: str | None = None
    #: the values of the configuration change (item -> value)
    config_values: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = {"format": FORMAT, "release": self.release, "target_vehicle_version": self.target_vehicle_version,
               "baseline": self.baseline.to_json(), "images": [i.to_json() for i in self.images]}
        if self.config is not None:
            out["config"] = {**self.config.to_json(), "values": dict(self.config_values)}
        return {**out, **custom.policy_fields(self.mandatory, self.deadline)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str) -> ReleaseManifest:
        try:
            if data["format"] != FORMAT:
                raise ValueError(f"format {data['format']!r} is not {FORMAT}")
            return cls(str(data["release"]), str(data["target_vehicle_version"]), FileRef.from_json(data["baseline"]),
                       tuple(ReleaseImage.from_json(i) for i in data["images"]),
                       FileRef.from_json(data["config"]) if data.get("config") else None,
                       custom.check_mandatory(data["mandatory"], "mandatory") if "mandatory" in data else None,
                       custom.check_deadline(data["deadline"], "deadline") if "deadline" in data else None,
                       {str(k): str(v) for k, v in (data.get("config") or {}).get("values", {}).items()})
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigurationError(f"malformed release manifest: {e!r}", source=source) from e

    @classmethod
    def load(cls, path: Path) -> ReleaseManifest:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ConfigurationError(f"cannot read release manifest: {e}", source=str(path)) from e
        return cls.from_json(data, str(path))

    def image(self, ecu: str) -> ReleaseImage | None:
        return next((i for i in self.images if i.ecu == ecu), None)

    @property
    def configuration_only(self) -> bool:
        """A configuration change and no ECU image: ``target_vehicle_version`` is the version it applies to."""
        return not self.images and self.config is not None


def load_release(image_dir: Path, release_id: str) -> ReleaseManifest | None:
    """The release manifest ``release_id`` of the Image repository in ``image_dir``, or None."""
    path = image_dir / "releases" / f"{release_id}.json"
    return ReleaseManifest.load(path) if path.is_file() else None
