"""Power cuts at random instants of real campaigns, both ways, then restart and the invariants.

The bench's campaigns V2 -> V3 (brake on A/B banks, body encrypted, two buses) and back
(``otactl rollback``) run with every daemon as a process. Twenty cuts fall on event numbers
drawn from the seeded generator (the seed is printed; ``OTA_TORTURE_SEED`` replays a run):
the first ones hit each victim once (every daemon together with every ECU power-cycled, each
daemon alone, each ECU's supply alone), the rest are drawn at random. After every campaign
the vehicle is on the old or the new version and never between, every ECU's active bank holds
an image of that version byte for byte, the journal has no open row, the campaign completed
or rolled back and was reported, and dmclient's cache is whole (:mod:`tests.torture.harness`).
"""

from __future__ import annotations

import random

import pytest

from .harness import V3, VICTIMS, Cut, RunRecord, TortureBench, plan_cuts

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

CUTS = 20
#: most cuts chained in one campaign (beyond, the engine's loop breaker decides the outcome)
PER_CAMPAIGN = 3


def cut_campaigns(bench: TortureBench, rng: random.Random, cuts: int) -> list[RunRecord]:
    """Campaigns forth and back, each with up to PER_CAMPAIGN random cuts, until ``cuts`` cuts fired and
    every victim was hit (victims not hit yet take the first cuts of a campaign, in a seeded order)."""
    first = bench.run("update")  # how many events a campaign sends: where cuts can fall
    runs = [first]
    order = list(VICTIMS)
    rng.shuffle(order)
    hit: set[str] = set()
    fired = 0
    while fired < cuts or len(hit) < len(order):
        assert len(runs) < 4 * cuts, f"{len(runs)} campaigns for {fired} cuts: the cuts do not fire"
        kind = "rollback" if bench.vehicle_version() == V3 else "update"
        missing = [v for v in order if v not in hit]
        plan = plan_cuts(rng, max(1, min(PER_CAMPAIGN, cuts - fired)), max_event=first.events, victims=VICTIMS)
        plan = [Cut(missing[i], c.at) if i < len(missing) else c for i, c in enumerate(plan)]
        run = bench.run(kind, plan)
        print(f"  {run.describe()}")
        runs.append(run)
        fired += len(run.cuts_done)
        hit |= {c.split("@", 1)[0] for c in run.cuts_done}
    return runs


def test_twenty_random_power_cuts_end_on_a_whole_vehicle_version(bench: TortureBench, seed: int) -> None:
    runs = cut_campaigns(bench, random.Random(seed), CUTS)
    bad = [r.describe() for r in runs if r.violations]
    assert not bad, f"seed {seed}: invariants broken:\n" + "\n".join(bad)
    cuts = [c for r in runs for c in r.cuts_done]
    assert len(cuts) >= CUTS
    hit = {c.split("@", 1)[0] for c in cuts}
    assert hit == set(VICTIMS), f"victims never cut: {set(VICTIMS) - hit}"
    assert {r.outcome for r in runs} <= {"completed", "rolled back"}
