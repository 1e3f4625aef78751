"""The ``sim:`` section of an ECU: what the bench bootloader simulates, validated.

Every key is read with the :class:`~agent.config.node.Node` helpers, so a bad
value stops the simulator with the file, the dotted key and the reason, and an
unknown key (a typo in a fault knob) is an error, never silently ignored.

.. code-block:: yaml

    sim:
      part_number: ENG-4711          # F187 (required)
      software_version: 1.0.0        # version inside the initial image (required)
      hardware_version: H1.0         # F191
      serial_number: ENG0000001      # F18C
      vin: BENCHVIN000000001         # F190, 17 characters
      boot_marker: BOOT              # F189 while no valid application is present
      initial_image_size: 65536      # bytes of the image written on first start
      max_block_length: 0x802        # maxNumberOfBlockLength (whole 0x36 request)
      stmin: 0                       # STmin the ECU requests in its flow control
      blocksize: 0                   # block size the ECU requests
      session_timeout: 5.0           # S3, s
      p2: 0.05                       # advertised in 0x50 (default: timing.p2)
      p2_star: 5.0                   # advertised in 0x50 (default: timing.p2_star)
      erase_time: 0.5                # s the erase routine takes
      response_pending_interval: 1.0 # s between NRC 0x78 (< p2_star)
      reset_time: 0.0                # s the ECU is deaf after 0x11
      security: {max_attempts: 3, lockout_time: 10.0, seed_length: 4}
      config_dids:
        - {name: variant, did: 0xF1A0, size: 4, initial: "00000001"}
      version_frames: {message: ENGINE_VERSION, period: 0.1}  # see bench.version_broadcast
      faults:
        drop_response: {service: 0x36, count: 5, times: 1}
        pending_storm: {service: 0x36, count: 3, pendings: 40, times: 1}  # 40 NRC 0x78 before the answer
        nrc_on_block: {block: 3, nrc: 0x72, times: always}
        reset_mid_transfer: {block: 10}
        erase_time: 12.0             # or {seconds: 12.0, times: 2}
        wrong_crc: true              # or {times: 2}
        refuse_security: true
        preconditions_fail: true
        refuse_config_write: {nrc: 0x22, times: 1}  # WriteDataByIdentifier of a configuration DID
        refuse_request: {service: 0x28, nrc: 0x22, count: 1, times: 1}  # refused, not carried out
        ignore_config_broadcast: true  # or {times: N}: the broadcast is heard but not applied

Every fault knob fires ``times`` times (default 1, or ``always``), so a test
can check both the error and a bounded retry that then succeeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.config.node import Node
from agent.config.vehicle import EcuConfig
from agent.errors import ConfigurationError
from bench.appimage import HEADER

if TYPE_CHECKING:
    from bench.version_broadcast import VersionFramesSim

DEFAULT_BOOT_MARKER = "BOOT"
DEFAULT_IMAGE_SIZE = 64 * 1024
DEFAULT_MAX_BLOCK_LENGTH = 0x0802
DEFAULT_VIN = "SIMVIN00000000000"
#: services a drop_response fault may name: the ones the simulator answers
SIMULATED_SERVICES = frozenset({0x10, 0x11, 0x22, 0x27, 0x28, 0x2E, 0x31, 0x34, 0x36, 0x37, 0x3E, 0x85})
#: NRCs a refused configuration write may carry: conditionsNotCorrect, requestOutOfRange, securityAccessDenied
CONFIG_WRITE_NRCS = frozenset({0x22, 0x31, 0x33})
#: DIDs the simulator serves itself; a configuration DID may not reuse them
RESERVED_DIDS = frozenset({0xF180, 0xF186, 0xF187, 0xF189, 0xF18C, 0xF190, 0xF191, 0xF15A})


@dataclass(frozen=True)
class ConfigDid:
    """A configuration DID: readable always, writable with security, persisted."""

    name: str
    did: int
    size: int
    initial: bytes


@dataclass(frozen=True)
class SecuritySim:
    max_attempts: int = 3  # invalid keys before NRC 0x36 and the lock-out
    lockout_time: float = 10.0  # s of NRC 0x37 after the attempts are used up
    seed_length: int = 4


@dataclass(frozen=True)
class DropResponse:
    """Swallow the final response of requests ``count``, ``count+1``... of ``service``."""

    service: int
    count: int
    times: int | None  # None: every request from ``count`` on


@dataclass(frozen=True)
class PendingStorm:
    """Answer requests ``count``, ``count+1``... of ``service`` with ``pendings`` NRC 0x78 first.

    The request is carried out at once; its final answer follows the 0x78s, one every
    ``response_pending_interval``, as an ECU that is slow to confirm (a loaded flash
    driver, a busy core). Past the tester's ``timing.response_pending_limit`` the chain
    is a hung ECU to the tester.
    """

    service: int
    count: int
    pendings: int
    times: int | None


@dataclass(frozen=True)
class NrcOnBlock:
    """Answer the ``block``-th TransferData of a transfer with ``nrc``."""

    block: int
    nrc: int
    times: int | None


@dataclass(frozen=True)
class ResetMidTransfer:
    """Reset (no answer) when the ``block``-th TransferData of a transfer arrives."""

    block: int
    times: int | None


@dataclass(frozen=True)
class SlowErase:
    seconds: float
    times: int | None


@dataclass(frozen=True)
class Switch:
    """An on/off fault that fires ``times`` times (None: always)."""

    times: int | None


@dataclass(frozen=True)
class RefuseConfigWrite:
    """Answer WriteDataByIdentifier of a configuration DID (``did``, or any) with ``nrc``."""

    nrc: int
    did: int | None
    times: int | None


@dataclass(frozen=True)
class RefuseRequest:
    """Refuse requests ``count``, ``count+1``... of ``service`` with ``nrc`` (physical or functional:
    an ECU that will not go quiet, say), without carrying them out."""

    service: int
    nrc: int
    count: int
    times: int | None


@dataclass(frozen=True)
class ConfigBroadcastSim:
    """``sim.config_broadcast``: the DBC message the ECU applies, and which signal sets which DID."""

    #: None: the vehicle's DBC (``version_frames.dbc``)
    dbc: Path | None
    message: str
    #: DBC signal name -> configuration DID name
    signals: dict[str, str]


@dataclass(frozen=True)
class FaultConfig:
    drop_response: tuple[DropResponse, ...] = ()
    pending_storm: tuple[PendingStorm, ...] = ()
    nrc_on_block: tuple[NrcOnBlock, ...] = ()
    reset_mid_transfer: tuple[ResetMidTransfer, ...] = ()
    erase_time: SlowErase | None = None
    wrong_crc: Switch | None = None
    refuse_security: Switch | None = None
    preconditions_fail: Switch | None = None
    refuse_config_write: tuple[RefuseConfigWrite, ...] = ()
    ignore_config_broadcast: Switch | None = None
    refuse_request: tuple[RefuseRequest, ...] = ()


@dataclass(frozen=True)
class SimConfig:
    part_number: str
    software_version: str
    hardware_version: str = "H1.0"
    serial_number: str = "SIM0000001"
    vin: str = DEFAULT_VIN
    boot_marker: str = DEFAULT_BOOT_MARKER
    initial_image_size: int = DEFAULT_IMAGE_SIZE
    max_block_length: int = DEFAULT_MAX_BLOCK_LENGTH
    stmin: int = 0
    blocksize: int = 0
    session_timeout: float = 5.0
    p2: float = 0.05
    p2_star: float = 5.0
    erase_time: float = 0.5
    response_pending_interval: float = 1.0
    reset_time: float = 0.0
    security: SecuritySim = field(default_factory=SecuritySim)
    config_dids: tuple[ConfigDid, ...] = ()
    config_broadcast: ConfigBroadcastSim | None = None
    faults: FaultConfig = field(default_factory=FaultConfig)
    #: periodic version frame while the application runs (see :mod:`bench.version_broadcast`)
    version_frames: VersionFramesSim | None = None


def parse_sim(ecu: EcuConfig) -> SimConfig:
    """Validate ``ecu.sim``; raise ConfigurationError naming file, key and reason."""
    node = ecu.sim
    if node is None:
        raise ConfigurationError(f"ECU {ecu.name!r} has no sim: section, so it cannot be simulated",
                                 key=f"ecus.{ecu.name}.sim")
    first = ecu.memory.regions[0]
    sim = SimConfig(
        part_number=_ascii(node, "part_number", maximum=16),
        software_version=_ascii(node, "software_version", maximum=16),
        hardware_version=_ascii(node, "hardware_version", "H1.0"),
        serial_number=_ascii(node, "serial_number", "SIM0000001"),
        vin=_ascii(node, "vin", DEFAULT_VIN, exact=17),
        boot_marker=_ascii(node, "boot_marker", DEFAULT_BOOT_MARKER),
        initial_image_size=node.integer("initial_image_size", min(DEFAULT_IMAGE_SIZE, first.size),
                                        minimum=HEADER.size, maximum=first.size),
        max_block_length=node.integer("max_block_length", DEFAULT_MAX_BLOCK_LENGTH, minimum=3,
                                      maximum=0xFFFF),
        stmin=_stmin(node),
        blocksize=node.integer("blocksize", 0, minimum=0, maximum=0xFF),
        session_timeout=node.number("session_timeout", 5.0, minimum=0.01, maximum=3600),
        p2=node.number("p2", ecu.timing.p2, minimum=0.001, maximum=65.535),
        p2_star=node.number("p2_star", ecu.timing.p2_star, minimum=0.01, maximum=655.35),
        erase_time=node.number("erase_time", 0.5, minimum=0, maximum=3600),
        response_pending_interval=node.number("response_pending_interval", 1.0, minimum=0.001,
                                              maximum=655.35),
        reset_time=node.number("reset_time", 0.0, minimum=0, maximum=60),
        security=_security(node.child("security", {})),
        config_dids=tuple(node.items("config_dids", _config_did, [])),
        config_broadcast=_config_broadcast(node.child("config_broadcast")) if node.has("config_broadcast") else None,
        faults=_faults(node.child("faults", {})),
        version_frames=_version_frames(node) if node.has("version_frames") else None,
    )
    node.done()
    if sim.response_pending_interval >= sim.p2_star:
        raise node.error(f"must be shorter than p2_star ({sim.p2_star} s), or the tester times out "
                         "between two NRC 0x78", "response_pending_interval")
    seen: dict[int, str] = {}
    for cd in sim.config_dids:
        if cd.did in seen:
            raise node.error(f"DID {cd.did:#06x} is declared twice ({seen[cd.did]!r}, {cd.name!r})",
                             "config_dids")
        seen[cd.did] = cd.name
    if len({cd.name for cd in sim.config_dids}) != len(sim.config_dids):
        raise node.error("configuration DID names must be unique", "config_dids")
    if sim.config_broadcast is not None:
        for signal, name in sim.config_broadcast.signals.items():
            if name not in {cd.name for cd in sim.config_dids}:
                raise node.error(f"signal {signal!r} sets {name!r}, which is not in config_dids",
                                 f"config_broadcast.signals.{signal}")
    return sim


def _config_broadcast(node: Node) -> ConfigBroadcastSim:
    dbc: Path | None = None
    if node.has("dbc"):
        dbc = Path(node.get("dbc", str))
        if not dbc.is_absolute() and node.source and not node.source.startswith("("):
            dbc = Path(node.source).parent / dbc
        if not dbc.is_file():
            raise node.error(f"DBC file {str(dbc)!r} does not exist", "dbc")
    signals_node = node.child("signals")
    signals = {key: signals_node.get(key, str) for key in list(signals_node.data)}
    signals_node.done()
    if not signals:
        raise node.error("at least one signal -> configuration DID", "signals")
    cfg = ConfigBroadcastSim(dbc=dbc, message=node.get("message", str), signals=signals)
    node.done()
    return cfg


def _version_frames(node: Node) -> VersionFramesSim:
    from bench.version_broadcast import parse_sim_settings  # cantools: only when configured

    return parse_sim_settings(node.child("version_frames"))


def _ascii(node: Node, key: str, default: Any = ..., *, maximum: int = 64, exact: int | None = None) -> str:
    value = node.get(key, str) if default is ... else node.get(key, str, default)
    if not value.isascii() or not value.isprintable():
        raise node.error(f"must be printable ASCII, got {value!r}", key)
    if exact is not None and len(value) != exact:
        raise node.error(f"must be {exact} characters, got {len(value)}", key)
    if not 1 <= len(value) <= maximum:
        raise node.error(f"must be 1..{maximum} characters, got {len(value)}", key)
    return value


def _stmin(node: Node) -> int:
    stmin = node.integer("stmin", 0, minimum=0, maximum=0xF9)
    if not (stmin <= 0x7F or stmin >= 0xF1):
        raise node.error("must be 0..0x7F (ms) or 0xF1..0xF9 (100..900 us)", "stmin")
    return stmin


def _security(node: Node) -> SecuritySim:
    sec = SecuritySim(
        max_attempts=node.integer("max_attempts", 3, minimum=1, maximum=255),
        lockout_time=node.number("lockout_time", 10.0, minimum=0, maximum=3600),
        seed_length=node.integer("seed_length", 4, minimum=1, maximum=64),
    )
    node.done()
    return sec


def _config_did(node: Node) -> ConfigDid:
    name = node.get("name", str)
    did = node.integer("did", minimum=0, maximum=0xFFFF)
    if did in RESERVED_DIDS:
        raise node.error(f"DID {did:#06x} is served by the simulator itself", "did")
    size = node.integer("size", minimum=1, maximum=1024)
    raw = node.raw("initial", None)
    if raw is None:
        initial = bytes(size)
    elif isinstance(raw, bool):
        raise node.error("expected hex text or an integer", "initial")
    elif isinstance(raw, int):
        if not 0 <= raw < 1 << (8 * size):
            raise node.error(f"does not fit in {size} bytes", "initial")
        initial = raw.to_bytes(size, "big")
    elif isinstance(raw, str):
        try:
            initial = bytes.fromhex(raw)
        except ValueError:
            raise node.error(f"expected hex text, got {raw!r}", "initial") from None
        if len(initial) != size:
            raise node.error(f"is {len(initial)} bytes, the DID has {size}", "initial")
    else:
        raise node.error("expected hex text or an integer", "initial")
    node.done()
    return ConfigDid(name=name, did=did, size=size, initial=initial)


# -- faults -------------------------------------------------------------------
def _times(node: Node) -> int | None:
    raw = node.raw("times", 1)
    if raw == "always":
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise node.error(f"must be a positive integer or 'always', got {raw!r}", "times")
    return raw


def _one_or_many(node: Node, key: str) -> list[Node]:
    raw = node.raw(key, None)
    if raw is None:
        return []
    if isinstance(raw, dict):
        return [node.child(key)]
    if isinstance(raw, list):
        return node.items(key, lambda n: n)
    raise node.error("expected a mapping or a list of mappings", key)


def _switch(node: Node, key: str) -> Switch | None:
    raw = node.raw(key, None)
    if raw is None or raw is False:
        return None
    if raw is True:
        return Switch(times=1)
    if isinstance(raw, dict):
        sub = node.child(key)
        switch = Switch(times=_times(sub))
        sub.done()
        return switch
    raise node.error("expected true, false or {times: N}", key)


def _service(node: Node) -> int:
    service = node.integer("service", minimum=0, maximum=0xFF)
    if service not in SIMULATED_SERVICES:
        raise node.error(f"the simulator does not implement service {service:#04x}", "service")
    return service


def _faults(node: Node) -> FaultConfig:
    drops = []
    for sub in _one_or_many(node, "drop_response"):
        drops.append(DropResponse(service=_service(sub), count=sub.integer("count", 1, minimum=1),
                                  times=_times(sub)))
        sub.done()
    storms = []
    for sub in _one_or_many(node, "pending_storm"):
        storms.append(PendingStorm(service=_service(sub), count=sub.integer("count", 1, minimum=1),
                                   pendings=sub.integer("pendings", minimum=1, maximum=100000), times=_times(sub)))
        sub.done()
    nrcs = []
    for sub in _one_or_many(node, "nrc_on_block"):
        nrc = sub.integer("nrc", 0x72, minimum=0x10, maximum=0xFF)
        if nrc == 0x78:
            raise sub.error("0x78 is a response-pending, not a final answer", "nrc")
        nrcs.append(NrcOnBlock(block=sub.integer("block", minimum=1), nrc=nrc, times=_times(sub)))
        sub.done()
    resets = []
    for sub in _one_or_many(node, "reset_mid_transfer"):
        resets.append(ResetMidTransfer(block=sub.integer("block", minimum=1), times=_times(sub)))
        sub.done()
    slow: SlowErase | None = None
    raw = node.raw("erase_time", None)
    if isinstance(raw, dict):
        sub = node.child("erase_time")
        slow = SlowErase(seconds=sub.number("seconds", minimum=0, maximum=3600), times=_times(sub))
        sub.done()
    elif raw is not None:
        slow = SlowErase(seconds=node.number("erase_time", minimum=0, maximum=3600), times=1)
    refusals = []
    for sub in _one_or_many(node, "refuse_config_write"):
        nrc = sub.integer("nrc", 0x22, minimum=0, maximum=0xFF)
        if nrc not in CONFIG_WRITE_NRCS:
            raise sub.error("must be 0x22 (conditionsNotCorrect), 0x31 (requestOutOfRange) or "
                            "0x33 (securityAccessDenied)", "nrc")
        did = sub.integer("did", minimum=0, maximum=0xFFFF) if sub.has("did") else None
        refusals.append(RefuseConfigWrite(nrc=nrc, did=did, times=_times(sub)))
        sub.done()
    refused_requests = []
    for sub in _one_or_many(node, "refuse_request"):
        nrc = sub.integer("nrc", 0x22, minimum=0x10, maximum=0xFF)
        if nrc == 0x78:
            raise sub.error("0x78 is a response-pending, not a final answer", "nrc")
        refused_requests.append(RefuseRequest(service=_service(sub), nrc=nrc,
                                              count=sub.integer("count", 1, minimum=1), times=_times(sub)))
        sub.done()
    faults = FaultConfig(
        drop_response=tuple(drops),
        pending_storm=tuple(storms),
        nrc_on_block=tuple(nrcs),
        reset_mid_transfer=tuple(resets),
        erase_time=slow,
        wrong_crc=_switch(node, "wrong_crc"),
        refuse_security=_switch(node, "refuse_security"),
        preconditions_fail=_switch(node, "preconditions_fail"),
        refuse_config_write=tuple(refusals),
        ignore_config_broadcast=_switch(node, "ignore_config_broadcast"),
        refuse_request=tuple(refused_requests),
    )
    node.done()
    return faults
