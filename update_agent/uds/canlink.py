"""One CAN bus of the vehicle config opened with python-can, and its notifier thread.

Apart from :mod:`update_agent.uds.transport` (which re-exports it) so that a process that
only listens to or sends plain frames (the system agent) does not import can-isotp and
udsoncan. ``can_filters`` are python-can's acceptance filters: interfaces that can (socketcan:
``CAN_RAW_FILTER`` in the kernel; the bench's ``benchhub``: in the hub) drop the frames that
match none before they reach the process.

A bus with a file descriptor (socketcan, the bench's ``benchhub``) is read by a
:class:`WakeableNotifier`: its thread waits in ``poll`` on the bus and a wake-up pipe, so closing
the link ends it at once. python-can's own notifier thread blocks up to its ``timeout`` in each
``recv`` and ``stop()`` waits that out: 20 ms per link closed after every version read, baseline
match and flash. Buses without one keep python-can's thread (and its ``notifier_timeout``).
"""

from __future__ import annotations

import logging
import os
import select
import threading
from typing import Any

import can

from agent.config.vehicle import BusConfig
from agent.errors import TransportError

log = logging.getLogger(__name__)

#: s the notifier thread blocks in one ``recv`` (``CanLink(notifier_timeout=...)``) on a bus without a file
#: descriptor (python-can's thread; see the module docstring); closing a link waits up to this for the
#: thread to end. A link that lives as long as its daemon (a listener) takes the
#: longer one: fewer wake-ups on a quiet bus, so less idle CPU
NOTIFIER_TIMEOUT = 0.1
#: for the links of one version read or one flash, closed after their work: 0.1 s would be added to
#: every read, baseline match and flash
SHORT_NOTIFIER_TIMEOUT = 0.02


class CanLink:
    """One python-can bus and its notifier, shared by every ECU connection on that bus."""

    def __init__(self, bus: BusConfig, *, notifier_timeout: float = NOTIFIER_TIMEOUT,
                 can_filters: can.typechecking.CanFilters | None = None) -> None:
        self.config = bus
        self.notifier_timeout = notifier_timeout
        kwargs: dict[str, Any] = dict(bus.options)
        if can_filters is not None:
            kwargs["can_filters"] = can_filters
        kwargs.setdefault("bitrate", bus.bitrate)
        if bus.fd:
            kwargs.setdefault("fd", True)
            if bus.data_bitrate is not None:
                kwargs.setdefault("data_bitrate", bus.data_bitrate)
        try:
            self.bus: can.BusABC = can.Bus(interface=bus.interface, channel=bus.channel, **kwargs)
        except (can.CanError, OSError, ValueError) as e:
            raise TransportError(
                f"bus {bus.name}: cannot open {bus.interface} channel {bus.channel!r}: {e}") from e
        self._notifier: can.Notifier | None = None
        self._lock = threading.Lock()

    @property
    def notifier(self) -> can.Notifier:
        """The bus's receive thread, started on first use: a link that only sends (functional
        requests) has none, so it opens and closes without a thread."""
        with self._lock:  # the ECUs of a bus may open their sessions from several threads at once
            if self._notifier is None:
                fd = bus_fileno(self.bus)
                self._notifier = (WakeableNotifier(self.bus, fd, name=f"can-{self.config.name}") if fd >= 0
                                  else can.Notifier(self.bus, [], timeout=self.notifier_timeout))
            return self._notifier

    def send(self, message: can.Message) -> None:
        try:
            self.bus.send(message)
        except (can.CanError, OSError) as e:
            raise TransportError(f"bus {self.config.name}: send failed: {e}") from e

    def close(self) -> None:
        if self._notifier is not None:
            self._notifier.stop()
        self.bus.shutdown()

    def __enter__(self) -> CanLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def bus_fileno(bus: can.BusABC) -> int:
    """The bus's file descriptor, -1 when its interface has none."""
    try:
        return int(bus.fileno())
    except (NotImplementedError, AttributeError, OSError, ValueError):
        return -1


class WakeableNotifier(can.Notifier):
    """A :class:`can.Notifier` for one bus with a file descriptor, stopped without a receive timeout.

    Its thread waits in ``poll`` on the bus and a wake-up pipe with no timeout: a frame wakes it
    (it then takes every frame waiting, as an interface may have read several at once) and so does
    :meth:`stop`. Listeners are called in the thread, as python-can's; a bus error ends the thread
    (kept in :attr:`exception`), as it ends python-can's.
    """

    def __init__(self, bus: can.BusABC, fd: int, *, name: str = "can-notifier") -> None:
        super().__init__([], [], timeout=0.0)  # no bus of python-can's: no thread of its own
        self._bus = bus
        self._fd = fd
        self._wake_r, self._wake_w = os.pipe()
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        """The receive thread is still there (it ends on :meth:`stop` or a bus error)."""
        return self._thread.is_alive()

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        try:
            while not self._halt.is_set():
                events = dict(poller.poll())
                if self._halt.is_set():
                    return
                if events.get(self._fd, 0) & select.POLLNVAL:
                    raise OSError(f"file descriptor {self._fd} closed under the notifier")
                if self._fd in events:
                    while (msg := self._bus.recv(0)) is not None:
                        for listener in tuple(self.listeners):
                            listener(msg)
        except (can.CanError, OSError, ValueError) as e:
            if not self._halt.is_set():
                self.exception = e
                log.error("bus %s: %s; no longer receiving on it", self._bus.channel_info, e)

    def stop(self, timeout: float = 5.0) -> None:
        if not self._halt.is_set():
            self._halt.set()
            os.write(self._wake_w, b"x")
            if self._thread is not threading.current_thread():
                self._thread.join(timeout)
            os.close(self._wake_r)
            os.close(self._wake_w)
        super().stop(timeout)
