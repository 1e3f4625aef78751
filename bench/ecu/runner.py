"""The loop of one bus: reads its frames, pumps the ECUs' ISO-TP ports, drives their cores.

One thread per bus does everything for the ECUs on it: ``bus.recv``, route
the frame by arbitration id to the ECU's :class:`~bench.ecu.transport.EcuPort`
(or decode a functional single frame), pump the ports, hand complete requests
to the :class:`~bench.ecu.bootloader.Bootloader` with the monotonic time, send
the answers, and wake for the cores' timers (NRC 0x78 interval, end of an
erase, S3) and the ports' ISO-TP timers. The cores are touched by this thread
only, so they need no locking; and no frame crosses a thread on its way from
the bus socket to the ISO-TP state machine.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import can

from bench.ecu.bootloader import Bootloader
from bench.ecu.transport import EcuPort

log = logging.getLogger(__name__)

IDLE_WAKE = 0.2  # s: the longest the loop blocks in bus.recv (stop requests, status refresh)
BATCH = 256  # frames read before the ports are pumped (they are pumped at once when the bus is quiet)


class Application(Protocol):
    """What runs while an ECU's application runs (its periodic version frame, say)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def close(self) -> None:
        """Stop and wait until nothing more is sent (before the bus closes)."""


#: called on the bus thread with a frame an ECU listens to (a configuration broadcast) and the time
FrameListener = Callable[[can.Message, float], None]


class BusRunner:
    """Serves the ECUs of one bus from one thread."""

    def __init__(self, name: str, bus: can.BusABC, ecus: Sequence[tuple[Bootloader, EcuPort]], *,
                 clock: Callable[[], float] = time.monotonic,
                 on_failure: Callable[[str], None] | None = None,
                 applications: Mapping[int, Application] | None = None,
                 listeners: Mapping[tuple[int, bool], Sequence[tuple[int, FrameListener]]] | None = None) -> None:
        self.name = name
        #: per ECU index: started while its application runs, restarted after each reset
        self.applications = dict(applications or {})
        self._app_state: dict[int, tuple[bool, int]] = {}
        self.bus = bus
        self.ecus = list(ecus)
        self.clock = clock
        self.on_failure = on_failure
        self.error: str | None = None
        self._physical: dict[tuple[int, bool], list[int]] = {}
        self._functional: dict[tuple[int, bool], list[int]] = {}
        for index, (_, port) in enumerate(self.ecus):
            self._physical.setdefault((port.rx_id, port.is_29bit), []).append(index)
            if port.functional_id is not None:
                self._functional.setdefault((port.functional_id, port.is_29bit), []).append(index)
        #: (arbitration id, extended) -> (ECU index, listener) of the frames ECUs react to
        self._listeners = dict(listeners or {})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"bus-{name}", daemon=True)

    def start(self) -> None:
        for index, (core, _) in enumerate(self.ecus):
            core.store.write_status(core.status(self.clock()))
            self._sync_application(index)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        for app in self.applications.values():
            app.close()

    def _sync_application(self, index: int) -> None:
        """Start / stop / restart the ECU's application side to match the core's state."""
        app = self.applications.get(index)
        if app is None:
            return
        core = self.ecus[index][0]
        state = (core.application_running(self.clock()), core.resets)
        previous = self._app_state.get(index)
        if state == previous:
            return
        self._app_state[index] = state
        try:
            if previous is not None and (previous[0] or previous[1] != state[1]):
                app.stop()
            if state[0]:
                app.start()
        except Exception:  # e.g. a version the frame cannot carry: log it, keep serving UDS
            log.exception("%s: application side failed", core.name)

    # -- the loop ---------------------------------------------------------------------
    def _timeout(self) -> float:
        now = self.clock()
        timeout = IDLE_WAKE
        for core, port in self.ecus:
            deadline = core.next_deadline(now)
            if deadline is not None:
                timeout = min(timeout, deadline - now)
            wake = port.next_wake()
            if wake is not None:
                timeout = min(timeout, wake)
        return max(0.0, timeout)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._step()
        except Exception as e:  # the bus went away (hub closed, interface down) or a bug: stop loudly
            self.error = f"bus {self.name!r} failed: {e}"
            log.error("%s", self.error, exc_info=not isinstance(e, can.CanError))
            if self.on_failure is not None:
                self.on_failure(self.error)

    def _step(self) -> None:
        msg = self.bus.recv(self._timeout())
        touched: set[int] = set()
        frames = 0
        while msg is not None:
            key = (msg.arbitration_id, msg.is_extended_id)
            for index in self._physical.get(key, ()):
                core, port = self.ecus[index]
                if core.listening(self.clock()):  # a rebooting ECU hears nothing, sends no flow control
                    port.physical_frame(msg)
                    touched.add(index)
            for index in self._functional.get(key, ()):
                request = self.ecus[index][1].functional_frame(msg)
                if request is not None:
                    self._serve(index, request, functional=True)
            for index, listener in self._listeners.get(key, ()):
                self._hear(index, listener, msg)
            frames += 1
            msg = self.bus.recv(0) if frames < BATCH else None
        for index, (core, port) in enumerate(self.ecus):
            if index in touched or port.next_wake() is not None:
                for request in port.pump():
                    self._serve(index, request, functional=False)
            try:
                answers = core.poll(self.clock())
            except Exception:
                log.exception("%s: internal error in a timer", core.name)
                continue
            for answer in answers:
                port.send(answer.data)
            if answers:
                core.store.write_status(core.status(self.clock()))
            self._sync_application(index)

    def _hear(self, index: int, listener: FrameListener, msg: can.Message) -> None:
        core = self.ecus[index][0]
        try:
            listener(msg, self.clock())
        except Exception:  # a frame that does not decode must not silence the bus
            log.exception("%s: internal error on frame %#x", core.name, msg.arbitration_id)
            return
        core.store.write_status(core.status(self.clock()))

    def _serve(self, index: int, request: bytes, *, functional: bool) -> None:
        core, port = self.ecus[index]
        resets = core.resets
        try:
            answers = core.handle(request, self.clock(), functional=functional)
        except Exception:  # a simulator bug must not silence every ECU on the bus
            log.exception("%s: internal error handling %s", core.name, request[:8].hex(" "))
            return
        for answer in answers:
            port.send(answer.data)
        if core.resets != resets:
            port.stack.stop_receiving()  # a reset loses whatever frame was half received
        core.store.write_status(core.status(self.clock()))
        self._sync_application(index)
