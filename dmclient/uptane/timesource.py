"""The reference time metadata expiry is judged against (freeze-attack protection).

python-tuf's ngclient takes ``datetime.now(timezone.utc)`` once, when an ``Updater`` is
made (``TrustedMetadataSet.reference_time``), and judges every expiry against it. A
vehicle needs to say where that time comes from, so :mod:`dmclient.uptane.repository`
overwrites that attribute with the time from a configured source (how and why: see
there). Sources (``uptane.time`` in the dmclient config):

* ``{source: system}`` (default): the board's clock, UTC.
* ``{source: file, path: FILE}``: an ISO-8601 UTC instant (``2025-01-01T12:00:00Z``) in a
  file kept current by whatever the OEM trusts for time (a GNSS-disciplined clock, an
  authenticated time service such as Roughtime or NTS, the Uptane time server). A
  missing, unreadable or malformed file stops the check (no silent fallback to the
  system clock).
* in Python, any ``Callable[[], datetime]`` (tests inject fixed instants).

Whatever the source says, the reference time never goes below the reference time of
the last successful check (the *time floor*, kept in the Uptane state database): a
clock set back cannot make expired metadata valid again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from agent.errors import ConfigurationError, VehicleStateError

TimeSource = Callable[[], datetime]


def system_time() -> datetime:
    return datetime.now(timezone.utc)


def parse_instant(text: str, where: str) -> datetime:
    """An ISO-8601 instant with a zone (``Z`` or an offset), as an aware UTC datetime."""
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(value)
    except ValueError as e:
        raise ValueError(f"{where}: not an ISO-8601 instant: {text.strip()!r}") from e
    if when.tzinfo is None:
        raise ValueError(f"{where}: {text.strip()!r} has no time zone (write it in UTC with a trailing Z)")
    return when.astimezone(timezone.utc)


@dataclass(frozen=True)
class FileTime:
    """The instant written in ``path`` by a trusted time service."""

    path: Path

    def __call__(self) -> datetime:
        try:
            text = self.path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as e:
            raise VehicleStateError(f"secure time source {self.path} cannot be read: {e}") from e
        try:
            return parse_instant(text, str(self.path))
        except ValueError as e:
            raise VehicleStateError(f"secure time source {e}") from e


def reference_time(source: TimeSource, floor: datetime | None) -> datetime:
    """``source()``, but never earlier than ``floor``; an aware UTC datetime."""
    now = source()
    if now.tzinfo is None:
        raise ConfigurationError(f"time source returned a naive datetime {now!r}: it must be aware (UTC)")
    now = now.astimezone(timezone.utc)
    return max(now, floor) if floor is not None else now
