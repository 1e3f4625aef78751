"""The vehicle state from the buses: every bus of the vehicle config, frames into a :class:`SignalModel`.

One :class:`~update_agent.uds.transport.CanLink` per bus (python-can bus + notifier, the
same as the update agent's); the notifier threads feed the model under a lock; a snapshot
is the model's known values (stale and never-received signals left out) with where they
came from. :meth:`CanStateSource.links` lets the OTA-mode broadcast send on the same buses.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import can

from agent.config.vehicle import VehicleConfig
from system_agent.signals import SignalModel, SignalReading, SignalSpec
from system_agent.vehicle_state import VehicleState, VehicleStateSource
from update_agent.uds.transport import CanLink
from update_agent.version_frame import load_dbc

log = logging.getLogger(__name__)


class CanStateSource(VehicleStateSource):
    """Signals decoded from every bus of ``vehicle``; see the module docstring."""

    def __init__(self, vehicle: VehicleConfig, dbc: Path, specs: Sequence[SignalSpec], *,
                 stale_factor: float, stale_after: float | None = None,
                 on_frame: Callable[[], None] | None = None) -> None:
        self.vehicle = vehicle
        self.dbc_path = dbc
        self.db = load_dbc(dbc)
        self.model = SignalModel(self.db, specs, stale_factor=stale_factor, stale_after=stale_after)
        self.on_frame = on_frame
        self._lock = threading.Lock()
        self.links: dict[str, CanLink] = {}

    def start(self) -> None:
        with self._lock:
            self.model.listen()
        try:
            for name, bus in self.vehicle.buses.items():
                link = CanLink(bus)
                self.links[name] = link
                link.notifier.add_listener(self._receive)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for link in self.links.values():
            link.close()
        self.links = {}

    def _receive(self, msg: can.Message) -> None:
        with self._lock:
            taken = self.model.feed(msg.arbitration_id, bytes(msg.data), extended=msg.is_extended_id)
        if taken and self.on_frame is not None:
            self.on_frame()

    def readings(self) -> dict[str, SignalReading]:
        with self._lock:
            return self.model.readings()

    def settling(self) -> float:
        with self._lock:
            return self.model.settling()

    def next_change(self) -> float | None:
        with self._lock:
            return self.model.next_change()

    def snapshot(self) -> VehicleState:
        readings = self.readings()
        values = {name: r.value for name, r in readings.items() if r.known}
        stale = sorted(name for name, r in readings.items() if r.stale)
        missing = sorted(name for name, r in readings.items() if r.value is None)
        problem = None
        if stale or missing:
            problem = "; ".join(part for part in (
                f"stale (counted as unknown): {', '.join(stale)}" if stale else "",
                f"never received: {', '.join(missing)}" if missing else "") if part)
        return VehicleState(values, f"CAN ({self.dbc_path.name} on {', '.join(self.vehicle.buses)})", problem)

    def to_json(self) -> dict[str, Any]:
        return {name: r.to_json() for name, r in self.readings().items()}
