"""The vehicle state from the buses: every bus of the vehicle config, frames into a :class:`SignalModel`.

One :class:`~update_agent.uds.canlink.CanLink` per bus (python-can bus + notifier, the
same as the update agent's), opened with acceptance filters for the DBC messages the model
decodes (``can_filters``: in the kernel on socketcan, in the hub on the bench), so the other
traffic (version frames, UDS) never wakes the daemon. Given the daemon's event loop, a bus
with a file descriptor (socketcan, the bench's ``benchhub``) is read from the loop when it is
readable (``loop.add_reader``, as python-can's ``Notifier(loop=...)``), every waiting frame at
once, instead of by a notifier thread per bus; other buses get the link's notifier thread.
Frames feed the model under a lock; a snapshot is the model's known values (stale and
never-received signals left out) with where they came from. :meth:`CanStateSource.links`
lets the OTA-mode broadcast send on the same buses.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import can

from agent.config.vehicle import VehicleConfig
from system_agent.signals import SignalModel, SignalReading, SignalSpec
from system_agent.vehicle_state import VehicleState, VehicleStateSource
from update_agent.uds.canlink import CanLink

if TYPE_CHECKING:
    from cantools.database.can import Database

log = logging.getLogger(__name__)


class CanStateSource(VehicleStateSource):
    """Signals decoded from every bus of ``vehicle``; see the module docstring.

    ``db`` is the DBC ``dbc`` loaded (:func:`update_agent.version_frame.load_dbc`); only the
    messages of ``specs`` are kept (by the model), not the whole database."""

    def __init__(self, vehicle: VehicleConfig, dbc: Path, db: Database, specs: Sequence[SignalSpec], *,
                 stale_factor: float, stale_after: float | None = None,
                 on_frame: Callable[[], None] | None = None) -> None:
        self.vehicle = vehicle
        self.dbc_path = dbc
        self.model = SignalModel(db, specs, stale_factor=stale_factor, stale_after=stale_after)
        self.on_frame = on_frame
        self._lock = threading.Lock()
        self.links: dict[str, CanLink] = {}
        #: file descriptors read from the event loop (see the module docstring)
        self._readers: dict[int, asyncio.AbstractEventLoop] = {}

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Open every bus and listen; on ``loop`` (the caller's running event loop) where the bus allows."""
        with self._lock:
            self.model.listen()
        try:
            filters: list[can.typechecking.CanFilter] = [
                {"can_id": frame_id, "can_mask": 0x1FFFFFFF if extended else 0x7FF, "extended": extended}
                for frame_id, extended in sorted(self.model.frame_keys)]
            for name, bus in self.vehicle.buses.items():
                link = CanLink(bus, can_filters=filters)
                self.links[name] = link
                fd = _fileno(link.bus) if loop is not None else -1
                if loop is not None and fd >= 0:
                    loop.add_reader(fd, self._drain, name, link.bus, fd)
                    self._readers[fd] = loop
                else:
                    link.notifier.add_listener(self._receive)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for fd, loop in list(self._readers.items()):
            loop.remove_reader(fd)
        self._readers = {}
        for link in self.links.values():
            link.close()
        self.links = {}

    def _drain(self, name: str, bus: can.BusABC, fd: int) -> None:
        """The bus is readable: take every frame waiting (an interface may have read several at once)."""
        try:
            while (msg := bus.recv(0)) is not None:
                self._receive(msg)
        except (can.CanError, OSError) as e:  # as a notifier thread ends on a bus error: stop reading it
            log.error("system_agent: bus %s: %s; no longer listening on it", name, e)
            loop = self._readers.pop(fd, None)
            if loop is not None:
                loop.remove_reader(fd)

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


def _fileno(bus: can.BusABC) -> int:
    try:
        return bus.fileno()
    except NotImplementedError:
        return -1
