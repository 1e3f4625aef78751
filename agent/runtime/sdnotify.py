"""systemd notification protocol (sd_notify), written by hand over the NOTIFY_SOCKET datagram socket.

Why by hand: the protocol is one datagram of ``KEY=value`` lines to the
AF_UNIX socket named by ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the
abstract namespace); the Python bindings (``systemd-python``, ``cysystemd``)
need libsystemd and a C compiler on every board image for these ten lines.

Usage::

    notifier = Notifier.from_env()       # does nothing when not run by systemd
    notifier.ready("serving on /run/ota-agent/dmclient.sock")
    notifier.watchdog()                  # WATCHDOG=1, see agent.runtime.watchdog
    notifier.stopping()

Sends never block the event loop (the socket is non-blocking); a failed
send is logged and reported as ``False``.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)


def notify_address(value: str | None) -> str | None:
    """The socket address for a ``$NOTIFY_SOCKET`` value: ``@name`` maps to the abstract namespace."""
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    log.warning("NOTIFY_SOCKET=%r is neither a path nor an abstract socket (@name); not notifying", value)
    return None


def watchdog_period(env: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """The watchdog timeout systemd asks for (``$WATCHDOG_USEC``) in seconds, if it is meant for us."""
    environ = os.environ if env is None else env
    usec = environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    owner = environ.get("WATCHDOG_PID")
    if owner and owner.isdigit() and int(owner) != (os.getpid() if pid is None else pid):
        return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not an integer", usec)
        return None
    return value / 1e6 if value > 0 else None


class Notifier:
    """Sends sd_notify messages; every method is a no-op (returning False) without NOTIFY_SOCKET."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._sock: socket.socket | None = None
        if address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Notifier:
        return cls(notify_address((os.environ if env is None else env).get("NOTIFY_SOCKET")))

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *fields: str) -> bool:
        """Send ``fields`` (``"READY=1"``, ``"STATUS=..."``) in one datagram."""
        if self._sock is None or self.address is None:
            return False
        for f in fields:
            if "=" not in f or "\n" in f:
                raise ValueError(f"sd_notify field must be one KEY=value line, got {f!r}")
        try:
            self._sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as e:
            log.warning("sd_notify %s failed: %s", fields[0].split("=", 1)[0] if fields else "", e)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={_line(status)}"] if status else []))

    def reloading(self) -> bool:
        # MONOTONIC_USEC lets Type=notify-reload units match the reload to this message
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={_line(status)}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={_line(text)}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _line(text: str) -> str:
    return " ".join(text.split("\n"))
