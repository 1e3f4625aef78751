"""The bench vehicle simulator: the vehicle's signals on the bus, and the nodes that react to OTA mode.

One process plays the vehicle around the ECUs under update, on every bus of the vehicle
config (a gateway routes them everywhere):

* the vehicle signals of :data:`system_agent.signals.DEFAULT_SIGNALS` (speed, gear, battery,
  ignition, doors), encoded with cantools into their DBC messages, each every
  ``GenMsgCycleTime``; a message is sent only while every signal in it has a value (a
  signal left out is silent: the receiver sees it unknown or stale). The values come from
  the bench's state file (re-read when it changes: ``Scenario.set_vehicle_state``) or the
  scenario's start values, overlaid by the scenario's triggers
  (:mod:`bench.vehicle.scenarios`);
* the gateway: ``GATEWAY_STATUS.PowerState`` awake (ignition not off), held (ignition off,
  but a keep-awake request: the OTA-mode frame's ``KeepAwake`` seen within three cycles, or
  the power hold file with an unexpired lease), asleep otherwise. Asleep, the vehicle's
  signal messages stop (the bench gateway keeps reporting its own state);
* the reactions to OTA mode (the OTA-mode frame seen within three cycles): the head unit
  dims and shows the update screen (``HEADUNIT_STATUS``), the body controller keeps its
  battery lock (``BODY_STATUS.BatteryLock``).

What happened is also written to a status file (JSON: OTA mode, power state, the events
with wall-clock times) for logs and tests.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import can
import yaml
from cantools.database.can import Database, Message

from bench.vehicle.scenarios import VehicleScenario
from system_agent.ota_signals import honoured
from system_agent.signals import DEFAULT_SIGNALS, SignalSpec

log = logging.getLogger(__name__)

TICK = 0.01  # s: the sender's resolution
OTA_MODE_CYCLES = 3  # OTA mode counts as on while its frame came within this many cycles
POWER_STATES = ("awake", "held", "asleep")


def is_transfer_data(data: bytes) -> bool:
    """An ISO-TP single or first frame carrying a UDS TransferData (0x36) request."""
    if len(data) < 2:
        return False
    kind = data[0] >> 4
    if kind == 0:
        return data[1] == 0x36
    return kind == 1 and len(data) >= 3 and data[2] == 0x36


class VehicleSimulator:
    """See the module docstring; :meth:`start` / :meth:`stop`."""

    def __init__(self, buses: Mapping[str, can.BusABC], db: Database, scenario: VehicleScenario, *,
                 request_ids: Iterable[int] = (), state_file: Path | None = None,
                 power_hold_file: Path | None = None, status_file: Path | None = None,
                 specs: Iterable[SignalSpec] = DEFAULT_SIGNALS, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.buses = dict(buses)
        self.db = db
        self.scenario = scenario
        self.request_ids = set(request_ids)
        self.state_file = state_file
        self.power_hold_file = power_hold_file
        self.status_file = status_file
        self.clock = clock
        self.wall_clock = wall_clock
        self.specs = tuple(specs)
        self._lock = threading.Lock()
        self._status_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.base: dict[str, Any] = dict(scenario.start)
        self.overlay: dict[str, Any] = {}
        self._file_sig: tuple[int, int] | None = None
        self._fired: set[str] = set()
        self.ota_message = db.get_message_by_name("OTA_MODE")
        self._ota_seen: float | None = None
        self._keep_awake_seen: float | None = None
        self.power_state = "awake"
        self.events: list[tuple[float, str]] = []
        by_message: dict[str, list[SignalSpec]] = {}
        for spec in self.specs:
            by_message.setdefault(spec.message, []).append(spec)
        self.vehicle_messages = [(db.get_message_by_name(m), specs) for m, specs in by_message.items()]
        self.status_messages = [db.get_message_by_name(m) for m in ("GATEWAY_STATUS", "HEADUNIT_STATUS",
                                                                     "BODY_STATUS")]
        self._due: dict[int, float] = {}
        self._last_status: tuple[bool, str] | None = None
        self._read_state_file()

    # -- values -----------------------------------------------------------------------------------
    def values(self) -> dict[str, Any]:
        with self._lock:
            merged = {**self.base, **self.overlay}
        return {k: v for k, v in merged.items() if v is not None}

    def _read_state_file(self) -> None:
        """Take the state file's values when it changed (a change clears the triggers' overlay)."""
        if self.state_file is None:
            return
        try:
            st = self.state_file.stat()
            sig = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            sig = (0, -1)
        if sig == self._file_sig:
            return
        self._file_sig = sig
        data: Any = {}
        if sig[1] >= 0:
            try:
                data = yaml.safe_load(self.state_file.read_text()) or {}
            except (OSError, yaml.YAMLError) as e:
                log.error("vehicle: cannot read %s: %s: sending nothing", self.state_file, e)
        with self._lock:
            self.base = dict(data) if isinstance(data, dict) else {}
            self.overlay = {}
        self._event(f"state file: {json.dumps(self.base, sort_keys=True)}")

    def fire(self, event: str) -> None:
        """The bus showed ``event``: apply the scenario's triggers on it (once)."""
        with self._lock:
            if event in self._fired:
                return
            self._fired.add(event)
            triggers = [t for t in self.scenario.triggers if t.on == event]
            for trigger in triggers:
                self.overlay.update(trigger.values)
        for trigger in triggers:
            self._event(f"trigger {event}: {json.dumps(dict(trigger.values), sort_keys=True)}")

    # -- what the nodes decide ----------------------------------------------------------------------
    def ota_mode(self, now: float) -> bool:
        seen = self._ota_seen
        return seen is not None and now - seen <= OTA_MODE_CYCLES * self._cycle(self.ota_message)

    def keep_awake(self, now: float) -> bool:
        seen = self._keep_awake_seen
        if seen is not None and now - seen <= OTA_MODE_CYCLES * self._cycle(self.ota_message):
            return True
        return self.power_hold_file is not None and honoured(self.power_hold_file, self.wall_clock())

    def decide_power(self, now: float) -> str:
        if self.values().get("ignition") != "off":
            return "awake"
        return "held" if self.keep_awake(now) else "asleep"

    # -- frames ---------------------------------------------------------------------------------------
    @staticmethod
    def _cycle(message: Message) -> float:
        return (message.cycle_time or 100) / 1000.0

    def frames(self, now: float) -> list[can.Message]:
        """The frames due at ``now`` (and the status updates that go with them)."""
        ota = self.ota_mode(now)
        power = self.decide_power(now)
        if (ota, power) != self._last_status:
            previous, self._last_status, self.power_state = self._last_status, (ota, power), power
            if previous is None or previous[0] != ota:
                self._event(f"ota mode {'on' if ota else 'off'}: head unit "
                            f"{'dimmed' if ota else 'bright'}, body battery lock {'kept' if ota else 'released'}")
            if previous is None or previous[1] != power:
                self._event(f"gateway power {power}")
        values = self.values()
        out: list[can.Message] = []
        if power != "asleep":
            for message, specs in self.vehicle_messages:
                if all(spec.name in values for spec in specs) and self._due_now(message, now):
                    payload = {spec.signal: _encode(values[spec.name]) for spec in specs}
                    out.append(self._frame(message, payload))
        status = {"GATEWAY_STATUS": {"PowerState": POWER_STATES.index(power)},
                  "HEADUNIT_STATUS": {"DisplayDimmed": int(ota), "OtaScreen": int(ota)},
                  "BODY_STATUS": {"BatteryLock": int(ota)}}
        for message in self.status_messages:
            if self._due_now(message, now):
                out.append(self._frame(message, status[message.name]))
        return out

    def _due_now(self, message: Message, now: float) -> bool:
        due = self._due.get(message.frame_id)
        if due is not None and now < due:
            return False
        self._due[message.frame_id] = now + self._cycle(message) if due is None or now - due > 1.0 \
            else due + self._cycle(message)
        return True

    @staticmethod
    def _frame(message: Message, payload: Mapping[str, Any]) -> can.Message:
        return can.Message(arbitration_id=message.frame_id, is_extended_id=message.is_extended_frame,
                           data=message.encode(dict(payload)))

    def receive(self, msg: can.Message, now: float) -> None:
        if msg.arbitration_id == self.ota_message.frame_id and not msg.is_extended_id:
            try:
                decoded = self.ota_message.decode(bytes(msg.data))
            except Exception:  # a malformed frame is not an OTA-mode request
                return
            assert isinstance(decoded, dict)
            if decoded.get("OtaModeActive"):
                self._ota_seen = now
                self.fire("ota_mode")
            if decoded.get("KeepAwake"):
                self._keep_awake_seen = now
        elif msg.arbitration_id in self.request_ids and is_transfer_data(bytes(msg.data)):
            self.fire("transfer")

    # -- status ---------------------------------------------------------------------------------------
    def _event(self, text: str) -> None:
        log.info("vehicle: %s", text)
        with self._status_lock:
            self.events.append((self.wall_clock(), text))
            self._write_status()

    def _write_status(self) -> None:
        if self.status_file is None:
            return
        doc = {"scenario": self.scenario.name, "ota_mode": bool(self._last_status and self._last_status[0]),
               "power_state": self.power_state, "events": [[t, e] for t, e in self.events]}
        tmp = self.status_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, self.status_file)

    # -- threads --------------------------------------------------------------------------------------
    def start(self) -> None:
        self._threads = [threading.Thread(target=self._send_loop, name="vehicle-send", daemon=True)]
        self._threads += [threading.Thread(target=self._recv_loop, args=(name, bus), name=f"vehicle-{name}",
                                           daemon=True) for name, bus in self.buses.items()]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)

    def _send_loop(self) -> None:
        file_check = 0.0
        while not self._stop.wait(TICK):
            now = self.clock()
            if now >= file_check:
                self._read_state_file()
                file_check = now + 0.05
            for frame in self.frames(now):
                for name, bus in self.buses.items():
                    try:
                        bus.send(frame)
                    except (can.CanError, OSError) as e:
                        log.error("vehicle: send on %s failed: %s", name, e)

    def _recv_loop(self, name: str, bus: can.BusABC) -> None:
        while not self._stop.is_set():
            try:
                msg = bus.recv(0.1)
            except (can.CanError, OSError) as e:
                log.error("vehicle: bus %s failed: %s", name, e)
                return
            if msg is not None:
                self.receive(msg, self.clock())


def _encode(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value
