"""The configuration items file (``configs/bench-config-items.yaml``), validated against the vehicle.

.. code-block:: yaml

    dbc: bench-vehicle.dbc              # broadcast messages; default: the vehicle's version_frames.dbc
    items:
      drive_mode:
        description: Powertrain calibration set
        method: diagnostic              # UDS WriteDataByIdentifier, one ECU at a time
        did: 0xF1A0
        session: extended               # default | extended | programming
        security: true                  # SecurityAccess at the ECU's configured level first (or a level)
        encoding: {type: enum, size: 1, values: {eco: 0, normal: 1, sport: 2}}
        ecus:
          engine: {min_version: 1.0.0}  # the software version (F189) the ECU needs at least
      comfort_lights:
        method: broadcast               # one DBC message, every ECU concerned applies it at once
        message: OTA_CONFIG_BROADCAST
        signal: ComfortLights
        read_back: {did: 0xF1B0}        # how each ECU is read back to confirm (UDS 0x22)
        encoding: {type: bool}
        ecus: {brake: {min_version: 3.4.0}, body: {min_version: 2.0.0}}

A diagnostic item is read back from its own DID unless ``read_back.did`` says
otherwise. Bad input stops with the file, the dotted key and the reason.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from agent.config.node import Node, load_yaml
from agent.config.vehicle import VehicleConfig
from agent.errors import ConfigurationError
from update_agent.remote_config.codec import TYPES, Encoding

ENV_ITEMS = "OTA_CONFIG_ITEMS"
PACKAGED_ITEMS = "bench-config-items.yaml"
METHODS = ("diagnostic", "broadcast")
SESSIONS = {"default": 0x01, "programming": 0x02, "extended": 0x03}
_VERSION_PART = re.compile(r"\d+|[^\d.]+")


@dataclass(frozen=True)
class BroadcastSpec:
    message: str
    signal: str


@dataclass(frozen=True)
class ConfigItem:
    name: str
    method: str
    encoding: Encoding
    #: ECU name -> minimum software version
    ecus: dict[str, str]
    #: DID read back to confirm (and written, for a diagnostic item)
    did: int
    session: int = SESSIONS["extended"]
    #: requestSeed level; None: no security access; 0: the ECU's configured level
    security_level: int | None = 0
    broadcast: BroadcastSpec | None = None
    description: str = ""

    @property
    def is_broadcast(self) -> bool:
        return self.method == "broadcast"


@dataclass(frozen=True)
class Catalog:
    source: str
    items: dict[str, ConfigItem]
    dbc: Path | None = None

    def item(self, name: str) -> ConfigItem:
        try:
            return self.items[name]
        except KeyError:
            raise ConfigurationError(f"unknown configuration item {name!r} (items: {', '.join(self.items)})",
                                     source=self.source) from None

    def __iter__(self) -> Iterator[ConfigItem]:
        return iter(self.items.values())


def items_path(option: str | os.PathLike[str] | None = None) -> Path:
    """The items file: the option, else ``$OTA_CONFIG_ITEMS``, else the bench items shipped in ``configs``."""
    from agent.config.locate import config_file

    return config_file(option, ENV_ITEMS, PACKAGED_ITEMS)


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Order software versions part by part: numbers as numbers (1.10.0 > 1.9.0), the rest as text."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in _VERSION_PART.findall(version))


def at_least(have: str, need: str) -> bool:
    return version_key(have) >= version_key(need)


def load_items(path: str | Path, vehicle: VehicleConfig) -> Catalog:
    """Load and validate an items file for ``vehicle`` (ECUs exist, DBC messages and signals exist)."""
    root = load_yaml(path)
    dbc: Path | None = None
    if root.has("dbc"):
        dbc = Path(root.get("dbc", str))
        if not dbc.is_absolute():
            dbc = Path(root.source).parent / dbc
        if not dbc.is_file():
            raise root.error(f"DBC file {str(dbc)!r} does not exist", "dbc")
    elif vehicle.version_frames is not None:
        dbc = vehicle.version_frames.dbc
    items = {name: _item(name, node, vehicle) for name, node in root.children("items")}
    root.done()
    catalog = Catalog(source=root.source, items=items, dbc=dbc)
    if any(item.is_broadcast for item in items.values()):
        from update_agent.remote_config.broadcast import check_catalog  # cantools: only when used

        check_catalog(catalog)
    return catalog


def _encoding(node: Node) -> Encoding:
    kind = node.choice("type", TYPES)
    size = node.integer("size", 1, minimum=1, maximum=64 if kind == "hex" else 8)
    values: dict[str, int] = {}
    if kind == "enum":
        values_node = node.child("values")
        for key in list(values_node.data):
            values[str(key)] = values_node.integer(key, minimum=0, maximum=(1 << (8 * size)) - 1)
        values_node.done()
        if not values:
            raise node.error("an enum needs at least one name", "values")
        if len(set(values.values())) != len(values):
            raise node.error("two names share a number", "values")
    enc = Encoding(type=kind, size=size, values=values,
                   minimum=node.integer("minimum", 0, minimum=0) if kind == "uint" else 0,
                   maximum=node.integer("maximum", minimum=0) if kind == "uint" and node.has("maximum") else None)
    node.done()
    if enc.maximum is not None and enc.maximum < enc.minimum:
        raise node.error(f"maximum {enc.maximum} is below minimum {enc.minimum}", "maximum")
    return enc


def _security(node: Node) -> int | None:
    raw = node.raw("security", True)
    if raw is True:
        return 0
    if raw is False:
        return None
    level = node.integer("security", minimum=1, maximum=0x7D)
    if level % 2 == 0:
        raise node.error("requestSeed levels are odd (0x01, 0x03, ...)", "security")
    return level


def _item(name: str, node: Node, vehicle: VehicleConfig) -> ConfigItem:
    method = node.choice("method", METHODS)
    ecus: dict[str, str] = {}
    for ecu, sub in node.children("ecus"):
        if ecu not in vehicle.ecus:
            raise node.error(f"unknown ECU {ecu!r} (configured: {', '.join(vehicle.ecus)})", f"ecus.{ecu}")
        ecus[ecu] = str(sub.raw("min_version", "0"))
        sub.done()
    if not ecus:
        raise node.error("at least one ECU", "ecus")
    read_back = node.child("read_back", {})
    read_did = read_back.integer("did", minimum=0, maximum=0xFFFF) if read_back.has("did") else None
    read_back.done()
    broadcast: BroadcastSpec | None = None
    if method == "diagnostic":
        did = node.integer("did", minimum=0, maximum=0xFFFF)
        if read_did is not None and read_did != did:
            raise node.error("a diagnostic item is read back from the DID it writes", "read_back.did")
    else:
        if node.has("did"):
            raise node.error("a broadcast item has no DID to write; its read-back DID is read_back.did", "did")
        if read_did is None:
            raise node.error("a broadcast item needs read_back.did to confirm each ECU", "read_back.did")
        did = read_did
        broadcast = BroadcastSpec(message=node.get("message", str), signal=node.get("signal", str))
    item = ConfigItem(
        name=name, method=method, encoding=_encoding(node.child("encoding")), ecus=ecus, did=did,
        session=SESSIONS[node.choice("session", tuple(SESSIONS), "extended")],
        security_level=_security(node), broadcast=broadcast,
        description=node.get("description", str, ""),
    )
    node.done()
    return item
