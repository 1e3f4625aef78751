"""SOME/IP-SD session counters and reboot detection (PRS_SOMEIPSD "Reboot Detection").

A sender keeps one session counter per channel (its multicast messages, and each unicast peer):
it starts at 1 with the reboot flag set, counts up to 0xFFFF, wraps to 1 and clears the reboot
flag from the first wrap on. A receiver tracks (reboot flag, session id) per sender and channel
and sees a reboot when the flag goes 0 -> 1, or stays 1 while the session id does not increase.
Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Hashable

MULTICAST = "multicast"
UNICAST = "unicast"


class SessionCounter:
    """The next (session id, reboot flag) for one channel of one sender."""

    def __init__(self) -> None:
        self.next_id = 1
        self.reboot = True

    def take(self) -> tuple[int, bool]:
        session, reboot = self.next_id, self.reboot
        if self.next_id == 0xFFFF:
            self.next_id = 1
            self.reboot = False
        else:
            self.next_id += 1
        return session, reboot


class SenderSessions:
    """A sender's counters: one for multicast, one per unicast peer."""

    def __init__(self) -> None:
        self._counters: dict[Hashable, SessionCounter] = {}

    def take(self, channel: Hashable) -> tuple[int, bool]:
        return self._counters.setdefault(channel, SessionCounter()).take()


class RebootDetector:
    """The receiving side: one (reboot flag, last session id) per (sender, channel)."""

    def __init__(self) -> None:
        self._last: dict[tuple[Hashable, str], tuple[bool, int]] = {}

    def observe(self, sender: Hashable, channel: str, session_id: int, reboot: bool) -> bool:
        """Record a message; True if it shows that ``sender`` rebooted since its previous message."""
        key = (sender, channel)
        previous = self._last.get(key)
        self._last[key] = (reboot, session_id)
        if previous is None:
            return False
        old_reboot, old_session = previous
        return (not old_reboot and reboot) or (old_reboot and reboot and session_id <= old_session)

    def forget(self, sender: Hashable) -> None:
        for key in [key for key in self._last if key[0] == sender]:
            del self._last[key]
