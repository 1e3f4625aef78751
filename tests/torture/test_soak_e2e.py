"""A reduced soak: campaigns forth and back (V2 -> V3, rollback to V2) with no restart; no fd growth.

``benchmarks/reliability_report.py`` runs the full 100 campaigns and reports RSS and fd growth
per daemon; CI runs four and checks that no daemon's open file descriptors grow from the
second campaign on (the first one opens what stays open: the journal, sockets to peers, the
bus). RSS is printed, not judged: four campaigns are too few to tell a leak from the
allocator's high-water mark.
"""

from __future__ import annotations

import pytest

from .harness import TortureBench, soak

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def test_campaigns_forth_and_back_leave_no_file_descriptor_behind(bench: TortureBench) -> None:
    result = soak(bench, 4)
    print(f"\n{result.describe()}")
    assert not result.violations, result.violations
    assert result.outcomes == {"completed": 4}, result.outcomes
    grown = {d: g for d, g in result.fd_growth().items() if g > 0}
    assert not grown, f"open fds grew: {grown}\n{result.describe()}"
