"""An in-memory vehicle for the pure change core: ECUs holding DIDs, refusing as told (no bus)."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.errors import NegativeResponseError, OtaTimeoutError
from update_agent.remote_config.items import ConfigItem
from update_agent.uds.nrc import describe_nrc


@dataclass
class MemoryVehicle:
    """EcuAccess over dicts: ``values[(ecu, did)]``; ``refuse[(ecu, did)] = nrc`` refuses writes."""

    versions: dict[str, str]
    values: dict[tuple[str, int], bytes]
    refuse: dict[tuple[str, int], int] = field(default_factory=dict)
    #: writes accepted before ``refuse`` applies (default 0: refused at once)
    accept_first: dict[tuple[str, int], int] = field(default_factory=dict)
    #: ECUs that hear a broadcast but do not apply it
    deaf: set[str] = field(default_factory=set)
    #: ECUs that do not answer reads
    silent: set[str] = field(default_factory=set)
    log: list[tuple[str, ...]] = field(default_factory=list)

    def software_version(self, ecu: str) -> str:
        self.log.append(("version", ecu))
        return self.versions[ecu]

    def read(self, item: ConfigItem, ecu: str) -> bytes:
        self.log.append(("read", item.name, ecu))
        if ecu in self.silent:
            raise OtaTimeoutError(f"{ecu}: no response")
        return self.values[(ecu, item.did)]

    def write(self, item: ConfigItem, ecu: str, data: bytes) -> None:
        self.log.append(("write", item.name, ecu, data.hex()))
        nrc = self.refuse.get((ecu, item.did))
        accepted = self.accept_first.get((ecu, item.did), 0)
        if nrc is not None and accepted > 0:
            self.accept_first[(ecu, item.did)] = accepted - 1
        elif nrc is not None:
            raise NegativeResponseError(describe_nrc(nrc), service=0x2E, nrc=nrc)
        self.values[(ecu, item.did)] = data

    def broadcast(self, item: ConfigItem, data: bytes) -> None:
        self.log.append(("broadcast", item.name, data.hex()))
        for ecu in item.ecus:
            if ecu not in self.deaf:
                self.values[(ecu, item.did)] = data

    def writes(self) -> list[tuple[str, ...]]:
        return [entry for entry in self.log if entry[0] in ("write", "broadcast")]
