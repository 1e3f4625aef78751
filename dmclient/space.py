"""Free-space check before a download starts (``shutil.disk_usage``).

Each download checks for what it still needs (remaining bytes of the partial file plus
the files it will produce: plaintext, delta result) on top of a configured reserve that
the rest of the vehicle keeps. Concurrent downloads check independently; a disk that
fills up anyway is caught as ``ENOSPC`` while writing (see :mod:`dmclient.partfile`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from dmclient.errors import StorageFullError


def check_free_space(directory: Path, needed: int, *, reserve: int, what: str) -> None:
    """StorageFullError naming ``what``, the directory, needed and free bytes, if short."""
    free = shutil.disk_usage(directory).free
    if free - reserve < needed:
        raise StorageFullError(
            f"{what}: not enough free space in {directory}: needs {_mib(needed)}, "
            f"{_mib(free)} free and {_mib(reserve)} must stay free")


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n} bytes"
