"""SIGKILL of the engine, of the update agent and of all daemons at each journal transition of a campaign.

The bench's V2 -> V3 campaign (brake on A/B banks and body, flashed in parallel on their two
buses; engine unchanged) runs with every daemon as a process (:mod:`tests.engine.killkit`).
For each victim the kit SIGKILLs it right after a transition is journalled (waited for on the
engine's ``agent.campaign.step`` events), restarts it through the supervisor and lets the
campaign end; then the vehicle is on the old or the new version (read from the ECUs), never
between, the result says which, no journal row is left open, no step was redone after it was
done, OTA mode is off and an interrupted flash was redone as a new job.

Cost (CI budget): one bench for the module; several kills chained in one campaign (each step
interrupted at most once, so the loop breaker does not decide the outcome), further campaigns for
the targets a campaign went past while the victims restarted, the vehicle rolled back to V2 in
between (the engine's own rollback campaign). The engine and the update agent are killed at every
transition; all daemons together, whose restart costs the most, at the start of every step (the
ends are the engine's and the update agent's cases plus a restart of the others).
``OTA_KILL_FULL=1`` runs all daemons at every transition too (about 70 s more).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from bench.scenario import V2, V3
from tests.engine.killkit import (
    KillBench,
    KillRun,
    Transition,
    campaign_transitions,
    cover,
    journal_transitions,
    run_with_kills,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

TRANSITIONS = campaign_transitions()
FULL = bool(os.environ.get("OTA_KILL_FULL"))
TARGETS = {
    "engine": TRANSITIONS,
    "update_agent": TRANSITIONS,
    "all": TRANSITIONS if FULL else [t for t in TRANSITIONS if t.edge == "started"],
}

Coverage = Callable[[str], dict[Transition, KillRun]]


@pytest.fixture(scope="module")
def bench() -> Iterator[KillBench]:
    with KillBench.running(start_version=V2, image_size=1024) as b:
        yield b


@pytest.fixture(scope="module")
def coverage(bench: KillBench) -> Coverage:
    """Per victim (computed once): per target transition the campaign whose kill hit it."""
    done: dict[str, dict[Transition, KillRun]] = {}

    def get(victim: str) -> dict[Transition, KillRun]:
        if victim not in done:
            targets = TARGETS[victim]
            done[victim] = cover(bench, victim, targets, max_campaigns=len(targets))
        return done[victim]

    return get


def test_the_campaign_journals_the_transitions_the_kills_target(bench: KillBench) -> None:
    run = run_with_kills(bench, "engine", [])
    assert not run.violations, run.describe()
    assert (run.record["result"], run.version) == ("succeeded", V3), run.describe()
    seen = journal_transitions(run.rows)
    assert sorted(map(str, seen)) == sorted(map(str, TRANSITIONS)), run.describe()
    for t in TRANSITIONS:  # the kit's order: each step's start before its end, steps in campaign order
        if t.edge == "ended":
            assert seen.index(t) > seen.index(Transition(t.step, t.ecu, "started"))
    bench.reset()
    assert bench.vehicle_version() == V2


def _check(run: KillRun, target: Transition, *, engine_killed: bool) -> None:
    assert target in run.hit, run.describe()
    assert not run.violations, "\n".join(run.violations) + "\n" + run.describe()
    assert run.record["result"] in ("succeeded", "rolled_back"), run.describe()
    if engine_killed and run.hit[-1] != Transition("report", None, "ended"):
        # the engine took the campaign up again after the kill (unless it had already ended)
        assert run.record["attempts"] >= 2, run.describe()


@pytest.mark.parametrize("target", TARGETS["engine"], ids=str)
def test_sigkill_of_the_engine_at_each_transition(coverage: Coverage, target: Transition) -> None:
    _check(coverage("engine")[target], target, engine_killed=True)


@pytest.mark.parametrize("target", TARGETS["update_agent"], ids=str)
def test_sigkill_of_the_update_agent_at_each_transition(coverage: Coverage, target: Transition) -> None:
    _check(coverage("update_agent")[target], target, engine_killed=False)


@pytest.mark.parametrize("target", TARGETS["all"], ids=str)
def test_sigkill_of_all_daemons_at_each_transition(coverage: Coverage, target: Transition) -> None:
    _check(coverage("all")[target], target, engine_killed=True)
