"""A disk that is too small or fills up: clear error, consistent .part, resume once space is back."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dmclient.cache import PackageCache
from dmclient.control import TransferControl
from dmclient.errors import StorageFullError
from dmclient.job import JobSettings, TargetJob
from dmclient.order import TargetSpec
from dmclient.partfile import Writer
from dmclient.transfer import Blob, ResumableTransfer

from .conftest import Backend, Client, FileInfo, payload

SIZE = 400_000
CHECKPOINT = 64 * 1024


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 256 KiB filesystem (tmpfs), so ENOSPC comes from the kernel."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the injected-writer test covers ENOSPC")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True,
                       text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode}); "
                    "the injected-writer test covers ENOSPC")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def make(client: Client, f: FileInfo, part: Path, write: Writer = os.write) -> ResumableTransfer:
    return ResumableTransfer(Blob(f.url, f.length, f.hashes, f.name), part, db=client.db, fetcher=client.fetcher,
                             policy=client.policy(), checkpoint_bytes=CHECKPOINT,
                             control=TransferControl(sleep=client.sleep), write=write)


def check_consistent(client: Client, f: FileInfo, part: Path) -> int:
    rec = client.db.transfer(f.hashes.sha256)
    assert rec is not None
    assert part.stat().st_size == rec.committed  # file and state agree: nothing half-written counts
    return rec.committed


def test_enospc_from_a_real_small_filesystem(backend: Backend, client: Client, small_tmpfs: Path) -> None:
    f = backend.put("full-real.bin", payload(SIZE, 41))
    part = small_tmpfs / "x.part"
    with pytest.raises(StorageFullError, match="disk full while writing"):
        make(client, f, part).run()
    committed = check_consistent(client, f, part)
    assert 0 < committed < SIZE
    subprocess.run(["mount", "-o", "remount,size=2m", str(small_tmpfs)], check=True)  # space is back
    out = make(client, f, part).run()
    assert out.resumed_from == committed and out.path.read_bytes() == f.data


def test_enospc_from_an_injected_writer(backend: Backend, client: Client, tmp_path: Path) -> None:
    f = backend.put("full-injected.bin", payload(SIZE, 42))
    written = 0

    def filling_write(fd: int, data: memoryview) -> int:
        nonlocal written
        if written + len(data) > 250_000:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written += len(data)
        return os.write(fd, data)

    part = tmp_path / "y.part"
    with pytest.raises(StorageFullError, match="No space left on device"):
        make(client, f, part, filling_write).run()
    committed = check_consistent(client, f, part)
    assert committed >= 250_000 - CHECKPOINT - 16 * 1024
    out = make(client, f, part).run()
    assert out.resumed_from == committed and out.path.read_bytes() == f.data


def test_free_space_is_checked_before_anything_is_fetched(backend: Backend, client: Client,
                                                         small_tmpfs: Path) -> None:
    f = backend.put("too-big-for-disk.bin", payload(SIZE, 43))
    cache = PackageCache(small_tmpfs / "cache", client.db, budget=1 << 30)
    job = TargetJob(TargetSpec.parse(f.target(), "target"), cache=cache, db=client.db, fetcher=client.fetcher,
                    settings=JobSettings(client.policy(), CHECKPOINT, 1 << 20, 0))
    with pytest.raises(StorageFullError, match="not enough free space"):
        job.run()
    assert backend.stats(f.name)["requests"] == []
    assert cache.entries() == []
