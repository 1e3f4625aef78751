"""Keep non-default sessions alive: functional TesterPresent with suppressPosRspMsgIndicationBit.

While a flash sequence holds an ECU in the extended or programming session,
the ECU drops back to default (and relocks security) when it hears nothing
for S3 (typically 5 s). Long waits happen: an erase answered by NRC 0x78 for
tens of seconds, a wait for a reset, a slow step of the tester itself. A
separate thread therefore sends ``3E 80`` on the functional id every
``tester_present_interval``, as OEM testers do. It is functional and
suppresses the positive response, so it never collides with the physical
request/response exchange udsoncan is waiting on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from agent.errors import OtaError

log = logging.getLogger(__name__)

TESTER_PRESENT_SUPPRESS = b"\x3e\x80"


class TesterPresentKeeper:
    """A thread sending ``payload`` through ``send`` now and then every ``interval`` seconds until stopped."""

    def __init__(self, send: Callable[[bytes], None], interval: float, *, name: str = "tester-present",
                 payload: bytes = TESTER_PRESENT_SUPPRESS) -> None:
        if interval <= 0:
            raise ValueError("interval must be > 0")
        self._send = send
        self._interval = interval
        self._payload = payload
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._name = name
        self.sent = 0
        self.last_error: OtaError | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while True:
            try:
                self._send(self._payload)
                self.sent += 1
            except OtaError as e:  # the bus failing shows up in the main exchange too
                self.last_error = e
                log.warning("%s: TesterPresent not sent: %s", self._name, e)
            if self._stop.wait(self._interval):
                return
