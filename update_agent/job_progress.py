"""Job progress at a bounded rate: at most ``rate`` events per second per job, the latest never lost.

A flash acknowledges a TransferData block every few milliseconds; publishing
each one would flood every subscriber. :class:`ProgressThrottle` lets an
event through when at least ``1 / rate`` s passed since the last one; an
event that comes sooner is kept as *pending* (replacing an older pending one)
and a flush is scheduled for when the interval is over, so the last state of
a job - a new step that lasts long, the final byte count - is always shown.

Pure: the clock and the ``call_later`` scheduler are injected (the daemon
passes ``loop.time`` and ``loop.call_later``; tests a fake clock).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Publish = Callable[[dict[str, Any]], None]
CallLater = Callable[[float, Callable[[], None]], Any]


class ProgressThrottle:
    """Rate-limits the progress events of one job (call from the event loop thread only)."""

    def __init__(self, rate: float, publish: Publish, *, clock: Callable[[], float],
                 call_later: CallLater) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        self.interval = 1.0 / rate
        self._publish = publish
        self._clock = clock
        self._call_later = call_later
        self._last: float | None = None
        self._pending: dict[str, Any] | None = None
        self._scheduled = False
        self._closed = False
        self.published = 0

    def offer(self, event: dict[str, Any]) -> None:
        """Publish ``event`` now if the rate allows, else keep it (the newest wins) for later."""
        if self._closed:
            return
        now = self._clock()
        if self._last is None or now - self._last >= self.interval:
            self._emit(event, now)
            return
        self._pending = event
        if not self._scheduled:
            self._scheduled = True
            self._call_later(self.interval - (now - self._last), self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        if self._pending is not None and not self._closed:
            event, self._pending = self._pending, None
            self._emit(event, self._clock())

    def _emit(self, event: dict[str, Any], now: float) -> None:
        self._last = now
        self.published += 1
        self._publish(event)

    def flush(self) -> None:
        """Publish the pending event now (a job whose last count must be seen: a Linux ECU's download)."""
        if self._pending is not None and not self._closed:
            event, self._pending = self._pending, None
            self._emit(event, self._clock())

    def close(self) -> None:
        """The job ended: drop what is pending (the done event says the rest)."""
        self._closed = True
        self._pending = None
