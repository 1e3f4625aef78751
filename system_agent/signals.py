"""The live vehicle state: DBC frames in, named signal values with their age out. Pure (clock injected).

:class:`SignalModel` decodes the frames of the messages its :class:`SignalSpec` list names
(cantools, the vehicle's DBC) and keeps, per state signal (``vehicle_speed``, ``gear`` ...),
the last value and when it arrived. A message that stops arriving goes *stale* after its
timeout: ``GenMsgCycleTime`` of the message times ``stale_factor`` (or a fixed
``stale_after`` from the configuration). A stale signal, like one never received, is
*unknown*: :meth:`SignalModel.values` leaves it out, so every precondition rule on it fails
(:mod:`system_agent.preconditions`); a last value is never taken as still true.

A signal not received *yet* says nothing until it has been listened for one full timeout:
:meth:`SignalModel.settling` tells how long that still is, so a verdict asked right after a
(re)start waits for the first frames instead of failing on silence that is only the gap
before the next cycle.

Values: a DBC value table gives its name (``gear: "P"``, ``ignition: "on"``), ``kind: bool``
gives ``True``/``False``, anything else the scaled number.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cantools.database.can import Database, Message

from agent.errors import ConfigurationError

KINDS = ("auto", "bool")
#: no value yet (a decoded value may itself be None-like, so not None)
_UNSET = object()


@dataclass(frozen=True)
class SignalSpec:
    """State signal ``name`` is signal ``signal`` of DBC message ``message``."""

    name: str
    message: str
    signal: str
    kind: str = "auto"  # auto (value table name, else number) | bool


#: the bench DBC's vehicle signals (configs/bench-vehicle.dbc); a vehicle config may name others
DEFAULT_SIGNALS: tuple[SignalSpec, ...] = (
    SignalSpec("vehicle_speed", "VEHICLE_DYNAMICS", "VehicleSpeed"),
    SignalSpec("gear", "VEHICLE_DYNAMICS", "Gear"),
    SignalSpec("battery_voltage", "BATTERY_STATUS", "BatteryVoltage"),
    SignalSpec("state_of_charge", "BATTERY_STATUS", "StateOfCharge"),
    SignalSpec("charging", "BATTERY_STATUS", "Charging", "bool"),
    SignalSpec("ignition", "POWER_MODE", "Ignition"),
    SignalSpec("door_driver_open", "DOOR_STATUS", "DoorDriver", "bool"),
    SignalSpec("door_passenger_open", "DOOR_STATUS", "DoorPassenger", "bool"),
    SignalSpec("door_rear_left_open", "DOOR_STATUS", "DoorRearLeft", "bool"),
    SignalSpec("door_rear_right_open", "DOOR_STATUS", "DoorRearRight", "bool"),
    SignalSpec("tailgate_open", "DOOR_STATUS", "Tailgate", "bool"),
)


@dataclass(frozen=True)
class SignalReading:
    """One state signal now: its last value (None: never received), age and whether it is stale."""

    value: Any
    age: float | None
    stale: bool
    timeout: float

    @property
    def known(self) -> bool:
        return self.value is not None and not self.stale

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "age_s": None if self.age is None else round(self.age, 3),
                "stale": self.stale, "timeout_s": self.timeout}


class SignalModel:
    """Frames -> state signals with ages; see the module docstring. Not thread-safe (lock outside)."""

    def __init__(self, db: Database, specs: Sequence[SignalSpec] = DEFAULT_SIGNALS, *,
                 stale_factor: float = 5.0, stale_after: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.specs = tuple(specs)
        self._by_id: dict[tuple[int, bool], tuple[Message, list[SignalSpec]]] = {}
        self.timeouts: dict[str, float] = {}
        for spec in self.specs:
            if spec.kind not in KINDS:
                raise ConfigurationError(f"signal {spec.name!r}: kind must be one of {', '.join(KINDS)}")
            try:
                message = db.get_message_by_name(spec.message)
            except KeyError:
                raise ConfigurationError(f"signal {spec.name!r}: message {spec.message!r} is not in the DBC") from None
            if spec.signal not in {s.name for s in message.signals}:
                raise ConfigurationError(f"signal {spec.name!r}: message {spec.message} has no signal {spec.signal!r}")
            if stale_after is not None:
                timeout = stale_after
            elif message.cycle_time:
                timeout = message.cycle_time / 1000.0 * stale_factor
            else:
                raise ConfigurationError(f"signal {spec.name!r}: message {spec.message} has no GenMsgCycleTime; "
                                         "configure stale_after")
            self.timeouts[spec.name] = timeout
            key = (message.frame_id, message.is_extended_frame)
            self._by_id.setdefault(key, (message, []))[1].append(spec)
        self._values: dict[str, Any] = {}
        self._seen: dict[str, float] = {}
        #: the last bytes of each message taken (frame id, extended)
        self._raw: dict[tuple[int, bool], bytes] = {}
        #: frames that did not decode (wrong length, out of range), for status
        self.bad_frames = 0
        #: when listening began (see :meth:`settling`)
        self.since = self.clock()

    def listen(self, now: float | None = None) -> None:
        """Listening (re)starts now: the bus was just opened."""
        self.since = self.clock() if now is None else now

    @property
    def frame_ids(self) -> set[int]:
        return {frame_id for frame_id, _ext in self._by_id}

    @property
    def frame_keys(self) -> set[tuple[int, bool]]:
        """(frame id, extended) of every message the model decodes."""
        return set(self._by_id)

    def feed(self, frame_id: int, data: bytes, *, extended: bool = False, at: float | None = None) -> bool:
        """Take one frame of ours; True if it changed what the model knows (a new value, or a signal
        that was never seen or had gone stale), so a listener wakes only for a change.

        A frame whose bytes equal the last one of its message is not decoded again: periodic
        frames mostly repeat, and decoding each would cost an idle daemon CPU for nothing."""
        entry = self._by_id.get((frame_id, extended))
        if entry is None:
            return False
        message, specs = entry
        now = self.clock() if at is None else at
        raw = bytes(data)
        changed = any(self._unknown(spec.name, now) for spec in specs)
        if self._raw.get((frame_id, extended)) != raw:
            try:
                decoded = message.decode(raw, decode_choices=True, scaling=True)
            except Exception:  # cantools raises several types for a malformed frame: count it, keep the old value
                self.bad_frames += 1
                return False
            assert isinstance(decoded, dict)
            for spec in specs:
                value = _convert(decoded[spec.signal], spec.kind)
                changed = changed or self._values.get(spec.name, _UNSET) != value
                self._values[spec.name] = value
            self._raw[(frame_id, extended)] = raw
        for spec in specs:
            self._seen[spec.name] = now
        return changed

    def _unknown(self, name: str, now: float) -> bool:
        seen = self._seen.get(name)
        return seen is None or now - seen > self.timeouts[name]

    def reading(self, name: str, now: float | None = None) -> SignalReading:
        now = self.clock() if now is None else now
        timeout = self.timeouts[name]
        seen = self._seen.get(name)
        if seen is None:
            return SignalReading(None, None, False, timeout)
        age = max(0.0, now - seen)
        return SignalReading(self._values[name], age, age > timeout, timeout)

    def readings(self, now: float | None = None) -> dict[str, SignalReading]:
        now = self.clock() if now is None else now
        return {spec.name: self.reading(spec.name, now) for spec in self.specs}

    def values(self, now: float | None = None) -> dict[str, Any]:
        """The known signals only: never received and stale ones are left out (unknown)."""
        return {name: r.value for name, r in self.readings(now).items() if r.known}

    def settling(self, now: float | None = None) -> float:
        """Seconds until every signal never received has been listened for one full timeout (0: none
        left). Until then its absence is no evidence; afterwards it is unknown like a stale one."""
        now = self.clock() if now is None else now
        waits = [self.since + self.timeouts[s.name] - now for s in self.specs if s.name not in self._seen]
        return max([0.0, *waits])

    def next_change(self, now: float | None = None) -> float | None:
        """Seconds until the next fresh signal goes stale (None: none will)."""
        now = self.clock() if now is None else now
        waits = [r.timeout - (r.age or 0.0) for r in self.readings(now).values() if r.known]
        return max(0.0, min(waits)) if waits else None


def _convert(value: Any, kind: str) -> Any:
    if kind == "bool":
        return bool(int(value))
    if hasattr(value, "name") and hasattr(value, "value"):  # cantools NamedSignalValue
        return str(value.name)
    if isinstance(value, float) and value.is_integer():
        return int(value) if abs(value) < 1 << 53 else value
    return value

