"""Scripted vehicle scenarios for the bench vehicle simulator.

A scenario is the vehicle's signals at start (state name -> value, the names of
:data:`system_agent.signals.DEFAULT_SIGNALS`) and triggers: when the simulator sees an
event on the bus, it overlays new values. Events, never timers, so a test's outcome
does not depend on how fast the machine is:

``ota_mode``
    the first OTA-mode frame (the system agent entered OTA mode);
``transfer``
    the first UDS TransferData (0x36) request to any ECU: a flash is writing memory.

A signal left out (or None) is not sent at all: its message stays silent and the
system agent sees it as unknown (or stale, once it was seen).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.errors import ConfigurationError

EVENTS = ("ota_mode", "transfer")

PARKED: dict[str, Any] = {"vehicle_speed": 0, "gear": "P", "ignition": "on", "battery_voltage": 12.8,
                          "state_of_charge": 80, "charging": False, "door_driver_open": False,
                          "door_passenger_open": False, "door_rear_left_open": False,
                          "door_rear_right_open": False, "tailgate_open": False}


@dataclass(frozen=True)
class Trigger:
    on: str
    values: Mapping[str, Any]


@dataclass(frozen=True)
class VehicleScenario:
    name: str
    doc: str
    start: Mapping[str, Any]
    triggers: tuple[Trigger, ...] = field(default=())


SCENARIOS: dict[str, VehicleScenario] = {s.name: s for s in (
    VehicleScenario("parked", "parked in P, ignition on, battery healthy: every install rule holds", PARKED),
    VehicleScenario("driving", "driving at 50 km/h in D: no install may start",
                    {**PARKED, "vehicle_speed": 50, "gear": "D", "battery_voltage": 13.9}),
    VehicleScenario("low_battery", "parked with a weak battery (11.6 V, 30 %): the battery rule fails",
                    {**PARKED, "battery_voltage": 11.6, "state_of_charge": 30}),
    VehicleScenario("low_battery_mid_update", "parked; the battery drops to 11.4 V / 25 % when the first "
                    "flash starts writing", PARKED,
                    (Trigger("transfer", {"battery_voltage": 11.4, "state_of_charge": 25}),)),
    VehicleScenario("ignition_off_mid_update", "parked; the driver turns the ignition off when the first "
                    "flash starts writing", PARKED, (Trigger("transfer", {"ignition": "off"}),)),
)}


def scenario(name: str) -> VehicleScenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ConfigurationError(f"unknown vehicle scenario {name!r} (known: {', '.join(SCENARIOS)})") from None
