"""A full disk on every write path of dmclient is a StorageFullError naming the file, never a bare OSError.

The paths: a download's ``.part`` (tests/download/test_disk_full.py), the decryption's plaintext and the
delta reconstruction's output, each driven to ENOSPC by a real small filesystem (a tmpfs, where root can
mount one; skipped with the reason elsewhere) and through the injectable low-level writer the job hands
to every writer (ENOSPC and EDQUOT). Publishing into the cache (fsync, rename) and creating the cache's
directories go through the same :func:`~dmclient.errors.disk_full_as_storage_error`, tested here on its own
(a tmpfs does not run out of space on a rename). After the failure
the half-written file is gone, the inputs (ciphertext, delta base, patch) are intact, and with the
space back the same target completes without fetching again what was verified.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import bsdiff4
import pytest

from dmclient.delta import apply_delta
from dmclient.encryption import decrypt_file, encrypt_file
from dmclient.errors import StorageFullError, disk_full_as_storage_error
from dmclient.job import JobResult, JobSettings, TargetJob
from dmclient.order import TargetSpec
from dmclient.partfile import Writer
from dmclient.uptane.tuf_errors import map_tuf_error

from .conftest import Backend, Client, digests, payload
from .test_disk_full import small_tmpfs  # noqa: F401  (the fixture: a real 256 KiB tmpfs)
from .test_job import VEHICLE, delta_setup, encrypted_target, nothing_unverified, seed_cache


def filling_writer(allowed: int, code: int = errno.ENOSPC) -> Writer:
    """A low-level write that lets ``allowed`` bytes through, then fails as a full disk does."""
    written = 0

    def write(fd: int, data: memoryview) -> int:
        nonlocal written
        if written + len(data) > allowed:
            raise OSError(code, os.strerror(code))
        written += len(data)
        return os.write(fd, data)

    return write


def decrypting(tmp_path: Path, out: Path, size: int, write: Writer = os.write) -> Path:
    """Encrypt ``size`` bytes into ``tmp_path``, then decrypt them into ``out`` (ciphertext path returned)."""
    key, nonce = os.urandom(32), os.urandom(12)
    plain, cipher = tmp_path / "plain", tmp_path / "cipher"
    plain.write_bytes(payload(size, 7))
    encrypt_file(plain, cipher, key, nonce)
    before = cipher.read_bytes()
    try:
        decrypt_file(cipher, out, key, nonce, what="body", chunk=16 * 1024, write=write)
    finally:
        assert cipher.read_bytes() == before  # the input is never touched
    return cipher


def patching(tmp_path: Path, out: Path, size: int, write: Writer = os.write) -> None:
    """Make a base and a bsdiff4 patch of ``size`` bytes in ``tmp_path``, then rebuild into ``out``."""
    base_data = payload(size, 8)
    new = base_data[: size // 2] + b"calibration v2" * 100 + base_data[size // 2:]
    base, patch = tmp_path / "base", tmp_path / "patch"
    base.write_bytes(base_data)
    patch.write_bytes(bsdiff4.diff(base_data, new))
    try:
        apply_delta(base, patch, out, base_hashes=digests(base_data), target_hashes=digests(new),
                    target_length=len(new), max_bytes=1 << 24, what="engine", write=write)
    finally:
        assert base.read_bytes() == base_data  # the delta base is never touched


WRITERS: dict[str, Callable[[Path, Path, int, Writer], object]] = {"decryption": decrypting,
                                                                    "delta reconstruction": patching}


def test_only_a_full_disk_becomes_storage_full_and_the_file_is_named(tmp_path: Path) -> None:
    for code in (errno.ENOSPC, errno.EDQUOT):
        with pytest.raises(StorageFullError, match=f"disk full while writing {tmp_path}/x: ") as info, \
                disk_full_as_storage_error("writing", tmp_path / "x"):
            raise OSError(code, os.strerror(code))
        assert isinstance(info.value.__cause__, OSError) and info.value.__cause__.errno == code
    with pytest.raises(PermissionError), disk_full_as_storage_error("writing", tmp_path / "x"):
        raise PermissionError(errno.EACCES, "Permission denied")


def test_a_full_disk_while_python_tuf_stores_metadata_is_storage_full_not_invalid_metadata() -> None:
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/vehicle/uptane/image/timestamp.json")
    error = map_tuf_error(full, "image")
    assert isinstance(error, StorageFullError), error
    assert "image repository: disk full while storing metadata /vehicle/uptane/image/timestamp.json" in str(error)
    assert not isinstance(map_tuf_error(OSError(errno.EIO, "I/O error"), "image"), StorageFullError)


@pytest.mark.parametrize("what", sorted(WRITERS))
def test_a_real_full_filesystem_is_storage_full_and_leaves_no_half_written_file(
        what: str, tmp_path: Path, small_tmpfs: Path) -> None:  # noqa: F811 (the imported fixture)
    out = small_tmpfs / "result"
    with pytest.raises(StorageFullError, match=f"disk full while writing {out}: No space left on device"):
        WRITERS[what](tmp_path, out, 400_000, os.write)  # 400 kB into a 256 KiB filesystem
    assert not out.exists() and not any(small_tmpfs.iterdir())


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT], ids=["ENOSPC", "EDQUOT"])
@pytest.mark.parametrize("what", sorted(WRITERS))
def test_an_injected_full_disk_is_storage_full_and_leaves_no_half_written_file(
        what: str, code: int, tmp_path: Path) -> None:
    out = tmp_path / "out" / "result"
    out.parent.mkdir()
    with pytest.raises(StorageFullError, match=f"disk full while writing {out}: {os.strerror(code)}"):
        WRITERS[what](tmp_path, out, 100_000, filling_writer(40_000, code))
    assert not any(out.parent.iterdir())


def run_job(client: Client, target: dict[str, object], write: Writer = os.write) -> JobResult:
    job = TargetJob(TargetSpec.parse(target, "target"), cache=client.cache, db=client.db, fetcher=client.fetcher,
                    settings=JobSettings(client.policy(), 64 * 1024, 1 << 20, 0, VEHICLE, write))
    return job.run()


def test_a_disk_filling_in_the_delta_reconstruction_fails_the_target_and_resumes_from_the_verified_patch(
        backend: Backend, client: Client) -> None:
    base, new, target = delta_setup(backend, "full-disk-delta", 71)
    seed_cache(client.cache, base)
    client.cache.pin(digests(base).sha256, "factory")
    patch_name = "full-disk-delta.patch"
    # room for the patch, not for the rebuilt image: not a fallback to the full image (it needs the room too)
    with pytest.raises(StorageFullError, match=r"disk full while writing .*/tmp/.*\.delta: No space left"):
        run_job(client, target, filling_writer(len(bsdiff4.diff(base, new)) + 10_000))
    nothing_unverified(client)  # no half-written file in tmp/, every cached object verified
    assert [e.sha256 for e in client.cache.entries()] == [digests(base).sha256]
    assert client.cache.entries()[0].pins  # the base is still pinned
    assert backend.stats("full-disk-delta-full.bin")["requests"] == []
    fetched = len(backend.stats(patch_name)["requests"])

    result = run_job(client, target)  # the space is back
    assert result.source == "delta" and result.path.read_bytes() == new
    assert len(backend.stats(patch_name)["requests"]) == fetched  # the verified patch was kept, not fetched again
    assert backend.stats("full-disk-delta-full.bin")["requests"] == []


def test_a_disk_filling_in_the_decryption_fails_the_target_and_resumes_from_the_verified_ciphertext(
        backend: Backend, client: Client, tmp_path: Path) -> None:
    data = payload(300_000, 72)
    target = encrypted_target(backend, tmp_path, "full-disk-enc.bin", data, wrap_to=VEHICLE.public_key())
    with pytest.raises(StorageFullError, match=r"disk full while writing .*/tmp/.*\.plain: No space left"):
        run_job(client, target, filling_writer(len(data) + 16 + 100_000))  # the ciphertext, a third of the plaintext
    nothing_unverified(client)
    assert client.cache.entries() == []
    fetched = len(backend.stats("full-disk-enc.bin")["requests"])

    result = run_job(client, target)
    assert result.source == "full" and result.path.read_bytes() == data
    assert len(backend.stats("full-disk-enc.bin")["requests"]) == fetched
