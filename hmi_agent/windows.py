"""Time windows for consent: when a scheduled or mandatory update may run. Pure, no clock of its own.

Two spellings:

* ``"02:00-04:00"``: every day, local time of the vehicle (a window may wrap past
  midnight: ``"23:30-01:00"``);
* ``"2026-11-22T02:00:00+01:00/2026-11-22T04:00:00+01:00"``: once, an ISO 8601 interval
  (without an offset: local time).

:meth:`Window.occurrence` gives the occurrence that contains ``now`` or the next
one (``None`` once an absolute window has passed); ``now`` is always passed in, so
tests run on an injected clock. ``tz`` (default: the machine's local zone) is for
tests too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

from agent.errors import ConfigurationError

_DAILY = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


class WindowError(ConfigurationError):
    """A time window that cannot be read (the text says which spelling is expected)."""


@dataclass(frozen=True)
class Window:
    spec: str
    #: daily: start and end time of day; absolute: None
    daily: tuple[time, time] | None = None
    #: absolute: start and end (seconds since the epoch); daily: None
    absolute: tuple[float, float] | None = None
    tz: tzinfo | None = None

    def occurrence(self, now: float) -> tuple[float, float] | None:
        """(start, end) of the occurrence containing ``now``, else of the next one; None if none is left."""
        if self.absolute is not None:
            return self.absolute if now < self.absolute[1] else None
        assert self.daily is not None
        start_t, end_t = self.daily
        length = (datetime.combine(date.min, end_t) - datetime.combine(date.min, start_t)) % timedelta(days=1)
        today = datetime.fromtimestamp(now, self.tz).date()
        for offset in (-1, 0, 1, 2):
            start = self._stamp(datetime.combine(today + timedelta(days=offset), start_t))
            end = self._stamp(datetime.combine(today + timedelta(days=offset), start_t) + length)
            if end > now:
                return start, end
        raise AssertionError("a daily window always occurs within two days")  # pragma: no cover

    def contains(self, now: float) -> bool:
        occ = self.occurrence(now)
        return occ is not None and occ[0] <= now < occ[1]

    def _stamp(self, naive: datetime) -> float:
        return naive.replace(tzinfo=self.tz).timestamp() if self.tz is not None else naive.timestamp()

    def __str__(self) -> str:
        return self.spec


def parse_window(spec: str, tz: tzinfo | None = None) -> Window:
    """A :class:`Window` from its text; :class:`WindowError` names what is wrong."""
    text = spec.strip()
    m = _DAILY.match(text)
    if m:
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
            raise WindowError(f"window {spec!r}: hours 00-23 and minutes 00-59")
        if (h1, m1) == (h2, m2):
            raise WindowError(f"window {spec!r} is empty: start and end are the same time")
        return Window(text, daily=(time(h1, m1), time(h2, m2)), tz=tz)
    if "/" in text:
        first, _, second = text.partition("/")
        try:
            start, end = (_instant(s, tz) for s in (first, second))
        except ValueError as e:
            raise WindowError(f"window {spec!r}: {e}") from e
        if end <= start:
            raise WindowError(f"window {spec!r} ends before it starts")
        return Window(text, absolute=(start, end), tz=tz)
    raise WindowError(f"window {spec!r}: expected HH:MM-HH:MM (daily, local time) or an ISO 8601 "
                      "interval START/END (e.g. 2026-11-22T02:00:00+01:00/2026-11-22T04:00:00+01:00)")


def _instant(text: str, tz: tzinfo | None) -> float:
    dt = datetime.fromisoformat(text.strip())
    if dt.tzinfo is None and tz is not None:
        dt = dt.replace(tzinfo=tz)
    return dt.timestamp()


def next_opening(windows: Iterable[Window], now: float) -> tuple[Window, float, float] | None:
    """The earliest occurrence (containing ``now`` or next) among ``windows``; None if none is left."""
    best: tuple[Window, float, float] | None = None
    for w in windows:
        occ = w.occurrence(now)
        if occ is not None and (best is None or occ[0] < best[1]):
            best = (w, *occ)
    return best


def iso(t: float, tz: tzinfo | None = None) -> str:
    """``t`` as local ISO time to the second (for audit details and the display)."""
    return datetime.fromtimestamp(t, tz).astimezone(tz).isoformat(timespec="seconds")
