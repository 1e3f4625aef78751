"""The ECU side of passive version collection: a periodic version frame.

A simulated ECU whose ``sim:`` section has ``version_frames`` broadcasts its
hardware and running software version in the DBC message named there, every
``period`` seconds (default: the message's ``GenMsgCycleTime``), as the FAW
paper describes (3.2.2). The frame goes out through python-can's
``send_periodic`` with a ``modifier_callback`` that fills in the versions
from the ECU's own state before every frame, so a flashed image shows up
without re-configuring the task.

Restart semantics follow the paper: :meth:`VersionBroadcaster.stop` when the
application stops (ECU reset, programming session), :meth:`~VersionBroadcaster.start`
when it runs again; the first frame after a start goes out at once, with
``VersionCounter`` 0, and carries the version read at that moment.

Simulator wiring (``bench/ecu``)::

    sim:
      version_frames: {message: ENGINE_VERSION, period: 0.1}   # period optional

    settings = parse_sim_settings(ecu.sim.child("version_frames"))  # if ecu.sim.has(...)
    caster = broadcaster_for(bus, vehicle, ecu, settings,
                             lambda: (sim.hardware_version, running_software_version()))
    caster.start()    # application running: power-on, and after each reset into a valid image
    caster.stop()     # ECUReset received / entering the programming session / shutdown
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import can
from cantools.database.can import Database

from agent.config.node import Node
from agent.config.vehicle import EcuConfig, VehicleConfig
from agent.errors import ConfigurationError
from update_agent import version_frame
from update_agent.version_frame import VersionFrameError, load_dbc

__all__ = ["VersionBroadcaster", "VersionFramesSim", "VersionsProvider", "broadcaster_for", "load_dbc",
           "parse_sim_settings"]

log = logging.getLogger(__name__)

#: () -> (hardware_version, software_version) of what the ECU runs now
VersionsProvider = Callable[[], tuple[str, str]]


@dataclass(frozen=True)
class VersionFramesSim:
    """``sim.version_frames``: which DBC message the ECU sends, and how often."""

    message: str
    period: float | None = None  # s; None: the message's GenMsgCycleTime


def parse_sim_settings(node: Node) -> VersionFramesSim:
    settings = VersionFramesSim(
        message=node.get("message", str),
        period=node.number("period", minimum=0.001, maximum=60.0) if node.has("period") else None,
    )
    node.done()
    return settings


class VersionBroadcaster:
    """Sends one ECU's version frame periodically on ``bus`` while started."""

    def __init__(self, bus: can.BusABC, db: Database, message: str, versions: VersionsProvider, *,
                 period: float | None = None) -> None:
        try:
            self._message = db.get_message_by_name(message)
        except KeyError:
            raise ConfigurationError(f"version frame message {message!r} is not in the DBC") from None
        missing = set(version_frame.SIGNALS) - {s.name for s in self._message.signals}
        if missing:
            raise ConfigurationError(
                f"message {message!r} lacks version frame signal(s) {', '.join(sorted(missing))}")
        if period is None:
            cycle = self._message.cycle_time
            if not cycle:
                raise ConfigurationError(f"message {message!r} has no GenMsgCycleTime; give a period")
            period = cycle / 1000.0
        self.period = period
        self._bus = bus
        self._versions = versions
        self._lock = threading.Lock()
        self._task: Any = None
        self._stopped_thread: threading.Thread | None = None
        self._counter = 0
        self._last_data = bytes(self._message.length)
        #: frames handed to the bus since construction (for tests and logs)
        self.frames_sent = 0

    @property
    def running(self) -> bool:
        return self._task is not None

    def _data(self) -> bytes:
        hardware, software = self._versions()
        return self._message.encode(version_frame.encode(hardware, software, self._counter),
                                    scaling=False, strict=True)

    def _modify(self, msg: can.Message) -> None:
        """python-can calls this before every frame: current versions, next counter."""
        with self._lock:
            try:
                data = self._data()
            except (VersionFrameError, ValueError) as e:
                # keep the last good payload rather than kill the cyclic task
                log.error("%s: cannot encode the running versions: %s", self._message.name, e)
                data = self._last_data
            self._last_data = data
            msg.data[:] = data
            msg.dlc = len(data)
            self._counter = version_frame.next_counter(self._counter)
            self.frames_sent += 1

    def start(self) -> None:
        """(Re)start: the first frame goes out now, with counter 0 and the current version.

        The previous task's thread is joined here, not in :meth:`stop`: python-can's
        cyclic thread sleeps a whole period between frames, and :meth:`stop` runs on
        the ECU's bus loop when it must answer at once (a session change). A start
        comes with a reset, while nothing is expected to answer yet, and the join
        still guarantees that no frame of the old task follows the new first frame.
        """
        self.stop()
        self._join_stopped()
        with self._lock:
            self._counter = 0
            first = self._data()  # a version that cannot be sent fails here, in the caller
            self._last_data = first
        msg = can.Message(arbitration_id=self._message.frame_id,
                          is_extended_id=self._message.is_extended_frame, data=first)
        self._task = self._bus.send_periodic(msg, self.period, modifier_callback=self._modify)

    def stop(self) -> None:
        """Stop sending (the application is not running). Returns at once; a frame
        already being sent may still leave (at most one, with the versions read then)."""
        task, self._task = self._task, None
        if task is None:
            return
        task.stop()
        thread = getattr(task, "thread", None)
        if isinstance(thread, threading.Thread) and thread is not threading.current_thread():
            self._stopped_thread = thread

    def close(self) -> None:
        """Stop and wait until the last frame has left (before the bus is shut down)."""
        self.stop()
        self._join_stopped()

    def _join_stopped(self) -> None:
        thread, self._stopped_thread = self._stopped_thread, None
        if thread is not None:
            thread.join(self.period + 1.0)

    def restart(self) -> None:
        self.start()


def broadcaster_for(bus: can.BusABC, vehicle: VehicleConfig, ecu: EcuConfig, settings: VersionFramesSim,
                    versions: VersionsProvider) -> VersionBroadcaster:
    """The broadcaster of ``ecu``, from the vehicle's DBC; the message must be sent by that ECU
    (the receiver tells ECUs apart by the DBC transmitter)."""
    key = f"ecus.{ecu.name}.sim.version_frames"
    if vehicle.version_frames is None:
        raise ConfigurationError("needs the vehicle-level version_frames section (its DBC)",
                                 source=vehicle.source, key=key)
    db = load_dbc(vehicle.version_frames.dbc)
    try:
        senders = db.get_message_by_name(settings.message).senders
    except KeyError:
        raise ConfigurationError(f"message {settings.message!r} is not in {vehicle.version_frames.dbc}",
                                 source=vehicle.source, key=key) from None
    if senders != [ecu.name]:
        raise ConfigurationError(
            f"message {settings.message!r} is sent by {', '.join(senders) or 'no node'} in the DBC, "
            f"not by {ecu.name!r}", source=vehicle.source, key=key)
    return VersionBroadcaster(bus, db, settings.message, versions, period=settings.period)
