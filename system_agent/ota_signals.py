"""What OTA mode shows the vehicle besides the UDS requests: the OTA-mode frame and the power hold.

:class:`OtaModeBroadcast` sends the DBC's OTA-mode message (``OtaModeActive`` 1, ``KeepAwake``
1, a rolling ``OtaModeCounter``) on every bus every ``GenMsgCycleTime`` while OTA mode is on
(python-can ``send_periodic``); receivers treat a few missing cycles as "OTA mode over",
so the frame stops by itself when the system agent dies. :class:`PowerHold` is the
keep-awake / sleep-inhibit request as a file the (simulated) gateway honours: JSON
``{campaign_id, expires_at}`` (seconds since the epoch, the OTA-mode lease), written
atomically on entry and on each renewal, removed on exit; a gateway ignores a file whose
lease has expired, so a crashed agent cannot keep the car awake forever.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.errors import ConfigurationError

if TYPE_CHECKING:  # python-can loads with the first broadcast: a desk (file source) only keeps the hold file
    import can
    from cantools.database.can import Database

log = logging.getLogger(__name__)

OTA_MODE_SIGNALS = ("OtaModeActive", "KeepAwake", "OtaModeCounter")


class OtaModeBroadcast:
    """The periodic OTA-mode frame on every bus in ``buses`` while started."""

    def __init__(self, buses: Mapping[str, can.BusABC], db: Database, message: str = "OTA_MODE",
                 period: float | None = None) -> None:
        try:
            self.message = db.get_message_by_name(message)
        except KeyError:
            raise ConfigurationError(f"OTA-mode message {message!r} is not in the DBC") from None
        missing = set(OTA_MODE_SIGNALS) - {s.name for s in self.message.signals}
        if missing:
            raise ConfigurationError(f"message {message!r} lacks signal(s) {', '.join(sorted(missing))}")
        if period is None:
            if not self.message.cycle_time:
                raise ConfigurationError(f"message {message!r} has no GenMsgCycleTime; configure a period")
            period = self.message.cycle_time / 1000.0
        self.period = period
        self.buses = dict(buses)
        self._lock = threading.Lock()
        self._counter = 0
        self._tasks: list[Any] = []

    @property
    def active(self) -> bool:
        return bool(self._tasks)

    def _payload(self) -> bytes:
        return bytes(self.message.encode({"OtaModeActive": 1, "KeepAwake": 1, "OtaModeCounter": self._counter}))

    def _modify(self, msg: can.Message) -> None:
        with self._lock:
            self._counter = (self._counter + 1) % 256
            msg.data[:] = self._payload()

    def start(self) -> None:
        if self._tasks:
            return
        import can

        with self._lock:
            data = self._payload()
        for name, bus in self.buses.items():
            msg = can.Message(arbitration_id=self.message.frame_id, is_extended_id=self.message.is_extended_frame,
                              data=data)
            try:
                self._tasks.append(bus.send_periodic(msg, self.period, modifier_callback=self._modify))
            except (can.CanError, OSError) as e:
                log.error("ota mode: cannot broadcast %s on %s: %s", self.message.name, name, e)
        log.info("ota mode: broadcasting %s every %.3f s on %s", self.message.name, self.period,
                 ", ".join(self.buses))

    def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.stop()
        if tasks:
            log.info("ota mode: %s broadcast stopped", self.message.name)


class PowerHold:
    """The keep-awake request file; see the module docstring."""

    def __init__(self, path: Path, wall_clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.wall_clock = wall_clock

    def hold(self, campaign_id: str | None, remaining_s: float) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"campaign_id": campaign_id, "expires_at": self.wall_clock() + remaining_s}))
        os.replace(tmp, self.path)

    def release(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    @property
    def held(self) -> bool:
        return honoured(self.path, self.wall_clock())


def honoured(path: Path, now: float) -> bool:
    """What a gateway decides from the file: a request whose lease has not expired."""
    try:
        data = json.loads(path.read_text())
        return float(data["expires_at"]) > now
    except (OSError, ValueError, KeyError, TypeError):
        return False
