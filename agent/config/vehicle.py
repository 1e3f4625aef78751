"""The vehicle configuration: CAN buses and the ECUs on them.

One YAML file describes the buses (python-can interface, channel, bitrates,
CAN FD) and the ECUs (ISO-TP addressing, timing, flash script, security
access, version DIDs, memory map). The same file drives the tester and, on
the bench, the simulated ECUs (each ECU's optional ``sim:`` section). Only
``interface`` and ``channel`` change between the bench and a board.
"""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.config.node import Node, load_yaml
from agent.errors import ConfigurationError

ADDRESSING_MODES = (
    "normal_11bit", "normal_29bit", "normal_fixed_29bit",
    "extended_11bit", "extended_29bit", "mixed_11bit", "mixed_29bit",
)
#: modes whose functional CAN id is built from a 29-bit prefix plus TA/SA
PREFIX_MODES = ("normal_fixed_29bit", "mixed_29bit")
DEFAULT_VERSION_DIDS = {
    "part_number": 0xF187,
    "software_version": 0xF189,
    "hardware_version": 0xF191,
    "serial_number": 0xF18C,
}
# can-isotp TransportLayer.Params we let the config set, with their types.
ISOTP_PARAM_TYPES: dict[str, type] = {
    "stmin": int, "blocksize": int, "tx_data_length": int, "tx_data_min_length": int,
    "tx_padding": int, "rx_flowcontrol_timeout": int, "rx_consecutive_frame_timeout": int,
    "override_receiver_stmin": float, "max_frame_size": int, "wftmax": int,
    "can_fd": bool, "bitrate_switch": bool, "rate_limit_enable": bool,
    "rate_limit_max_bitrate": int, "rate_limit_window_size": float,
    "listen_mode": bool,
}


@dataclass(frozen=True)
class BusConfig:
    name: str
    interface: str
    channel: str
    bitrate: int = 500_000
    fd: bool = False
    data_bitrate: int | None = None
    #: extra keyword arguments handed to ``can.Bus`` unchanged
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class IsoTpConfig:
    addressing: str = "normal_11bit"
    tx_id: int | None = None
    rx_id: int | None = None
    target_address: int | None = None
    source_address: int | None = None
    address_extension: int | None = None
    functional_id: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    #: "python" (can-isotp over python-can) or "kernel" (Linux CAN_ISOTP socket)
    stack: str = "python"

    @property
    def is_29bit(self) -> bool:
        return self.addressing.endswith("29bit")


@dataclass(frozen=True)
class TimingConfig:
    p2: float = 0.05  # s, server response time (default session)
    p2_star: float = 5.0  # s, extended response time after NRC 0x78
    request_timeout: float = 2.0  # s, a request that gets no final answer and no 0x78
    tester_present_interval: float = 2.0  # s, while a session must be kept
    transfer_retries: int = 2  # re-sends of a timed-out TransferData, same counter
    response_pending_limit: float = 120.0  # s, cap on a chain of NRC 0x78
    busy_repeat_delay: float = 0.1  # s before a request answered NRC 0x21 (busyRepeatRequest) is repeated
    busy_limit: float = 30.0  # s of NRC 0x21 answers to one request before it fails


@dataclass(frozen=True)
class SecurityConfig:
    level: int = 1  # the requestSeed sub-function (odd)
    algorithm: str = "update_agent.seedkey:xor_key"
    params: dict[str, Any] = field(default_factory=dict)

    def load(self) -> Callable[..., bytes]:
        return resolve_callable(self.algorithm)


@dataclass(frozen=True)
class MemoryRegion:
    name: str
    start: int
    size: int

    @property
    def end(self) -> int:
        return self.start + self.size

    def contains(self, address: int, length: int) -> bool:
        return self.start <= address and address + length <= self.end


@dataclass(frozen=True)
class MemoryConfig:
    address_bytes: int = 4
    length_bytes: int = 4
    data_format: int = 0x00  # RequestDownload dataFormatIdentifier (no compression/encryption)
    regions: tuple[MemoryRegion, ...] = ()

    def region_for(self, address: int, length: int) -> MemoryRegion | None:
        for region in self.regions:
            if region.contains(address, length):
                return region
        return None


@dataclass(frozen=True)
class EcuConfig:
    name: str
    bus: str
    isotp: IsoTpConfig
    timing: TimingConfig
    security: SecurityConfig
    memory: MemoryConfig
    flash_script: str
    banks: str = "single"  # "single" or "ab"
    version_dids: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_VERSION_DIDS))
    #: bench-only simulator settings, parsed by ``bench``; ``None`` on a real vehicle
    sim: Node | None = None


@dataclass(frozen=True)
class VersionFramesConfig:
    """Passive version collection: the DBC describing the ECUs' version broadcast frames."""

    dbc: Path  # resolved against the config file's directory
    listen: float = 1.0  # s to wait for every broadcasting ECU's frame


@dataclass(frozen=True)
class VehicleConfig:
    source: str
    buses: dict[str, BusConfig]
    ecus: dict[str, EcuConfig]
    #: ``version_frames:`` section; None when no ECU broadcasts its versions
    version_frames: VersionFramesConfig | None = None

    def ecu(self, name: str) -> EcuConfig:
        try:
            return self.ecus[name]
        except KeyError:
            known = ", ".join(sorted(self.ecus)) or "none"
            raise ConfigurationError(f"unknown ECU {name!r} (configured: {known})",
                                     source=self.source) from None

    def bus_of(self, ecu: EcuConfig) -> BusConfig:
        return self.buses[ecu.bus]


def resolve_callable(spec: str) -> Callable[..., Any]:
    """Import ``module:function``; raise ConfigurationError if it does not resolve."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigurationError(f"expected 'module:function', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigurationError(f"cannot import module {module_name!r}: {e}") from e
    target = getattr(module, attr, None)
    if not callable(target):
        raise ConfigurationError(f"{module_name!r} has no callable {attr!r}")
    return target  # type: ignore[no-any-return]


def load_vehicle_config(path: str | Path) -> VehicleConfig:
    """Load and validate a vehicle configuration file."""
    root = load_yaml(path)
    buses = {name: _bus(name, node) for name, node in root.children("buses")}
    ecus = {name: _ecu(name, node, buses) for name, node in root.children("ecus")}
    root.raw("bench", None)  # bench-wide settings, read by bench/
    frames = _version_frames(root.child("version_frames")) if root.has("version_frames") else None
    root.done()
    _check_unique_ids(root, ecus)
    return VehicleConfig(source=root.source, buses=buses, ecus=ecus, version_frames=frames)


def _version_frames(node: Node) -> VersionFramesConfig:
    dbc = Path(node.get("dbc", str))
    if not dbc.is_absolute():
        dbc = Path(node.source).parent / dbc
    if not dbc.is_file():
        raise node.error(f"DBC file {str(dbc)!r} does not exist", "dbc")
    cfg = VersionFramesConfig(dbc=dbc, listen=node.number("listen", 1.0, minimum=0.01, maximum=60.0))
    node.done()
    return cfg


def _bus(name: str, node: Node) -> BusConfig:
    fd = node.get("fd", bool, False)
    data_bitrate = node.integer("data_bitrate", None, minimum=1) if node.has("data_bitrate") else None
    if fd and data_bitrate is None:
        raise node.error("CAN FD needs data_bitrate", "data_bitrate")
    options = node.raw("options", {})
    if not isinstance(options, dict):
        raise node.error("expected a mapping of can.Bus keyword arguments", "options")
    bus = BusConfig(
        name=name,
        interface=node.get("interface", str),
        channel=str(node.raw("channel")),
        bitrate=node.integer("bitrate", 500_000, minimum=1000, maximum=1_000_000),
        fd=fd,
        data_bitrate=data_bitrate,
        options=dict(options),
    )
    node.done()
    return bus


def _opt_id(node: Node, key: str, maximum: int) -> int | None:
    return node.integer(key, None, minimum=0, maximum=maximum) if node.has(key) else None


def _isotp(node: Node) -> IsoTpConfig:
    mode = node.choice("addressing", ADDRESSING_MODES, "normal_11bit")
    id_max = 0x1FFFFFFF if mode.endswith("29bit") else 0x7FF
    cfg = IsoTpConfig(
        addressing=mode,
        tx_id=_opt_id(node, "tx_id", id_max),
        rx_id=_opt_id(node, "rx_id", id_max),
        target_address=_opt_id(node, "target_address", 0xFF),
        source_address=_opt_id(node, "source_address", 0xFF),
        address_extension=_opt_id(node, "address_extension", 0xFF),
        functional_id=_opt_id(node, "functional_id", id_max),
        params=_isotp_params(node.child("params", {})),
        stack=node.choice("stack", ("python", "kernel"), "python"),
    )
    node.done()
    needs: dict[str, tuple[str, ...]] = {
        "normal_11bit": ("tx_id", "rx_id"), "normal_29bit": ("tx_id", "rx_id"),
        "normal_fixed_29bit": ("target_address", "source_address"),
        "extended_11bit": ("tx_id", "rx_id", "target_address", "source_address"),
        "extended_29bit": ("tx_id", "rx_id", "target_address", "source_address"),
        "mixed_11bit": ("tx_id", "rx_id", "address_extension"),
        "mixed_29bit": ("target_address", "source_address", "address_extension"),
    }
    for key in needs[mode]:
        if getattr(cfg, key) is None:
            raise node.error(f"{mode} addressing needs {key}", key)
    return cfg


def _isotp_params(node: Node) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if "blocking_send" in node.data:
        raise node.error("blocking_send is always on (udsoncan's P2 timer needs it)", "blocking_send")
    for key in list(node.data):
        kind = ISOTP_PARAM_TYPES.get(key)
        if kind is None:
            raise node.error(f"unknown ISO-TP parameter (known: {', '.join(sorted(ISOTP_PARAM_TYPES))})", key)
        params[key] = node.get(key, kind)
    stmin = params.get("stmin", 0)
    if not (0 <= stmin <= 0x7F or 0xF1 <= stmin <= 0xF9):
        raise node.error("must be 0..0x7F (ms) or 0xF1..0xF9 (100..900 us)", "stmin")
    if not 0 <= params.get("blocksize", 0) <= 0xFF:
        raise node.error("must be 0..255", "blocksize")
    if params.get("tx_data_length", 8) not in (8, 12, 16, 20, 24, 32, 48, 64):
        raise node.error("must be one of 8, 12, 16, 20, 24, 32, 48, 64", "tx_data_length")
    return params


def _timing(node: Node) -> TimingConfig:
    t = TimingConfig(
        p2=node.number("p2", 0.05, minimum=0.001, maximum=60),
        p2_star=node.number("p2_star", 5.0, minimum=0.01, maximum=600),
        request_timeout=node.number("request_timeout", 2.0, minimum=0.01, maximum=600),
        tester_present_interval=node.number("tester_present_interval", 2.0, minimum=0.1, maximum=60),
        transfer_retries=node.integer("transfer_retries", 2, minimum=0, maximum=10),
        response_pending_limit=node.number("response_pending_limit", 120.0, minimum=0.1, maximum=3600),
        busy_repeat_delay=node.number("busy_repeat_delay", 0.1, minimum=0.001, maximum=60),
        busy_limit=node.number("busy_limit", 30.0, minimum=0, maximum=3600),
    )
    node.done()
    if t.request_timeout < t.p2:
        raise node.error(f"request_timeout ({t.request_timeout}) is shorter than p2 ({t.p2})",
                         "request_timeout")
    return t


def _security(node: Node) -> SecurityConfig:
    level = node.integer("level", 1, minimum=1, maximum=0x7D)
    if level % 2 == 0:
        raise node.error("requestSeed levels are odd (0x01, 0x03, ...)", "level")
    algorithm = node.get("algorithm", str, "update_agent.seedkey:xor_key")
    try:
        resolve_callable(algorithm)
    except ConfigurationError as e:
        raise node.error(e.reason, "algorithm") from e
    params = node.raw("params", {})
    if not isinstance(params, dict):
        raise node.error("expected a mapping", "params")
    node.done()
    return SecurityConfig(level=level, algorithm=algorithm, params=dict(params))


def _region(node: Node) -> MemoryRegion:
    region = MemoryRegion(
        name=node.get("name", str),
        start=node.integer("start", minimum=0, maximum=0xFFFFFFFFFF),
        size=node.integer("size", minimum=1, maximum=0xFFFFFFFFFF),
    )
    node.done()
    return region


def _memory(node: Node) -> MemoryConfig:
    mem = MemoryConfig(
        address_bytes=node.integer("address_bytes", 4, minimum=1, maximum=5),
        length_bytes=node.integer("length_bytes", 4, minimum=1, maximum=4),
        data_format=node.integer("data_format", 0, minimum=0, maximum=0xFF),
        regions=tuple(node.items("regions", _region)),
    )
    node.done()
    if not mem.regions:
        raise node.error("at least one writable region is needed", "regions")
    ordered = sorted(mem.regions, key=lambda r: r.start)
    for a, b in itertools.pairwise(ordered):
        if b.start < a.end:
            raise node.error(f"regions {a.name!r} and {b.name!r} overlap", "regions")
    limit = 1 << (8 * mem.address_bytes)
    for r in mem.regions:
        if r.end > limit:
            raise node.error(f"region {r.name!r} does not fit in {mem.address_bytes} address bytes",
                             "regions")
    return mem


def _ecu(name: str, node: Node, buses: dict[str, BusConfig]) -> EcuConfig:
    bus = node.get("bus", str)
    if bus not in buses:
        raise node.error(f"unknown bus {bus!r} (configured: {', '.join(sorted(buses)) or 'none'})", "bus")
    dids_node = node.child("version_dids", {})
    dids = dict(DEFAULT_VERSION_DIDS) if not dids_node.data else {}
    for key in list(dids_node.data):
        dids[key] = dids_node.integer(key, minimum=0, maximum=0xFFFF)
    sim = node.child("sim") if node.has("sim") else None
    ecu = EcuConfig(
        name=name,
        bus=bus,
        isotp=_isotp(node.child("isotp")),
        timing=_timing(node.child("timing", {})),
        security=_security(node.child("security", {})),
        memory=_memory(node.child("memory")),
        flash_script=node.get("flash_script", str),
        banks=node.choice("banks", ("single", "ab"), "single"),
        version_dids=dids,
        sim=sim,
    )
    node.done()
    if buses[bus].fd is False and ecu.isotp.params.get("tx_data_length", 8) > 8:
        raise node.error(f"tx_data_length > 8 needs a CAN FD bus ({bus} is classic CAN)",
                         "isotp.params.tx_data_length")
    return ecu


def _check_unique_ids(root: Node, ecus: dict[str, EcuConfig]) -> None:
    seen: dict[tuple[str, int, int | None], str] = {}
    for ecu in ecus.values():
        for can_id in (ecu.isotp.tx_id, ecu.isotp.rx_id):
            if can_id is None:
                continue
            key = (ecu.bus, can_id, ecu.isotp.target_address if ecu.isotp.addressing.startswith("ext")
                   else ecu.isotp.address_extension)
            other = seen.get(key)
            if other and other != ecu.name:
                raise root.error(f"CAN id {can_id:#x} is used by both {other!r} and {ecu.name!r}",
                                 f"ecus.{ecu.name}.isotp")
            seen[key] = ecu.name
