"""systemd's part on the bench: sd_notify sockets, ``WatchdogSec=`` and ``Restart=`` for supervised daemons.

On a board systemd runs the units of ``configs/systemd/`` with ``Type=notify``,
``WatchdogSec=`` and ``Restart=on-failure``: it hands each daemon ``$NOTIFY_SOCKET`` and
``$WATCHDOG_USEC``, and when no ``WATCHDOG=1`` arrives within the timeout it sends
``SIGABRT`` (``TimeoutAbortSec=``, then ``SIGKILL``) and restarts the unit; a unit whose
process dies is restarted too. On the bench :class:`WatchdogKeeper` does the same for the
daemons of a :class:`~agent.runtime.supervisor.Supervisor`:

* one datagram socket per daemon (``<runtime dir>/notify/<daemon>.sock``), so a message's
  socket says which daemon sent it; the daemons get ``NOTIFY_SOCKET`` and ``WATCHDOG_USEC``
  through the supervisor's ``daemon_env`` hook;
* ``READY=1`` arms the daemon's watchdog, ``WATCHDOG=1`` re-arms it (:class:`WatchdogTimers`,
  pure, clock injected);
* a daemon past its timeout gets ``SIGABRT``, ``SIGKILL`` after ``abort_grace`` s, and is
  started again (``supervisor.up()``); a daemon found dead is started again as well;
* every restart is recorded (:class:`Restart`) and :meth:`WatchdogKeeper.wait_restart` waits
  for one on a condition variable, with a timeout that fails loudly.

::

    sup = Supervisor(config, env=env)
    with WatchdogKeeper(sup, watchdog_sec=3.0) as keeper:   # starts the daemons
        ...
        restart = keeper.wait_restart("agent", timeout=60)
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from agent.errors import OtaError, OtaTimeoutError
from agent.runtime.supervisor import Supervisor

log = logging.getLogger(__name__)

TICK = 0.2  # s: the longest the keeper's loop sleeps between checks


class WatchdogTimers:
    """Per daemon the watchdog deadline: armed by READY=1, re-armed by WATCHDOG=1 (no I/O, clock injected)."""

    def __init__(self, timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        if timeout <= 0:
            raise ValueError(f"watchdog timeout must be > 0, got {timeout}")
        self.timeout = timeout
        self.clock = clock
        self._deadline: dict[str, float] = {}

    def message(self, name: str, fields: Mapping[str, str]) -> None:
        """One sd_notify message from ``name``: READY=1 arms, WATCHDOG=1 re-arms, WATCHDOG=trigger fires."""
        if fields.get("WATCHDOG") == "trigger":
            self._deadline[name] = self.clock() - 1.0
        elif fields.get("READY") == "1" or (fields.get("WATCHDOG") == "1" and name in self._deadline):
            self._deadline[name] = self.clock() + self.timeout

    def armed(self, name: str) -> bool:
        return name in self._deadline

    def disarm(self, name: str) -> None:
        """The daemon stopped or is being restarted: no deadline until its next READY=1."""
        self._deadline.pop(name, None)

    def overdue(self) -> list[str]:
        now = self.clock()
        return sorted(name for name, deadline in self._deadline.items() if now > deadline)

    def next_deadline(self) -> float | None:
        return min(self._deadline.values(), default=None)


def parse_notify(data: bytes) -> dict[str, str]:
    """``KEY=value`` lines of one sd_notify datagram."""
    fields = {}
    for line in data.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key] = value
    return fields


@dataclass(frozen=True)
class Restart:
    """One restart the keeper made."""

    daemon: str
    reason: str  # "watchdog" | "exited"
    old_pid: int | None
    new_pid: int | None
    detail: str


class WatchdogKeeper:
    """Plays systemd for a supervisor's daemons; see the module docstring. A context manager."""

    def __init__(self, supervisor: Supervisor, *, watchdog_sec: float, abort_grace: float = 5.0,
                 restart_exited: bool = True, clock: Callable[[], float] = time.monotonic) -> None:
        self.sup = supervisor
        self.timers = WatchdogTimers(watchdog_sec, clock)
        self.abort_grace = abort_grace
        self.restart_exited = restart_exited
        self.notify_dir = supervisor.runtime_dir / "notify"
        self.restarts: list[Restart] = []
        self.error: str | None = None
        self._sockets: dict[int, tuple[str, socket.socket]] = {}
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._paused = False
        self._thread = threading.Thread(target=self._run, name="watchdog-keeper", daemon=True)

    # -- lifecycle ----------------------------------------------------------------------------------
    def __enter__(self) -> WatchdogKeeper:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        """Bind the notify sockets, start the daemons with them, and watch."""
        self.notify_dir.mkdir(parents=True, exist_ok=True)
        for spec in self.sup.daemons:
            path = self._socket_path(spec.name)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(str(path))
            sock.setblocking(False)
            self._sockets[sock.fileno()] = (spec.name, sock)
        self.sup.daemon_env = self._env
        self.sup.core_dumps = False
        try:
            self.sup.up(parallel=True)
        except BaseException:
            self._close_sockets()
            raise
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (the daemons keep running; ``supervisor.down()`` stops them)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)
        self._close_sockets()

    def _close_sockets(self) -> None:
        for name, sock in self._sockets.values():
            sock.close()
            with contextlib.suppress(FileNotFoundError):
                self._socket_path(name).unlink()
        self._sockets.clear()

    def _socket_path(self, name: str) -> Path:
        return self.notify_dir / f"{name}.sock"

    def _env(self, name: str) -> dict[str, str]:
        return {"NOTIFY_SOCKET": str(self._socket_path(name)),
                "WATCHDOG_USEC": str(int(self.timers.timeout * 1_000_000))}

    # -- waiting ------------------------------------------------------------------------------------
    def wait_restart(self, name: str, timeout: float, *, after: int = 0) -> Restart:
        """The first restart of ``name`` among :attr:`restarts` from index ``after``; OtaTimeoutError if none."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [r for r in self.restarts[after:] if r.daemon == name]
                if found:
                    return found[0]
                if self.error is not None:
                    raise OtaError(f"the watchdog keeper failed: {self.error}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise OtaTimeoutError(f"{name} was not restarted within {timeout:g} s "
                                          f"(restarts so far: {self.restarts})")
                self._changed.wait(left)

    # -- the loop -----------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._step()
        except Exception as e:  # a keeper that dies must say so to whoever waits on it
            log.exception("watchdog keeper failed")
            with self._changed:
                self.error = f"{type(e).__name__}: {e}"
                self._changed.notify_all()

    def _step(self) -> None:
        wait = TICK
        upcoming = self.timers.next_deadline()
        if upcoming is not None:
            wait = max(0.0, min(wait, upcoming - self.timers.clock()))
        readable, _, _ = select.select(list(self._sockets), [], [], wait)
        for fd in readable:
            name, sock = self._sockets[fd]
            with contextlib.suppress(BlockingIOError):
                while True:
                    self.timers.message(name, parse_notify(sock.recv(4096)))
        for name in self.timers.overdue():
            old = self.sup.running_pid(name)
            self._restart(name, "watchdog", self._abort(name), old)
        if self.restart_exited:
            for spec in self.sup.daemons:
                if self.timers.armed(spec.name) and self.sup.running_pid(spec.name) is None:
                    self._restart(spec.name, "exited", "the process exited", self.sup.recorded_pid(spec.name))

    def _abort(self, name: str) -> str:
        """SIGABRT (systemd's watchdog signal), SIGKILL after ``abort_grace`` s; what happened."""
        pid = self.sup.running_pid(name)
        if pid is None:
            return "watchdog timeout; the process had already exited"
        log.error("%s: watchdog timeout (%.3g s without WATCHDOG=1): SIGABRT to pid %d", name,
                  self.timers.timeout, pid)
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return "watchdog timeout; the process had already exited"
        try:
            signal.pidfd_send_signal(fd, signal.SIGABRT)
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            if poller.poll(self.abort_grace * 1000):
                return f"watchdog timeout: pid {pid} aborted (SIGABRT)"
            signal.pidfd_send_signal(fd, signal.SIGKILL)
            poller.poll(self.abort_grace * 1000)
            return f"watchdog timeout: pid {pid} ignored SIGABRT for {self.abort_grace:g} s; killed (SIGKILL)"
        except ProcessLookupError:
            return f"watchdog timeout: pid {pid} aborted (SIGABRT)"
        finally:
            os.close(fd)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)

    def _restart(self, name: str, reason: str, detail: str, old: int | None) -> None:
        self.timers.disarm(name)
        self.sup.up(parallel=True)
        new = self.sup.running_pid(name)
        restart = Restart(name, reason, old, new, detail)
        log.warning("%s: restarted (%s): %s; new pid %s", name, reason, detail, new)
        with self._changed:
            self.restarts.append(restart)
            self._changed.notify_all()
