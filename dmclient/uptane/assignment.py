"""The verified result of a check: what to install on which ECU, and the vehicle version it leads to.

Everything in an :class:`Assignment` passed full verification (Director and Image
repository agree on every byte count and digest, hardware ids, release counters;
signatures and expiry of both repositories). :meth:`Assignment.download_order` gives
the targets in the form dmclient's download manager takes (``dmclient.order``), so what
gets downloaded is capped and hashed with exactly the verified values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dmclient.digests import Hashes
from dmclient.encryption import EncryptionSpec
from dmclient.uptane import custom


def target_url(base_url: str, name: str, hashes: Hashes) -> str:
    """Where a consistent-snapshot repository serves ``name``: ``dir/<sha256>.<basename>``.

    The same rule as python-tuf's ``Updater.download_target`` with
    ``prefix_targets_with_hash`` (first hash in sorted order: ``sha256``).
    """
    parent, sep, base = name.rpartition("/")
    return f"{base_url.rstrip('/')}/{parent}{sep}{hashes.sha256}.{base}"


@dataclass(frozen=True)
class DeltaAssignment:
    """A bsdiff4 patch from ``base`` (the image it was made from) to the assigned image."""

    target: str
    url: str
    length: int
    hashes: Hashes
    base: Hashes

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "url": self.url, "length": self.length, "hashes": self.hashes.to_dict(),
                "base": self.base.to_dict()}


@dataclass(frozen=True)
class EncryptionAssignment:
    """The image is served AES-256-GCM encrypted as ``target``; ``spec`` unwraps with the vehicle key."""

    target: str
    url: str
    spec: EncryptionSpec

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "url": self.url, "spec": self.spec.to_dict()}


@dataclass(frozen=True)
class IndependentAssignment:
    """The ECU downloads the image itself (independent download): not ordered from this dmclient."""

    #: the ECU's SOME/IP "OTA secondary" service instance
    instance: int
    #: the install script the gateway hands to the ECU's agent
    install_script: str

    def to_json(self) -> dict[str, Any]:
        return {"instance": self.instance, "install_script": self.install_script}


@dataclass(frozen=True)
class EcuAssignment:
    ecu: str
    #: the image's name in both repositories
    target: str
    #: where the image is served (the ciphertext when encrypted)
    url: str
    #: of the image itself (what gets installed)
    length: int
    hashes: Hashes
    release_counter: int
    hardware_id: str
    software_version: str
    release: str
    flash_script: str
    delta: DeltaAssignment | None = None
    encryption: EncryptionAssignment | None = None
    independent: IndependentAssignment | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"ecu": self.ecu, "target": self.target, "url": self.url, "length": self.length,
               "hashes": self.hashes.to_dict(), "release_counter": self.release_counter,
               "hardware_id": self.hardware_id, "software_version": self.software_version,
               "release": self.release, "flash_script": self.flash_script,
               "delta": self.delta.to_json() if self.delta else None,
               "encryption": self.encryption.to_json() if self.encryption else None}
        if self.independent is not None:
            out["independent"] = self.independent.to_json()
        return out

    def order_target(self) -> dict[str, Any]:
        """This image as a target of a dmclient download order (``dmclient.order.TargetSpec``)."""
        name = re.sub(r"[^A-Za-z0-9._:+-]", "_", f"{self.ecu}:{self.target.rpartition('/')[2]}")[:64]
        out: dict[str, Any] = {"name": name, "length": self.length, "hashes": self.hashes.to_dict(), "url": self.url}
        if self.encryption is not None:
            out["encryption"] = self.encryption.spec.to_dict()
        if self.delta is not None:
            out["delta"] = {"base": self.delta.base.to_dict(), "url": self.delta.url, "length": self.delta.length,
                            "hashes": self.delta.hashes.to_dict()}
        return out


@dataclass(frozen=True)
class BaselineAssignment:
    """The software baseline XML of the target vehicle version, verified and in the cache."""

    target: str
    length: int
    hashes: Hashes
    path: Path

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "length": self.length, "hashes": self.hashes.to_dict(), "path": str(self.path)}


@dataclass(frozen=True)
class ConfigAssignment:
    """The verified configuration change of the release (item -> value), for the update agent."""

    target: str
    length: int
    hashes: Hashes
    values: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "length": self.length, "hashes": self.hashes.to_dict(),
                "values": dict(self.values)}


@dataclass(frozen=True)
class Assignment:
    target_vehicle_version: str
    ecus: tuple[EcuAssignment, ...]
    baseline: BaselineAssignment
    config: ConfigAssignment | None = None
    #: the release's consent policy from the Director's signed baseline target (None: not said)
    mandatory: bool | None = None
    #: ISO 8601 UTC, after which a mandatory update proceeds at the next maintenance window
    deadline: str | None = None
    #: the Director targets.json exactly as verified, in the cache: what an independent-download ECU
    #: verifies itself (Uptane partial verification); only when an ECU downloads independently
    director_targets: BaselineAssignment | None = None

    def ecu(self, name: str) -> EcuAssignment | None:
        return next((e for e in self.ecus if e.ecu == name), None)

    def download_order(self, *, pin: str | None = None) -> dict[str, Any]:
        """``{"targets": [...], "pin": ...}`` for ``dmclient.order.Order.parse`` (independent-download ECUs
        fetch their images themselves: not in it)."""
        order: dict[str, Any] = {"targets": [e.order_target() for e in self.ecus if e.independent is None]}
        if pin is not None:
            order["pin"] = pin
        return order

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"target_vehicle_version": self.target_vehicle_version,
                               "ecus": [e.to_json() for e in self.ecus], "baseline": self.baseline.to_json()}
        if self.config is not None:
            out["config"] = self.config.to_json()
        if self.director_targets is not None:
            out["director_targets"] = self.director_targets.to_json()
        return {**out, **custom.policy_fields(self.mandatory, self.deadline)}


@dataclass(frozen=True)
class CheckResult:
    """The outcome of a check: an assignment, or None when there is nothing to do."""

    assignment: Assignment | None
    #: the vehicle version the manifest reported
    vehicle_version: str
    director_version: int
    image_version: int
    #: the reference time expiry was judged against (ISO-8601 UTC)
    reference_time: str

    def to_json(self) -> dict[str, Any]:
        return {"status": "update" if self.assignment else "nothing",
                "vehicle_version": self.vehicle_version,
                "assignment": self.assignment.to_json() if self.assignment else None,
                "director_version": self.director_version, "image_version": self.image_version,
                "reference_time": self.reference_time}
