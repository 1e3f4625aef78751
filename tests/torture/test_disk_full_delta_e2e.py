"""A full disk during delta reconstruction: a clean failure naming the storage, then recovery.

The bench's one delta is the engine's V1 -> V2 image (bsdiff4 from the factory image), so this
module has a bench of its own started at V1 (the session's torture bench is at V2 and cannot go
back past the version it started on). dmclient's cache is put on a small tmpfs
(:func:`tests.torture.harness.small_cache`; skipped where a tmpfs cannot be mounted, and
tests/download/test_storage_full.py covers the same paths with an injected writer) and filled so
that the free-space check passes (it counts bytes) but the patch and the rebuilt image do not
both fit (tmpfs allocates pages): the patch downloads and verifies, then the kernel's ENOSPC
comes while the patched image is written.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from bench.scenario import V1, V2

from .harness import DOWNLOADS, TortureBench, run_with_full_disk_in_delta, torture_bench

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def v1_bench() -> Iterator[TortureBench]:
    if os.geteuid() != 0:  # before paying for a bench
        pytest.skip("mounting a tmpfs needs root; tests/download/test_storage_full.py covers ENOSPC in the "
                    "reconstruction with an injected writer")
    overrides = {"dmclient": {"downloads": DOWNLOADS}}
    with torture_bench(start_version=V1, image_size=2048, stack_overrides=overrides) as bench:
        yield bench


def test_a_full_disk_while_the_delta_is_applied_fails_cleanly_and_the_next_campaign_completes(
        v1_bench: TortureBench) -> None:
    result = run_with_full_disk_in_delta(v1_bench)
    if result is None:
        pytest.skip("cannot mount a tmpfs here (needs root and mount); tests/download/test_storage_full.py "
                    "covers ENOSPC in the reconstruction with an injected writer")
    print(f"\nfull disk in the delta ({result.left_free} bytes left): {result.full.detail}")
    assert result.full.result == "failed", result.full.describe()
    assert "StorageFullError" in result.full.detail and ".delta" in result.full.detail, result.full.detail
    assert result.full.vehicle_version == V1
    assert not result.findings, result.findings
    assert result.recovery.outcome == "completed", result.recovery.describe()
    assert result.recovery.vehicle_version == V2
