"""Fault injection on the bench bus: frames dropped, delayed, hit by a detected error, or corrupted.

Per channel, seeded (the same seed and the same frames give the same faults),
at a given rate per frame, optionally only for some arbitration IDs. What each
kind means on a real CAN bus:

``drop``
    The frame reaches no receiver: a transmitter in one-shot mode (or past its
    retransmission limit) gives up after an error, a gateway discards it. The
    tester's or the ECU's ISO-TP sees a gap (a missing flow control, a missing
    consecutive frame) and times out.
``delay``
    The frame goes on the bus ``delay_time`` seconds late (lost arbitration to
    higher-priority traffic, a busy transmitter). A CAN controller sends its
    frames in order, so the frames behind it on the channel wait too: nothing
    is reordered, the bus only stalls.
``error``
    A bit error that CAN's own checks catch (15-bit CRC, bit stuffing, form
    and ACK checks): every receiver discards the frame, an error frame goes on
    the bus and the transmitter retransmits at once. Receivers get the frame
    once, late by the error frame and the retransmission; nothing above the
    controller sees the error. This is what almost every real bit error does.
``corrupt``
    An *undetected* corruption (the CRC's residual error probability, or a
    faulty gateway that recomputes the CRC): one data bit is flipped and the
    frame is delivered as valid. ISO-TP and UDS above must cope: a wrong PCI
    or sequence number is an ISO-TP error; a flipped payload byte is caught
    only end to end (the ECU's checkMemory CRC over the flashed image).

:class:`FaultSpec` is the setting (validated from YAML or IPC params by
:func:`parse_spec`); :class:`FaultInjector` decides, per frame record, with its
own :class:`random.Random`, and counts what it injected (:meth:`counters`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from agent.config.node import Node
from agent.errors import ConfigurationError
from bench.canbus import wire

KINDS = ("drop", "delay", "error", "corrupt")
DEFAULT_DELAY = 0.005  # s a delayed frame waits
#: bits of an active error frame (6 flag + up to 6 echoed flags + 8 delimiter) and the intermission (3)
ERROR_FRAME_BITS = 23
#: bit rate assumed for the retransmission time on a channel without wire emulation
NOMINAL_BITRATE = 500_000


@dataclass(frozen=True)
class FaultSpec:
    """The faults of one channel: a probability per frame for each kind (their sum at most 1)."""

    drop: float = 0.0
    delay: float = 0.0
    error: float = 0.0
    corrupt: float = 0.0
    #: seconds a delayed frame (and the frames behind it) waits
    delay_time: float = DEFAULT_DELAY
    #: only frames with these arbitration IDs are hit (None: every frame)
    ids: frozenset[int] | None = None
    seed: int = 0

    @property
    def active(self) -> bool:
        return any(getattr(self, kind) > 0 for kind in KINDS)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ids"] = None if self.ids is None else sorted(self.ids)
        return d


def parse_spec(node: Node) -> FaultSpec:
    """A :class:`FaultSpec` from a mapping (YAML file, CLI, IPC params); errors name the key."""
    rates = {kind: node.number(kind, 0.0, minimum=0.0, maximum=1.0) for kind in KINDS}
    delay_time = node.number("delay_time", DEFAULT_DELAY, minimum=0.0, maximum=10.0)
    seed = node.integer("seed", 0, minimum=0)
    raw_ids = node.raw("ids", None)
    ids: frozenset[int] | None = None
    if raw_ids is not None:
        if not isinstance(raw_ids, list) or not raw_ids:
            raise node.error("expected a non-empty list of arbitration IDs", "ids")
        for value in raw_ids:
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0x1FFFFFFF:
                raise node.error(f"arbitration IDs are integers 0..0x1FFFFFFF, got {value!r}", "ids")
        ids = frozenset(raw_ids)
    node.done()
    if sum(rates.values()) > 1.0:
        raise node.error(f"the rates add up to {sum(rates.values()):g}; at most 1 (one fault per frame)")
    return FaultSpec(delay_time=delay_time, ids=ids, seed=seed, **rates)


def spec_from_mapping(data: Mapping[str, Any], *, source: str = "bus faults", path: str = "") -> FaultSpec:
    return parse_spec(Node(dict(data), source=source, path=path))


def parse_channels(data: Any, *, source: str) -> dict[str, FaultSpec]:
    """``{channel: {drop: 0.01, ...}}`` (the ``--faults`` file of ``otactl bench bus``)."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigurationError("expected a mapping of channel -> faults", source=source)
    for name in data:
        if not isinstance(name, str):
            raise ConfigurationError(f"channel names must be strings, got {name!r}", source=source)
    return {name: parse_spec(Node(value, source=source, path=name)) for name, value in data.items()}


@dataclass
class Verdict:
    """What happens to one frame: delivered (maybe altered) after ``hold`` seconds, or not at all."""

    record: bytes | None
    hold: float = 0.0
    kind: str | None = None


@dataclass
class FaultInjector:
    """Decides the fate of each frame on one channel; counts what it injected."""

    spec: FaultSpec = field(default_factory=FaultSpec)
    bitrate: int | None = None
    data_bitrate: int | None = None
    seen: int = 0
    injected: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))

    def __post_init__(self) -> None:
        self._rng = random.Random(self.spec.seed)

    def configure(self, spec: FaultSpec) -> None:
        """A new setting: the generator restarts from its seed, the counters keep counting."""
        self.spec = spec
        self._rng = random.Random(spec.seed)

    def counters(self) -> dict[str, int]:
        return {"frames": self.seen, **self.injected}

    def judge(self, record: bytes) -> Verdict:
        spec = self.spec
        if not spec.active:
            return Verdict(record)
        arbitration_id = wire.HEADER.unpack_from(record)[1]
        if spec.ids is not None and arbitration_id not in spec.ids:
            return Verdict(record)
        self.seen += 1
        r = self._rng.random()
        for kind in KINDS:
            rate: float = getattr(spec, kind)
            if r < rate:
                return self._inject(kind, record)
            r -= rate
        return Verdict(record)

    def _inject(self, kind: str, record: bytes) -> Verdict:
        if kind == "corrupt":
            length = len(record) - wire.HEADER.size
            if length == 0:
                return Verdict(record)  # no data bit to flip: the CRC-protected header is not touched
            bit = self._rng.randrange(length * 8)
            data = bytearray(record)
            data[wire.HEADER.size + bit // 8] ^= 0x80 >> (bit % 8)
            self.injected[kind] += 1
            return Verdict(bytes(data), kind=kind)
        self.injected[kind] += 1
        if kind == "drop":
            return Verdict(None, kind=kind)
        if kind == "delay":
            return Verdict(record, hold=self.spec.delay_time, kind=kind)
        return Verdict(record, hold=self.retransmission_time(record), kind=kind)

    def retransmission_time(self, record: bytes) -> float:
        """The wire time an ``error`` costs: the error frame plus the frame sent again."""
        from bench.canbus.bittime import frame_time

        bitrate = self.bitrate or NOMINAL_BITRATE
        return ERROR_FRAME_BITS / bitrate + frame_time(wire.decode(record), bitrate, self.data_bitrate)
