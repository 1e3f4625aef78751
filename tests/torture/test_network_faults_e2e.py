"""Network faults from the bench backend's knobs during a campaign's downloads: the campaign still completes.

The V2 -> V3 campaign downloads brake's image (plain) and body's (AES-GCM encrypted) over
mutual TLS from the bench backend. dmclient is first put back to its end-of-line state
(factory images only), so the targets are downloaded again, and the backend's admin port
arms one of each fault on those files: a connection dropped mid-body, then a resume whose
``Range`` the server ignores (200 with the whole file) and that stalls mid-body; a 503, then
a 429 with ``Retry-After``. The campaign completes, every invariant holds, and the backend's
request log shows each fault served.
"""

from __future__ import annotations

import pytest

from .harness import TortureBench, run_with_network_faults

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def test_drops_ignored_range_stall_503_and_429_during_downloads(bench: TortureBench) -> None:
    run, served = run_with_network_faults(bench)
    assert not run.violations, run.describe()
    assert run.outcome == "completed", run.describe()
    assert run.faults_injected == 4, served  # every fault was served once
    brake, body = served.values()
    assert brake[0]["aborted"], brake  # dropped mid-body
    assert brake[1]["range"], brake  # the resume asked for the rest ...
    assert brake[1]["status"] == 200  # ... and got the whole file, which dmclient took from the start
    assert [r["status"] for r in body][:3] == [503, 429, 200], body
