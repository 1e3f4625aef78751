"""Fixtures of the stack tests: one bench scenario per module, a supervisor per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.runtime.supervisor import Supervisor, select_daemons
from bench.scenario import Scenario


@pytest.fixture(scope="module")
def scenario() -> Iterator[Scenario]:
    with Scenario() as s:
        yield s


@pytest.fixture
def supervisor_for(scenario: Scenario) -> Iterator[object]:
    """``supervisor_for(*names)``: a supervisor of those daemons on the scenario; all stopped after the test."""
    started: list[Supervisor] = []

    def make(*names: str) -> Supervisor:
        sup = Supervisor(scenario.stack_config, env=scenario.env, daemons=select_daemons(*names), grace=10.0)
        started.append(sup)
        return sup

    yield make
    for sup in started:
        sup.down()
