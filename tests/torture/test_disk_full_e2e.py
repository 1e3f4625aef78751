"""A full disk under the package cache during a campaign's downloads: a clean failure, then recovery.

dmclient's cache (downloads, ``.part`` files, decryption output, verified objects) lives on a
real small filesystem: a tmpfs the test mounts over the bench's cache directory (root and
``mount`` work in this container and in CI; elsewhere the test is skipped, and
tests/download/test_disk_full.py covers ENOSPC with an injected writer). dmclient is put back to
its end-of-line state first, so the V2 -> V3 targets are downloaded again. The filesystem is
left a few pages short: the free-space check passes for a target on its own, but brake's
plain image and body's encrypted image plus its decrypted copy do not all fit, so the disk
fills during the downloads (ENOSPC from the kernel) or the check refuses the next target.

The campaign fails before OTA mode, naming the storage; the vehicle stays on V2, whole; the
journal has no open row; the cache holds only verified objects (nothing half-written counted).
Once space is back the next campaign completes.

V2 -> V3 carries no delta (the bench's delta is V1 -> V2's engine image): a disk filling *during
delta reconstruction* is test_disk_full_delta_e2e.py, on a bench of its own started at V1.
"""

from __future__ import annotations

import pytest

from bench.scenario import V2

from .harness import SMALL_FS_LEFT, TortureBench, fill, small_cache

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def test_a_full_disk_during_downloads_fails_cleanly_and_the_next_campaign_completes(bench: TortureBench) -> None:
    with small_cache(bench) as filler:
        if filler is None:
            pytest.skip("cannot mount a tmpfs here (needs root and mount); tests/download/test_disk_full.py "
                        "covers ENOSPC with an injected writer")
        fill(filler, SMALL_FS_LEFT)
        run = bench.run("update")
        print(f"\nfull disk: {run.detail}")
        assert run.result == "failed", run.describe()
        assert "space" in run.detail.lower(), run.detail  # ENOSPC or the free-space check, named
        # only the expected one: the campaign did not complete; everything else holds
        others = [v for v in run.violations if not v.startswith("campaign ended 'failed'")]
        assert not others, run.describe()
        assert run.vehicle_version == V2
        steps = {r.step for r in bench.journal(run.campaign)}
        assert "flash" not in steps and "ota_mode_on" not in steps, steps

        filler.unlink()
        again = bench.run("update")
        assert again.outcome == "completed" and not again.violations, again.describe()
