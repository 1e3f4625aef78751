"""The durable partial file of a download (``<key>.part``), and every other file dmclient writes.

A thin wrapper over a raw file descriptor (no Python buffering, so what was written is
what :meth:`sync` makes durable). The low-level write is injectable so tests can make
the disk fill up on demand. ``ENOSPC`` (and ``EDQUOT``) become
:class:`~dmclient.errors.StorageFullError`; the caller then truncates back to the last
committed length so the file and the state database agree again. The decryption and the
delta reconstruction write their output through :meth:`PartFile.create` the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from dmclient.errors import disk_full_as_storage_error

Writer = Callable[[int, memoryview], int]


class PartFile:
    def __init__(self, path: Path, *, write: Writer = os.write, fresh: bool = False) -> None:
        self.path = path
        self._write = write
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | (os.O_TRUNC if fresh else 0)
        with disk_full_as_storage_error("creating", path):
            self._fd = os.open(path, flags, 0o600)

    @classmethod
    def create(cls, path: Path, *, write: Writer = os.write) -> PartFile:
        """A new, empty file at ``path`` (an existing one is emptied)."""
        return cls(path, write=write, fresh=True)

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
        with disk_full_as_storage_error("writing", self.path):
            while view:
                n = self._write(self._fd, view)
                view = view[n:]

    def sync(self) -> None:
        with disk_full_as_storage_error("syncing", self.path):
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> PartFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
