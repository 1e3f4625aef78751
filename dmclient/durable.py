"""Durable file operations: fsync a file and its directory, publish a file atomically.

"Verify, then commit": a file becomes visible under its final name only after its bytes
and the directory entry are on disk (temp name in the same directory, fsync, rename,
fsync the directory), so a power cut leaves either the old state or the new one. A disk that
is full (``ENOSPC`` / ``EDQUOT`` from fsync or rename) is
:class:`~dmclient.errors.StorageFullError` naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

from dmclient.errors import disk_full_as_storage_error


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with disk_full_as_storage_error("syncing the directory", path):
            os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        with disk_full_as_storage_error("syncing", path):
            os.fsync(fd)
    finally:
        os.close(fd)


def publish(src: Path, dst: Path, *, mode: int | None = 0o444) -> None:
    """Move ``src`` (already complete and verified) to ``dst`` atomically and durably.

    ``src`` must be on the same filesystem as ``dst``; an existing ``dst`` is replaced.
    """
    fsync_file(src)
    if mode is not None:
        os.chmod(src, mode)
    with disk_full_as_storage_error(f"moving {src} to", dst):
        os.replace(src, dst)
    fsync_dir(dst.parent)
    if src.parent != dst.parent:
        fsync_dir(src.parent)
