"""Resumable transfers against the real bench backend over mutual TLS, one fault knob at a time."""

from __future__ import annotations

import email.utils
import time
from pathlib import Path
from typing import Any

import pytest

from agent.errors import ProtocolError, TransportError, VerificationError
from dmclient.control import TransferControl
from dmclient.digests import Hashes
from dmclient.errors import HttpStatusError
from dmclient.fetcher import Fetcher, FetchResponse, Validator
from dmclient.transfer import Blob, ResumableTransfer

from .conftest import Backend, Client, FileInfo, payload

SIZE = 300_000
CHECKPOINT = 64 * 1024
CHUNK = 16 * 1024  # the client fixture's read size


def transfer(client: Client, f: FileInfo, tmp_path: Path, *, attempts: int = 4,
             hashes: Hashes | None = None, length: int | None = None,
             control: TransferControl | None = None) -> ResumableTransfer:
    blob = Blob(f.url, length or f.length, hashes or f.hashes, f.name)
    return ResumableTransfer(blob, tmp_path / f"{blob.key}.part", db=client.db, fetcher=client.fetcher,
                             policy=client.policy(attempts), checkpoint_bytes=CHECKPOINT,
                             control=control or TransferControl(sleep=client.sleep))


def requests_of(backend: Backend, f: FileInfo) -> list[dict[str, Any]]:
    reqs: list[dict[str, Any]] = backend.stats(f.name)["requests"]
    return reqs


def test_plain_download_verifies_and_records_no_range(backend: Backend, client: Client, tmp_path: Path) -> None:
    f = backend.put("plain.bin", payload(SIZE, 1))
    out = transfer(client, f, tmp_path).run()
    assert out.path.read_bytes() == f.data
    assert out.fetched == f.length
    (req,) = requests_of(backend, f)
    assert req["status"] == 200 and req["range"] is None
    assert req["client"] == "BENCHVIN000000001"  # the backend saw our client certificate (CN = VIN)


def test_dropped_connection_resumes_with_range_and_if_range(backend: Backend, client: Client,
                                                           tmp_path: Path) -> None:
    f = backend.put("drop.bin", payload(SIZE, 2))
    backend.faults({"path": f.name, "drop_after": 100_000, "times": 1})
    out = transfer(client, f, tmp_path).run()
    assert out.path.read_bytes() == f.data
    first, second = requests_of(backend, f)
    assert first["aborted"] and first["sent"] == 100_000
    assert second["status"] == 206
    assert second["range"] == f"bytes={second['start']}-"
    # resumed where the received bytes end: at most the partial read chunk is fetched again
    assert 100_000 - CHUNK < second["start"] <= 100_000
    assert second["if_range"] and second["if_range"].startswith('"')  # strong ETag as validator
    assert backend.stats(f.name)["bytes_sent"] == f.length


def test_truncated_body_every_time_gives_up_and_keeps_committed_bytes(backend: Backend, client: Client,
                                                                     tmp_path: Path) -> None:
    f = backend.put("trunc.bin", payload(SIZE, 3))
    backend.faults({"path": f.name, "truncate_at": 200_000})
    t = transfer(client, f, tmp_path, attempts=3)
    with pytest.raises(TransportError, match="gave up after 3 attempts"):
        t.run()
    rec = client.db.transfer(f.hashes.sha256)
    assert rec is not None and rec.committed == 200_000
    assert t.part_path.stat().st_size == 200_000  # consistent with the committed length
    # bounded: one attempt that brought bytes, then 3 that brought none
    assert len(requests_of(backend, f)) == 4 and len(client.sleeps) == 3
    backend.faults()
    out = transfer(client, f, tmp_path).run()  # later resume completes
    assert out.resumed_from == 200_000 and out.path.read_bytes() == f.data


def test_503_with_retry_after_seconds_is_honoured(backend: Backend, client: Client, tmp_path: Path) -> None:
    f = backend.put("busy.bin", payload(SIZE, 4))
    backend.faults({"path": f.name, "status": 503, "retry_after": 7, "times": 2})
    out = transfer(client, f, tmp_path).run()
    assert out.path.read_bytes() == f.data
    assert client.sleeps[:2] == [7.0, 7.0]
    assert [r["status"] for r in requests_of(backend, f)] == [503, 503, 200]


def test_429_with_retry_after_http_date_is_honoured(backend: Backend, client: Client, tmp_path: Path) -> None:
    f = backend.put("limited.bin", payload(SIZE, 5))
    when = email.utils.formatdate(time.time() + 60, usegmt=True)
    backend.faults({"path": f.name, "status": 429, "retry_after": when, "times": 1})
    transfer(client, f, tmp_path).run()
    assert 55 <= client.sleeps[0] <= 61


def test_retry_after_beyond_the_limit_fails_clearly(backend: Backend, client: Client, tmp_path: Path) -> None:
    f = backend.put("toolong-wait.bin", payload(1000, 6))
    backend.faults({"path": f.name, "status": 503, "retry_after": 86400})
    with pytest.raises(TransportError, match="retry after 86400 s, more than the configured limit"):
        transfer(client, f, tmp_path).run()


def test_404_is_not_retried(backend: Backend, client: Client, tmp_path: Path) -> None:
    f = FileInfo("missing.bin", f"{backend.url}/files/missing.bin", Path("/nonexistent"), b"x",
                 Hashes("0" * 64))
    with pytest.raises(HttpStatusError, match="HTTP 404") as e:
        transfer(client, f, tmp_path).run()
    assert e.value.status == 404 and client.sleeps == []


def test_500_retried_then_succeeds(backend: Backend, client: Client, tmp_path: Path) -> None:
    f = backend.put("err500.bin", payload(SIZE, 7))
    backend.faults({"path": f.name, "status": 500, "times": 2})
    out = transfer(client, f, tmp_path).run()
    assert out.path.read_bytes() == f.data and len(client.sleeps) == 2


def test_stall_hits_the_read_timeout_and_resumes(backend: Backend, client: Client, tmp_path: Path) -> None:
    f = backend.put("stall.bin", payload(SIZE, 8))
    backend.faults({"path": f.name, "stall_after": 150_000, "times": 1})
    client.fetcher.timeout = (5, 0.5)  # read timeout short for the bench; the stall lasts until released
    try:
        out = transfer(client, f, tmp_path).run()
    finally:
        backend.release()
    assert out.path.read_bytes() == f.data
    reqs = requests_of(backend, f)
    assert reqs[1]["status"] == 206 and 150_000 - CHUNK < reqs[1]["start"] <= 150_000


def test_corrupted_byte_is_rejected_and_the_part_discarded(backend: Backend, client: Client,
                                                          tmp_path: Path) -> None:
    f = backend.put("corrupt.bin", payload(SIZE, 9))
    backend.faults({"path": f.name, "corrupt_at": 12345})
    t = transfer(client, f, tmp_path)
    with pytest.raises(VerificationError, match="SHA-256 mismatch"):
        t.run()
    assert not t.part_path.exists()
    assert client.db.transfer(f.hashes.sha256) is None


def test_server_ignoring_range_restarts_from_zero(backend: Backend, client: Client, tmp_path: Path) -> None:
    f = backend.put("norange.bin", payload(SIZE, 10))
    backend.faults({"path": f.name, "drop_after": 100_000, "times": 1},
                   {"path": f.name, "ignore_range": True})
    out = transfer(client, f, tmp_path).run()
    assert out.path.read_bytes() == f.data
    assert any("whole file" in n for n in out.notes)
    second = requests_of(backend, f)[1]
    assert second["range"] is not None and second["status"] == 200


def test_file_changed_on_server_restarts_cleanly_via_if_range(backend: Backend, client: Client,
                                                             tmp_path: Path) -> None:
    old = backend.put("changing.bin", payload(SIZE, 11))
    backend.faults({"path": old.name, "truncate_at": 100_000})
    with pytest.raises(TransportError):
        transfer(client, old, tmp_path, attempts=1).run()
    new = backend.put("changing.bin", payload(SIZE, 12))  # the release was rebuilt: new bytes, new ETag
    backend.faults()
    with pytest.raises(VerificationError):  # the order still names the old digests
        transfer(client, old, tmp_path).run()
    last = requests_of(backend, old)[-1]
    assert last["if_range"] is not None and last["status"] == 200  # If-Range failed: whole new file
    out = transfer(client, new, tmp_path).run()
    assert out.path.read_bytes() == new.data


def test_announced_too_long_body_is_refused_before_reading(backend: Backend, client: Client,
                                                          tmp_path: Path) -> None:
    f = backend.put("long.bin", payload(SIZE, 13))
    backend.faults({"path": f.name, "extra_bytes": 10})
    t = transfer(client, f, tmp_path)
    with pytest.raises(VerificationError, match=f"server's file is {SIZE + 10} bytes, expected {SIZE}"):
        t.run()
    assert not t.part_path.exists()


def test_unannounced_too_long_body_is_cut_at_the_expected_length(backend: Backend, client: Client,
                                                                tmp_path: Path) -> None:
    f = backend.put("long-chunked.bin", payload(SIZE, 14))
    backend.faults({"path": f.name, "extra_bytes": 5000, "chunked": True})
    t = transfer(client, f, tmp_path)
    with pytest.raises(VerificationError, match="body longer than the expected"):
        t.run()
    assert not t.part_path.exists()


def test_shorter_file_than_ordered_is_a_verification_error(backend: Backend, client: Client,
                                                          tmp_path: Path) -> None:
    f = backend.put("short.bin", payload(SIZE, 15))
    with pytest.raises(VerificationError, match=f"server's file is {SIZE} bytes, expected {SIZE + 1}"):
        transfer(client, f, tmp_path, length=SIZE + 1).run()


def test_wrong_sha512_rejected_even_when_sha256_matches(backend: Backend, client: Client,
                                                       tmp_path: Path) -> None:
    f = backend.put("sha512.bin", payload(1000, 16))
    wrong = Hashes(f.hashes.sha256, "0" * 128)
    with pytest.raises(VerificationError, match="SHA-512 mismatch"):
        transfer(client, f, tmp_path, hashes=wrong).run()


def test_206_from_another_offset_is_a_protocol_error(client: Client, tmp_path: Path) -> None:
    # a correct server cannot produce this: drive the check with a fetcher that lies
    class Lying(Fetcher):
        def _fetch(self, url: str, *, offset: int, if_range: str | None) -> FetchResponse:
            return FetchResponse(url, 206, offset + 1, 10, Validator(), iter([b"x"]), lambda: None)

    f = FileInfo("lie.bin", "https://127.0.0.1:1/lie.bin", Path("/x"), b"0123456789", Hashes("1" * 64))
    t = transfer(client, f, tmp_path)
    t.fetcher = Lying()
    with pytest.raises(ProtocolError, match="got a range starting at 1"):
        t.run()
