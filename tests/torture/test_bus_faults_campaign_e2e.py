"""A whole campaign whose flash phase runs over faulty buses: it completes or rolls back, the vehicle whole.

tests/torture/test_bus_faults_e2e.py drives each bus and ECU fault into the flasher alone; here the
bench's V2 -> V3 campaign (brake on A/B banks on ``powertrain``, body on ``body``, flashed in
parallel) runs with every daemon as a process, and from its first flash step on both bench bus
channels drop, delay, error and corrupt the ECUs' diagnostic frames at the rates of
:data:`tests.torture.harness.BUS_FAULTS` (seeded: ``OTA_TORTURE_SEED``). Whatever the faults do to
a flash (retried, or failed and rolled back), the campaign ends completed or rolled back and every
invariant of :func:`tests.torture.harness.check_invariants` holds: each ECU's active bank byte for
byte an image of the vehicle version matched, no open journal row, the cache whole.
"""

from __future__ import annotations

import pytest

from .harness import BUS_FAULTS, ECU_FAULTS, TortureBench, run_with_bus_faults, run_with_ecu_faults

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def test_a_campaign_flashing_over_faulty_buses_completes_or_rolls_back_whole(bench: TortureBench, seed: int) -> None:
    run, injected = run_with_bus_faults(bench, BUS_FAULTS, seed)
    print(f"\nbus faults injected {injected}: {run.describe()}")
    assert sum(injected.values()) > 0, f"no bus fault was injected: {injected}"
    assert not run.violations, f"seed {seed}: {run.describe()}"
    assert run.outcome in ("completed", "rolled back"), run.describe()


def test_a_campaign_whose_ecus_answer_0x72_0x73_0x78_storms_and_reset_mid_transfer_ends_whole(
        bench: TortureBench) -> None:
    run, fired = run_with_ecu_faults(bench, ECU_FAULTS)
    print(f"\nECU faults fired {fired}: {run.describe()}")
    assert len(fired) == 4, f"not every ECU fault fired: {fired}"
    assert not run.violations, run.describe()
    assert run.outcome in ("completed", "rolled back"), run.describe()
