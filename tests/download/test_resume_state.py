"""What a restart finds on disk: committed bytes, uncommitted tails, corrupt or missing .part files."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from agent.errors import TransportError
from dmclient.control import TransferControl
from dmclient.errors import DownloadInterrupted
from dmclient.transfer import Blob, ResumableTransfer

from .conftest import Backend, Client, FileInfo, payload

SIZE = 400_000
CHECKPOINT = 50_000


def make(client: Client, f: FileInfo, tmp_path: Path, control: TransferControl | None = None) -> ResumableTransfer:
    return ResumableTransfer(Blob(f.url, f.length, f.hashes, f.name), tmp_path / "t.part", db=client.db,
                             fetcher=client.fetcher, policy=client.policy(1), checkpoint_bytes=CHECKPOINT,
                             control=control or TransferControl(sleep=client.sleep))


def interrupted_at(client: Client, backend: Backend, f: FileInfo, tmp_path: Path, offset: int) -> ResumableTransfer:
    """Leave a transfer as a crash would: the server cut the stream at ``offset``."""
    backend.faults({"path": f.name, "truncate_at": offset})
    t = make(client, f, tmp_path)
    with pytest.raises(TransportError):
        t.run()
    backend.faults()
    backend.admin.delete(f"{backend.admin_url}/stats", timeout=10)
    return t


def test_committed_length_follows_fsynced_checkpoints(backend: Backend, client: Client, tmp_path: Path) -> None:
    f = backend.put("ckpt.bin", payload(SIZE, 21))
    committed: list[int] = []
    real = client.db.commit_transfer

    def spy(key: str, n: int, prefix: str) -> None:
        committed.append(n)
        real(key, n, prefix)

    client.db.commit_transfer = spy  # type: ignore[method-assign,assignment]
    make(client, f, tmp_path).run()
    assert committed == sorted(committed) and committed[-1] == SIZE
    assert all(b - a >= CHECKPOINT for a, b in itertools.pairwise(committed[:-1]))


def test_uncommitted_tail_is_cut_and_the_range_starts_at_the_committed_length(
        backend: Backend, client: Client, tmp_path: Path) -> None:
    f = backend.put("tail.bin", payload(SIZE, 22))
    t = interrupted_at(client, backend, f, tmp_path, 120_000)
    with open(t.part_path, "ab") as part:  # bytes written after the last fsync+commit (a crash)
        part.write(b"garbage that was never committed")
    out = make(client, f, tmp_path).run()
    assert out.resumed_from == 120_000 and out.path.read_bytes() == f.data
    (req,) = backend.stats(f.name)["requests"]
    assert req["start"] == 120_000


def test_corrupt_part_is_detected_and_restarts_from_zero(backend: Backend, client: Client, tmp_path: Path) -> None:
    f = backend.put("corrupt-part.bin", payload(SIZE, 23))
    t = interrupted_at(client, backend, f, tmp_path, 150_000)
    with open(t.part_path, "r+b") as part:  # a flipped bit inside the committed bytes
        part.seek(1000)
        b = part.read(1)
        part.seek(1000)
        part.write(bytes([b[0] ^ 0x01]))
    out = make(client, f, tmp_path).run()
    assert out.resumed_from == 0 and out.path.read_bytes() == f.data
    assert any("corrupt" in n for n in out.notes)
    (req,) = backend.stats(f.name)["requests"]
    assert req["range"] is None


def test_part_shorter_than_committed_restarts_from_zero(backend: Backend, client: Client, tmp_path: Path) -> None:
    f = backend.put("short-part.bin", payload(SIZE, 24))
    t = interrupted_at(client, backend, f, tmp_path, 150_000)
    with open(t.part_path, "r+b") as part:
        part.truncate(10_000)
    out = make(client, f, tmp_path).run()
    assert out.resumed_from == 0 and out.path.read_bytes() == f.data
    assert any("shorter than" in n for n in out.notes)


def test_missing_part_restarts_from_zero(backend: Backend, client: Client, tmp_path: Path) -> None:
    f = backend.put("gone-part.bin", payload(SIZE, 25))
    t = interrupted_at(client, backend, f, tmp_path, 150_000)
    t.part_path.unlink()
    out = make(client, f, tmp_path).run()
    assert out.resumed_from == 0 and out.path.read_bytes() == f.data


def test_pause_commits_and_a_new_transfer_resumes_there(backend: Backend, client: Client, tmp_path: Path) -> None:
    f = backend.put("pause.bin", payload(SIZE, 26))
    control = TransferControl()
    t = make(client, f, tmp_path, control)
    t.on_progress = lambda n: control.request("paused") if n >= 100_000 else None
    with pytest.raises(DownloadInterrupted, match="paused"):
        t.run()
    rec = client.db.transfer(f.hashes.sha256)
    assert rec is not None and rec.committed >= 100_000 and t.part_path.stat().st_size == rec.committed
    out = make(client, f, tmp_path).run()
    assert out.resumed_from == rec.committed and out.path.read_bytes() == f.data
