"""Create a daemon's listening Unix socket safely.

* One daemon per socket: an exclusive ``flock`` on ``<socket>.lock`` is held
  for the daemon's lifetime (the kernel drops it when the process dies, even
  on SIGKILL), so a socket file left behind is stale exactly when nobody
  holds the lock, and is removed without guessing. The lock file itself is
  left in place: deleting it would let two starting daemons lock two
  different files.
* A path that exists and is not a socket is never removed.
* The socket is bound under umask 0o177 (so it is never reachable by others,
  even for an instant), then chmod-ed to the configured mode and optionally
  chgrp-ed to the configured group. The umask is process-wide: bind before
  starting threads that create files, as :class:`agent.runtime.daemon.Daemon` does.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

from agent.errors import ConfigurationError
from agent.ipc.paths import check_socket_path

log = logging.getLogger(__name__)

_umask_lock = threading.Lock()


@dataclass
class Listener:
    """A bound, listening socket plus the lock that makes it ours."""

    path: Path
    sock: socket.socket
    lock_fd: int
    inode: int

    def remove(self) -> None:
        """Unlink the socket file if it is still the one we bound, then release the lock."""
        with contextlib.suppress(OSError):
            if os.lstat(self.path).st_ino == self.inode:
                os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.close(self.lock_fd)
        self.lock_fd = -1


def bind_listener(path: Path, *, mode: int = 0o660, group: int | None = None, backlog: int = 64,
                  dir_mode: int = 0o755) -> Listener:
    """Lock, clear a stale socket, bind with a safe umask, set mode and group, listen."""
    check_socket_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=dir_mode)
    except OSError as e:
        raise ConfigurationError(f"cannot create the runtime directory: {e.strerror or e}",
                                 source=str(path.parent)) from e
    lock_path = path.with_name(path.name + ".lock")
    lock_fd = _take_lock(lock_path, path)
    try:
        _remove_stale(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with _umask_lock:
                old = os.umask(0o177)
                try:
                    sock.bind(os.fspath(path))
                finally:
                    os.umask(old)
            os.chmod(path, mode)
            if group is not None:
                os.chown(path, -1, group)
            sock.listen(backlog)
            sock.setblocking(False)
            inode = os.lstat(path).st_ino
        except OSError as e:
            sock.close()
            raise ConfigurationError(f"cannot listen on the socket: {e.strerror or e}",
                                     source=str(path)) from e
    except BaseException:
        os.close(lock_fd)
        raise
    log.debug("listening on %s (mode %o)", path, mode)
    return Listener(path=path, sock=sock, lock_fd=lock_fd, inode=inode)


def _take_lock(lock_path: Path, path: Path) -> int:
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise ConfigurationError(f"cannot open lock file: {e.strerror or e}", source=str(lock_path)) from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_pid(fd)
        os.close(fd)
        who = f" (pid {holder})" if holder else ""
        raise ConfigurationError(f"another daemon{who} is already serving this socket",
                                 source=str(path)) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _read_pid(fd: int) -> str:
    with contextlib.suppress(OSError):
        return os.pread(fd, 32, 0).decode(errors="replace").strip()
    return ""


def _remove_stale(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ConfigurationError("exists and is not a socket; refusing to replace it", source=str(path))
    os.unlink(path)
    log.info("removed stale socket %s", path)
