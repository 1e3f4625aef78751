"""A Director repository for the Linux ECU tests, signed with the bench's own TUF code.

:class:`DirectorKit` makes a Director root (the ECU's trust anchor) and publishes targets
metadata versions with :class:`bench.repository.tufrepo.TufRepository`, the code the bench
Director signs with, so the ECU checks metadata made exactly as on the bench.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuf.api.metadata import TargetFile

from bench.repository.keys import KeyRing
from bench.repository.tufrepo import TufRepository, init_root
from dmclient.uptane import custom
from update_agent.linux_ecu.client import DownloadOrder

ECU = "ivi"
HARDWARE = "IVI-0001"


@dataclass(frozen=True)
class Image:
    name: str
    data: bytes
    version: str
    counter: int
    ecu: str = ECU

    @property
    def hashes(self) -> dict[str, str]:
        return {"sha256": hashlib.sha256(self.data).hexdigest(), "sha512": hashlib.sha512(self.data).hexdigest()}

    def target(self) -> TargetFile:
        c = custom.DirectorEcuImage(ecu=self.ecu, hardware_id=HARDWARE, release_counter=self.counter,
                                    software_version=self.version, release=f"r-{self.version}",
                                    target_vehicle_version=f"BV {self.version}", flash_script="ab_slot")
        return TargetFile(length=len(self.data), hashes=self.hashes, path=self.name,
                          unrecognized_fields={"custom": c.to_dict()})


class DirectorKit:
    def __init__(self, directory: Path) -> None:
        self.keys = KeyRing.generate(directory / "keys")
        self.root = init_root(directory / "roots", self.keys)
        self.root_file = directory / "roots" / "root.json"
        self.repo = TufRepository(directory / "metadata", directory / "roots", self.keys)

    def publish(self, *images: Image, extra: Mapping[str, TargetFile] | None = None) -> bytes:
        """A new targets version naming ``images``: the bytes exactly as signed."""
        self.repo.publish({**{i.name: i.target() for i in images}, **(extra or {})})
        return self.repo.file(f"{self.repo.targets.signed.version}.targets.json").read_bytes()


def order_for(image: Image, targets: bytes, *, campaign: str = "c1", url: str = "https://127.0.0.1:1/files/x",
              **more: Any) -> DownloadOrder:
    fields: dict[str, Any] = {"campaign_id": campaign, "ecu": image.ecu, "target": image.name, "url": url,
                              "length": len(image.data), "hashes": image.hashes, "software_version": image.version,
                              "director_targets": targets}
    fields.update(more)
    return DownloadOrder(**fields)
