"""A configuration-only campaign through the backend, on the whole bench (:mod:`bench.scenario`: HTTPS
backend with the Uptane repositories and the Director, the simulated ECUs in their own process speaking
UDS over ISO-TP on the bench bus, the five daemons).

The vehicle is on the last node of the route (no software to take). Configuration-only release
bv-1.2.0-sport (a diagnostic item for the engine, a broadcast item for brake and body) is the node's
configuration on the route: ``otactl check`` shows a configuration campaign, ``otactl update`` runs it
(no download, no OTA mode, no flash), every ECU concerned reads back the new values over UDS, and the
next check finds nothing to do (the signed manifest now reports the values). Then the node's
configuration becomes bv-1.2.0-limit, whose speed limit the body refuses (the simulator's refusal
knob, NRC 0x22): the campaign ends ``rolled_back`` naming the body and the NRC, and every ECU holds
the values it held before. One bench for the module.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from agent.config.vehicle import load_vehicle_config
from bench.scenario import V3
from tests.engine.test_engine_e2e import Stack
from update_agent.remote_config.access import VehicleAccess
from update_agent.remote_config.items import load_items

from .rckit import CONFIGS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

SPORT = {"drive_mode": "sport", "comfort_lights": "on"}
LIMIT = {"drive_mode": "eco", "comfort_lights": "off", "speed_limit": "90"}
BODY_REFUSES_SPEED_LIMIT = {"refuse_config_write": {"did": 0xF1A1, "nrc": 0x22, "times": "always"}}
#: every (item, ECU) the two releases concern
CONCERNED = (("drive_mode", "engine"), ("comfort_lights", "brake"), ("comfort_lights", "body"),
             ("speed_limit", "engine"), ("speed_limit", "body"))


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with Stack.running(start_version=V3, config_releases={"bv-1.2.0-sport": SPORT, "bv-1.2.0-limit": LIMIT},
                       faults={"body": BODY_REFUSES_SPEED_LIMIT}) as stack, pytest.MonkeyPatch.context() as mp:
        mp.setenv("OTA_BENCH_HUB_DIR", stack.scenario.env["OTA_BENCH_HUB_DIR"])  # the in-process tester joins
        yield stack


def read_over_uds(stack: Stack) -> dict[tuple[str, str], str]:
    """What every ECU concerned answers (ReadDataByIdentifier over the bench bus, from this process)."""
    vehicle = load_vehicle_config(stack.scenario.vehicle_config)
    catalog = load_items(CONFIGS / "bench-config-items.yaml", vehicle)
    with VehicleAccess(vehicle, catalog) as access:
        return {(item, ecu): catalog.item(item).encoding.decode(access.read(catalog.item(item), ecu))
                for item, ecu in CONCERNED}


def otactl_json(stack: Stack, *args: str) -> dict[str, object]:
    done = stack.otactl(*args, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    data: dict[str, object] = json.loads(done.stdout)
    return data


def campaign_steps(stack: Stack, campaign_id: str) -> list[tuple[str, str | None, str]]:
    return [(step, ecu, state) for cid, step, ecu, state in stack.journal_rows() if cid == campaign_id]


def test_configuration_only_release_is_applied_through_the_backend_and_then_done(stack: Stack) -> None:
    check = otactl_json(stack, "check")
    assert (check["status"], check["kind"], check["config"], check["ecus"]) == ("update", "configuration", SPORT, [])
    assert check["target_vehicle_version"] == check["vehicle_version"] == V3  # a configuration is not software
    shown = stack.otactl("check")
    assert "configuration campaign available for BV OS D 1.2.0" in shown.stdout, shown.stdout + shown.stderr

    done = stack.otactl("update", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr + stack.log_tails()
    assert "(configuration)" in done.stdout
    record = stack.call("agent", "agent.history", {"limit": 1})["campaigns"][0]
    assert (record["kind"], record["result"], record["to_version"]) == ("configuration", "succeeded", V3)
    assert [s for s, _e, state in campaign_steps(stack, record["id"]) if state == "done"] == [
        "check", "preconditions", "config_read", "configure", "report"]  # no download, OTA mode, flash, verify

    values = read_over_uds(stack)
    assert values[("drive_mode", "engine")] == "sport"  # diagnostic: WriteDataByIdentifier, read back
    assert values[("comfort_lights", "brake")] == values[("comfort_lights", "body")] == "on"  # one broadcast frame
    assert stack.vehicle_version() == V3

    again = otactl_json(stack, "check")
    assert again["status"] == "nothing", again  # the signed manifest reports the values: the Director is done
    history = stack.otactl("history")
    assert record["id"] in history.stdout and "configuration" in history.stdout


def test_an_ecu_refusing_the_write_leaves_every_ecu_on_its_previous_values(stack: Stack) -> None:
    stack.scenario.write_route(configuration="bv-1.2.0-limit")  # the node's configuration changes
    before = read_over_uds(stack)
    check = otactl_json(stack, "check")
    assert (check["kind"], check["config"]) == ("configuration", LIMIT)

    done = stack.otactl("update", "--yes")
    assert done.returncode == 3, done.stdout + done.stderr + stack.log_tails()  # 3: rolled back
    record = stack.call("agent", "agent.history", {"limit": 1})["campaigns"][0]
    assert (record["kind"], record["result"]) == ("configuration", "rolled_back"), record
    assert "speed_limit: body refused the write" in record["detail"] and "0x22" in record["detail"], record["detail"]
    assert ("configure_rollback", None, "done") in campaign_steps(stack, record["id"])

    assert read_over_uds(stack) == before
    assert before[("drive_mode", "engine")] == "sport" and before[("speed_limit", "body")] == "250"
    assert otactl_json(stack, "check")["config"] == LIMIT  # not applied: still assigned
