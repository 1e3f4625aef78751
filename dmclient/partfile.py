"""The durable partial file of a download (``<key>.part``).

A thin wrapper over a raw file descriptor (no Python buffering, so what was written is
what :meth:`sync` makes durable). The low-level write is injectable so tests can make
the disk fill up on demand. ``ENOSPC`` (and ``EDQUOT``) become
:class:`~dmclient.errors.StorageFullError`; the caller then truncates back to the last
committed length so the file and the state database agree again.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

from dmclient.errors import StorageFullError

Writer = Callable[[int, memoryview], int]


class PartFile:
    def __init__(self, path: Path, *, write: Writer = os.write) -> None:
        self.path = path
        self._write = write
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def size(self) -> int:
        return os.fstat(self._fd).st_size

    def truncate(self, length: int) -> None:
        """Cut the file to ``length`` bytes (durably) and put the write position there."""
        os.ftruncate(self._fd, length)
        os.fsync(self._fd)
        os.lseek(self._fd, length, os.SEEK_SET)

    def seek_end(self) -> int:
        return os.lseek(self._fd, 0, os.SEEK_END)

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        try:
            while view:
                n = self._write(self._fd, view)
                view = view[n:]
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StorageFullError(f"disk full while writing {self.path}: {e.strerror}") from e
            raise

    def sync(self) -> None:
        try:
            os.fsync(self._fd)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StorageFullError(f"disk full while syncing {self.path}: {e.strerror}") from e
            raise

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> PartFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
