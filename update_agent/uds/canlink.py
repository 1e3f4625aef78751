"""One CAN bus of the vehicle config opened with python-can, and its notifier thread.

Apart from :mod:`update_agent.uds.transport` (which re-exports it) so that a process that
only listens to or sends plain frames (the system agent) does not import can-isotp and
udsoncan. ``can_filters`` are python-can's acceptance filters: interfaces that can (socketcan:
``CAN_RAW_FILTER`` in the kernel; the bench's ``benchhub``: in the hub) drop the frames that
match none before they reach the process.
"""

from __future__ import annotations

from typing import Any

import can

from agent.config.vehicle import BusConfig
from agent.errors import TransportError

#: s the notifier thread blocks in one ``recv`` (``CanLink(notifier_timeout=...)``); closing a link waits
#: up to this for the thread to end. A link that lives as long as its daemon (a listener) takes the
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

    @property
    def notifier(self) -> can.Notifier:
        """The bus's receive thread, started on first use: a link that only sends (functional
        requests) has none, so it opens and closes without a thread."""
        if self._notifier is None:
            self._notifier = can.Notifier(self.bus, [], timeout=self.notifier_timeout)
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
