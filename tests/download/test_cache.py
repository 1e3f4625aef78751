"""The package cache: verified images only, never replaced, budget with LRU eviction, pins."""

from __future__ import annotations

from pathlib import Path

import pytest

from dmclient.cache import PackageCache
from dmclient.digests import Hashes
from dmclient.errors import StorageFullError
from dmclient.state import StateDb

from .conftest import digests, payload, rot


@pytest.fixture
def cache(tmp_path: Path) -> PackageCache:
    times = iter(range(1, 10_000))
    db = StateDb(tmp_path / "state.db", clock=lambda: float(next(times)))
    return PackageCache(tmp_path / "cache", db, budget=1000)


def stage(cache: PackageCache, data: bytes) -> tuple[Path, Hashes]:
    h = digests(data)
    p = cache.temp_path(h.sha256)
    p.write_bytes(data)
    return p, h


def put(cache: PackageCache, data: bytes) -> Hashes:
    p, h = stage(cache, data)
    cache.admit(p, h, len(data))
    return h


def test_admitted_image_is_read_only_under_its_sha256(cache: PackageCache) -> None:
    data = payload(100, 1)
    h = put(cache, data)
    path = cache.lookup(h)
    assert path == cache.objects / h.sha256 and path.read_bytes() == data
    assert path.stat().st_mode & 0o222 == 0
    assert not any(cache.tmp.iterdir())


def test_existing_entry_is_never_replaced(cache: PackageCache) -> None:
    data = payload(100, 2)
    h = put(cache, data)
    before = (cache.objects / h.sha256).stat().st_ino
    p, _ = stage(cache, data)
    cache.admit(p, h, 100)
    assert (cache.objects / h.sha256).stat().st_ino == before and not p.exists()


def test_a_cached_image_changed_at_rest_gives_way_to_the_fresh_verified_file(
        cache: PackageCache, caplog: pytest.LogCaptureFixture) -> None:
    data = payload(100, 20)
    h = put(cache, data)
    cache.pin(h.sha256, "previous:engine")  # e.g. the rollback image: pinned, and the most exposed
    cached = cache.objects / h.sha256
    rot(cached, at=50)
    fresh, _ = stage(cache, data)  # the same image, downloaded and verified again
    assert cache.admit(fresh, h, 100) == cached
    assert cached.read_bytes() == data and not fresh.exists()
    assert cached.stat().st_mode & 0o222 == 0
    assert [(e.sha256, e.pins) for e in cache.entries()] == [(h.sha256, ("previous:engine",))]  # still pinned
    assert f"cached image {cached} no longer matches its SHA-256" in caplog.text


def test_a_truncated_cached_image_gives_way_too(cache: PackageCache, caplog: pytest.LogCaptureFixture) -> None:
    data = payload(100, 21)
    h = put(cache, data)
    rot(cache.objects / h.sha256, at=60, truncate=True)
    fresh, _ = stage(cache, data)
    assert cache.admit(fresh, h, 100).read_bytes() == data
    assert "is 60 bytes, admitted with 100" in caplog.text


def test_a_verified_lookup_drops_a_changed_image_and_keeps_its_pins(cache: PackageCache) -> None:
    data = payload(100, 22)
    h = put(cache, data)
    cache.pin(h.sha256, "campaign:7")
    rot(cache.objects / h.sha256, at=0)
    assert cache.lookup(h) is not None  # the index alone does not read the bytes
    assert cache.lookup(h, verify=True) is None
    assert cache.entries() == [] and not (cache.objects / h.sha256).exists()
    put(cache, data)  # fetched again: pinned again
    assert [e.pins for e in cache.entries()] == [("campaign:7",)]
    assert cache.lookup(h, verify=True) == cache.objects / h.sha256


def test_lookup_refuses_a_different_sha512(cache: PackageCache) -> None:
    h = put(cache, payload(100, 3))
    assert cache.lookup(Hashes(h.sha256, "0" * 128)) is None


def test_least_recently_used_unpinned_entry_is_evicted(cache: PackageCache) -> None:
    a = put(cache, payload(400, 4))
    b = put(cache, payload(400, 5))
    cache.lookup(a)  # a is now more recently used than b
    c = put(cache, payload(400, 6))
    assert cache.lookup(a) and cache.lookup(c)
    assert cache.lookup(b) is None and not (cache.objects / b.sha256).exists()


def test_pinned_entries_are_never_evicted(cache: PackageCache) -> None:
    a = put(cache, payload(400, 7))
    b = put(cache, payload(400, 8))
    cache.pin(a.sha256, "rollback:engine")
    cache.pin(b.sha256, "campaign:42")
    with pytest.raises(StorageFullError, match="800 bytes are pinned"):
        put(cache, payload(400, 9))
    assert cache.lookup(a) and cache.lookup(b)
    assert cache.unpin(None, "campaign:42") == 1
    put(cache, payload(400, 10))
    assert cache.lookup(a) and cache.lookup(b) is None


def test_in_use_entries_are_kept_during_an_admission(cache: PackageCache) -> None:
    a = put(cache, payload(400, 11))
    b = put(cache, payload(400, 12))
    p, h = stage(cache, payload(400, 13))
    cache.admit(p, h, 400, keep=[a.sha256])  # a is a delta base being read
    assert cache.lookup(a) and cache.lookup(b) is None


def test_reconcile_readopts_orphans_and_drops_lost_entries(cache: PackageCache) -> None:
    data = payload(100, 14)
    h = digests(data)
    (cache.objects / h.sha256).write_bytes(data)  # crash between rename and index write
    (cache.objects / ("f" * 64)).write_bytes(b"not what its name says")
    (cache.tmp / "half-decrypted").write_bytes(b"plaintext of unknown standing")
    lost = put(cache, payload(100, 15))
    (cache.objects / lost.sha256).chmod(0o644)
    (cache.objects / lost.sha256).unlink()
    cache.reconcile()
    assert [e.sha256 for e in cache.entries()] == [h.sha256]
    assert not (cache.objects / ("f" * 64)).exists() and not any(cache.tmp.iterdir())


def test_sha512_is_checked_on_the_bytes_when_first_asked(cache: PackageCache) -> None:
    data = payload(100, 16)
    h = digests(data)
    p, _ = stage(cache, data)
    cache.admit(p, Hashes(h.sha256), 100)  # admitted on SHA-256 alone
    assert cache.lookup(Hashes(h.sha256, "1" * 128)) is None
    assert cache.lookup(h) is not None
    assert cache.db.cache_entry(h.sha256).sha512 == h.sha512  # type: ignore[union-attr]
