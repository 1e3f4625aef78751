"""Uptane partial verification on a secondary: the Director targets metadata against the ECU's own root.

A Linux ECU that downloads its own image does not trust the gateway: before it downloads,
it checks the Director's ``targets.json`` the gateway forwarded (exactly as signed) against
its own copy of the Director root, as Uptane defines partial verification:

1. the metadata parses and is ``targets`` metadata;
2. it is signed by a threshold of the keys the ECU's Director root gives the targets role;
3. it has not expired at the reference time (an injected clock);
4. its version is not lower than the version the ECU accepted last (persisted by the
   caller): an older, validly signed targets file is a rollback;
5. it has a target of the ordered name, an ``ecu-image`` for THIS ECU (``custom.ecu``; the
   hardware id too when the ECU knows its own), whose length, hashes (every digest the
   order gives; SHA-256 always) and software version equal the order's, and whose
   release counter is not lower than the one the ECU installed last.

Each refusal raises the :mod:`dmclient.uptane.errors` class of the attack it detected,
naming the reason (SignatureError, FreezeError, RollbackError, PartialBundleError,
UnknownEcuError, WrongHardwareError, ArbitrarySoftwareError, InvalidMetadataError).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root, Targets

from dmclient.uptane import custom
from dmclient.uptane.errors import (
    ArbitrarySoftwareError,
    FreezeError,
    InvalidMetadataError,
    PartialBundleError,
    RollbackError,
    SignatureError,
    UnknownEcuError,
    WrongHardwareError,
)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Accepted:
    """What passed: the metadata version and the ECU image's Director ``custom``."""

    version: int
    expires: datetime
    target: str
    image: custom.DirectorEcuImage


def load_root(data: bytes, where: str = "Director root") -> Metadata[Root]:
    try:
        md = Metadata[Root].from_bytes(data)
    except (ValueError, TypeError, KeyError) as e:
        raise InvalidMetadataError(f"{where}: cannot parse: {e}", repository="director") from e
    if not isinstance(md.signed, Root):
        raise InvalidMetadataError(f"{where}: expected root metadata, found {md.signed.type}", repository="director")
    return md


class PartialVerifier:
    """Partial verification for one ECU (``ecu``: its name in the Director's targets)."""

    def __init__(self, director_root: bytes, *, ecu: str, hardware_id: str | None = None,
                 clock: Clock = utc_now) -> None:
        self.root = load_root(director_root)
        self.ecu = ecu
        self.hardware_id = hardware_id
        self.clock = clock

    def verify(self, director_targets: bytes, *, ecu: str, target: str, length: int, hashes: Mapping[str, str],
               software_version: str, last_version: int = 0, last_counter: int = 0) -> Accepted:
        """Check the metadata and the order (``ecu``, ``target``, ``length``, ``hashes``, ``software_version``)."""
        if ecu != self.ecu:
            raise UnknownEcuError(f"the order is for ECU {ecu!r}; this ECU is {self.ecu!r}", ecu=ecu)
        md = self._parse(director_targets)
        try:
            self.root.signed.verify_delegate(Targets.type, md.signed_bytes, md.signatures)
        except UnsignedMetadataError as e:
            threshold = self.root.signed.roles[Targets.type].threshold
            raise SignatureError(f"Director targets v{md.signed.version}: not signed by {threshold} of the targets "
                                 f"keys of this ECU's Director root v{self.root.signed.version} ({e})",
                                 repository="director") from None
        now = self.clock()
        if md.signed.is_expired(now):
            raise FreezeError(f"Director targets v{md.signed.version} expired at {md.signed.expires.isoformat()} "
                              f"(now {now.isoformat()})", repository="director")
        if md.signed.version < last_version:
            raise RollbackError(f"Director targets v{md.signed.version} is older than v{last_version} this ECU "
                                "accepted before", repository="director")
        image = self._image(md.signed, target)
        self._same(md.signed.targets[target].length, md.signed.targets[target].hashes, target, length, hashes)
        if image.software_version != software_version:
            raise ArbitrarySoftwareError(f"target {target}: the order says software version {software_version!r}, "
                                         f"the Director {image.software_version!r}", ecu=self.ecu)
        if image.release_counter < last_counter:
            raise RollbackError(f"target {target}: release counter {image.release_counter} is lower than "
                                f"{last_counter} installed before", ecu=self.ecu)
        return Accepted(md.signed.version, md.signed.expires, target, image)

    @staticmethod
    def _parse(data: bytes) -> Metadata[Targets]:
        try:
            md = Metadata[Targets].from_bytes(data)
        except (ValueError, TypeError, KeyError) as e:
            raise InvalidMetadataError(f"Director targets: cannot parse: {e}", repository="director") from e
        if not isinstance(md.signed, Targets):
            raise InvalidMetadataError(f"Director targets: expected targets metadata, found {md.signed.type}",
                                       repository="director")
        return md

    def _image(self, targets: Targets, name: str) -> custom.DirectorEcuImage:
        info = targets.targets.get(name)
        if info is None:
            raise PartialBundleError(f"the Director targets v{targets.version} have no target {name!r}",
                                     repository="director", ecu=self.ecu)
        where = f"Director target {name}: custom"
        try:
            custom.target_type(info.custom, where, (custom.ECU_IMAGE,))
            image = custom.DirectorEcuImage.parse(info.custom, where)
        except ValueError as e:
            raise InvalidMetadataError(str(e), repository="director", ecu=self.ecu) from e
        if image.ecu != self.ecu:
            raise UnknownEcuError(f"target {name} is for ECU {image.ecu!r}, not this ECU {self.ecu!r}", ecu=image.ecu)
        if self.hardware_id is not None and image.hardware_id != self.hardware_id:
            raise WrongHardwareError(f"target {name} is for hardware {image.hardware_id!r}; this ECU is "
                                     f"{self.hardware_id!r}", ecu=self.ecu)
        return image

    def _same(self, d_length: int, d_hashes: Mapping[str, str], name: str, length: int,
              hashes: Mapping[str, str]) -> None:
        if d_length != length:
            raise ArbitrarySoftwareError(f"target {name}: the order says {length} bytes, the Director {d_length}",
                                         ecu=self.ecu)
        if "sha256" not in d_hashes or "sha256" not in hashes:
            raise InvalidMetadataError(f"target {name}: no sha256 (Director: {sorted(d_hashes)}, order: "
                                       f"{sorted(hashes)})", repository="director", ecu=self.ecu)
        for algorithm, digest in sorted(hashes.items()):
            theirs = d_hashes.get(algorithm)
            if theirs is None or not hmac.compare_digest(str(digest), str(theirs)):
                raise ArbitrarySoftwareError(f"target {name}: {algorithm} of the order ({digest[:16]}...) is not the "
                                             f"Director's ({str(theirs)[:16] if theirs else 'none'}...)", ecu=self.ecu)
