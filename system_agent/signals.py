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
from typing import TYPE_CHECKING, Any

from agent.errors import ConfigurationError

if TYPE_CHECKING:  # only methods of the DBC's objects are called: a desk (file source) never loads cantools
    from cantools.database.can import Database, Message

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


@dataclass(frozen=True, slots=True)
class _Decoded:
    """One DBC message the model decodes: its state signals and their timeout (the message's)."""

    message: Message
    specs: tuple[SignalSpec, ...]
    timeout: float


class SignalModel:
    """Frames -> state signals with ages; see the module docstring. Not thread-safe (lock outside).

    Every signal of a message arrives with it, so receive times are kept per message; a frame whose
    bytes equal the last one of its message is not decoded again (periodic frames mostly repeat):
    it only refreshes that time, so an idle daemon spends next to nothing per frame."""

    def __init__(self, db: Database, specs: Sequence[SignalSpec] = DEFAULT_SIGNALS, *,
                 stale_factor: float = 5.0, stale_after: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.specs = tuple(specs)
        by_id: dict[tuple[int, bool], tuple[Message, list[SignalSpec], float]] = {}
        self.timeouts: dict[str, float] = {}
        #: state signal -> (frame id, extended) of its message
        self._key: dict[str, tuple[int, bool]] = {}
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
            self._key[spec.name] = key
            by_id.setdefault(key, (message, [], timeout))[1].append(spec)
        self._by_id = {key: _Decoded(message, tuple(ours), timeout) for key, (message, ours, timeout) in by_id.items()}
        self._values: dict[str, Any] = {}
        #: when each message (frame id, extended) last arrived and decoded
        self._seen: dict[tuple[int, bool], float] = {}
        #: the last bytes of each message taken
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
        that was never seen or had gone stale), so a listener wakes only for a change."""
        key = (frame_id, extended)
        entry = self._by_id.get(key)
        if entry is None:
            return False
        now = self.clock() if at is None else at
        seen = self._seen.get(key)
        changed = seen is None or now - seen > entry.timeout
        raw = bytes(data)
        if self._raw.get(key) != raw:
            try:
                decoded = entry.message.decode(raw, decode_choices=True, scaling=True)
            except Exception:  # cantools raises several types for a malformed frame: count it, keep the old value
                self.bad_frames += 1
                return False
            assert isinstance(decoded, dict)
            for spec in entry.specs:
                value = _convert(decoded[spec.signal], spec.kind)
                changed = changed or self._values.get(spec.name, _UNSET) != value
                self._values[spec.name] = value
            self._raw[key] = raw
        self._seen[key] = now
        return changed

    def reading(self, name: str, now: float | None = None) -> SignalReading:
        now = self.clock() if now is None else now
        timeout = self.timeouts[name]
        seen = self._seen.get(self._key[name])
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
        waits = [self.since + entry.timeout - now for key, entry in self._by_id.items() if key not in self._seen]
        return max([0.0, *waits])

    def next_change(self, now: float | None = None) -> float | None:
        """Seconds until the next fresh signal goes stale (None: none will)."""
        now = self.clock() if now is None else now
        waits = [left for key, seen in self._seen.items()
                 if (left := self._by_id[key].timeout - max(0.0, now - seen)) >= 0.0]
        return max(0.0, min(waits)) if waits else None


def _convert(value: Any, kind: str) -> Any:
    if kind == "bool":
        return bool(int(value))
    if hasattr(value, "name") and hasattr(value, "value"):  # cantools NamedSignalValue
        return str(value.name)
    if isinstance(value, float) and value.is_integer():
        return int(value) if abs(value) < 1 << 53 else value
    return value

