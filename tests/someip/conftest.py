"""Fixtures for the SOME/IP tests: one provider process per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from someip_bench import Net, free_net, start_provider


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    """The SD port and group of a running demo provider (SIGTERM at the end of the module)."""
    chosen = free_net()
    process = start_provider(chosen, tmp_path_factory.mktemp("someip") / "provider.log")
    yield chosen
    process.stop()
