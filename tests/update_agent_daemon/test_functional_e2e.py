"""Functional OTA-mode requests against the simulated ECUs (``otactl bench ecus``) over the bench hub.

The requests are answered (no suppressPosRsp): the tester goes on as soon as every ECU of the
functional address answered, gives a silent ECU its own P2, and names an ECU's NRC. The clock
is injected: a frozen clock shows that no P2 ran out when every ECU answered.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from uadkit import Bench, vehicle_config

from agent.config.vehicle import VehicleConfig, load_vehicle_config
from update_agent.functional import NEGATIVE, NO_ANSWER, POSITIVE, EcuAnswer, send_functional

pytestmark = pytest.mark.e2e

BUSES = ["powertrain", "body"]
#: how long a frozen clock stays frozen before it jumps past every deadline: only a hung bench gets there
GUARD = 30.0
#: the tester's P2 for the ECUs that answer in the silent-ECU test: far beyond any answer delay
PATIENT_P2 = 30.0


class FrozenClock:
    """Stands still (so no P2 can pass) until ``GUARD`` real seconds, then jumps past every deadline:
    a bench that stops answering fails the test loudly instead of hanging it."""

    def __init__(self) -> None:
        self.guard = time.monotonic() + GUARD

    def __call__(self) -> float:
        return 0.0 if time.monotonic() < self.guard else 1e9


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Bench, Path]]:
    root = tmp_path_factory.mktemp("functional")
    hub = root / "hub"
    hub.mkdir()
    # brake never answers ControlDTCSetting; body refuses it (conditionsNotCorrect)
    config = vehicle_config(root, {"brake": {"drop_response": {"service": 0x85, "times": "always"}},
                                   "body": {"refuse_request": {"service": 0x85, "nrc": 0x22, "times": "always"}}})
    env = {k: v for k, v in os.environ.items() if k not in ("OTA_VEHICLE_CONFIG", "OTA_RUNTIME_DIR")}
    env["OTA_BENCH_HUB_DIR"] = str(hub)
    b = Bench(root, config, env)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OTA_BENCH_HUB_DIR", str(hub))  # this process's links join the same hub
        b.start()
        try:
            yield b, config
        finally:
            b.stop()


def _outcomes(answers: list[EcuAnswer]) -> list[tuple[str, str, str]]:
    return [(a.request, a.ecu, a.outcome) for a in answers]


def _tester_config(config: Path, p2: dict[str, float]) -> VehicleConfig:
    """The tester's view of the bench vehicle with other P2s (the simulated ECUs are unaffected)."""
    data: dict[str, Any] = yaml.safe_load(config.read_text())
    for ecu, value in p2.items():
        data["ecus"][ecu]["timing"].update(p2=value, request_timeout=max(value, 1.0))
    path = config.with_name("tester.yaml")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_vehicle_config(path)


def test_every_ecu_answers_so_no_p2_is_waited(bench: tuple[Bench, Path]) -> None:
    b, config = bench
    vehicle = load_vehicle_config(config)
    result = send_functional(vehicle, "communication_control_disable", BUSES, clock=FrozenClock())
    assert result.sent == ["1003", "1003", "280301", "280301"]  # each payload on both buses before the next
    assert _outcomes(result.answers) == [(p, ecu, POSITIVE) for p in ("1003", "280301")
                                         for ecu in ("engine", "brake", "body")]
    # the clock never moved: every answer came before any P2 could have run out
    assert {a.waited for a in result.answers} == {0.0} and result.problems == []
    for ecu in ("engine", "brake", "body"):  # the ECUs did take the requests
        status = b.status(ecu)
        assert (status["session"], status["communication_control"]["control_type"]) == ("extended", 0x03)
    result = send_functional(vehicle, "communication_control_enable", BUSES, clock=FrozenClock())
    assert result.problems == [] and result.sent[-1] == "280001"
    assert {b.status(ecu)["communication_control"]["control_type"] for ecu in ("engine", "brake", "body")} == {0}
    # TesterPresent stays suppressed and send-only: nothing awaited
    assert send_functional(vehicle, "tester_present", BUSES, clock=FrozenClock()).answers == []


def test_a_silent_ecu_gets_its_p2_and_an_nrc_is_named(bench: tuple[Bench, Path]) -> None:
    _, config = bench
    vehicle = _tester_config(config, {"engine": PATIENT_P2, "body": PATIENT_P2})
    result = send_functional(vehicle, "dtc_setting_off", BUSES, clock=time.monotonic)
    assert _outcomes(result.answers) == [
        ("1003", "engine", POSITIVE), ("1003", "brake", POSITIVE), ("1003", "body", POSITIVE),
        ("8502", "engine", POSITIVE), ("8502", "brake", NO_ANSWER), ("8502", "body", NEGATIVE)]
    silent, refused = result.answers[4], result.answers[5]
    p2 = vehicle.ecus["brake"].timing.p2
    assert silent.waited >= p2  # given up only once its own P2 had passed on the clock...
    assert silent.waited < PATIENT_P2  # ...not the others' (they had answered)
    assert "no answer within" in silent.describe() and "ControlDTCSetting" in silent.describe()
    assert refused.nrc == 0x22
    assert refused.describe() == "body (bus body): ControlDTCSetting 8502 refused: NRC 0x22 conditionsNotCorrect"
    assert refused.to_json()["nrc_name"] == "conditionsNotCorrect"
    assert result.problems == [silent, refused]
