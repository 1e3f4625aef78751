"""End to end on the whole bench (:mod:`bench.scenario`: HTTPS backend with Uptane repositories, the
simulated ECUs in their own process speaking UDS over ISO-TP on the bench bus, the five daemons).

Release bv-1.1.0 carries the engine image 1.1.0 and a signed configuration change that needs it
(``launch_control`` requires engine software 1.1.0). Applied alone first, the change is refused by
the version gate and nothing is written; the campaign then flashes the engine and applies the change
in its ``configure`` step. After that, changes on their own: a diagnostic one with ``otactl config``, a
broadcast one (one DBC frame for brake and body), both confirmed by read-back; and one refused by an
ECU (the body refuses every write of the speed limit DID, NRC 0x22): every ECU back on its value.
One bench for the module.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.cli import config as config_command
from agent.config.vehicle import load_vehicle_config
from agent.errors import ProtocolError
from bench.scenario import V1, V2
from tests.engine.test_engine_e2e import Stack
from update_agent.remote_config.access import VehicleAccess
from update_agent.remote_config.change import apply_change, plan_change
from update_agent.remote_config.items import load_items

from .rckit import CONFIGS, config_cli, ecu_status

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

CHANGE = {"launch_control": "on", "drive_mode": "sport"}
BODY_REFUSES_SPEED_LIMIT = {"refuse_config_write": {"did": 0xF1A1, "nrc": 0x22, "times": "always"}}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with Stack.running(config_change=CHANGE, faults={"body": BODY_REFUSES_SPEED_LIMIT}) as stack, \
            pytest.MonkeyPatch.context() as mp:
        mp.setenv("OTA_BENCH_HUB_DIR", stack.scenario.env["OTA_BENCH_HUB_DIR"])  # the in-process tester joins
        yield stack


def _config_command(stack: Stack, *argv: str) -> int:
    """``otactl config ... --json`` run in this process: the command's own parser and code."""
    parser = argparse.ArgumentParser()
    config_command.register(parser.add_subparsers())
    args = parser.parse_args(["config", *argv, "--config", str(stack.scenario.vehicle_config), "--json"])
    args.debug = args.verbose = False
    code: int = args.func(args)
    return code


def _sim(stack: Stack) -> Path:
    return stack.scenario.dir / "sim-state"


def _held(stack: Stack, ecu: str) -> dict[str, str]:
    dids: dict[str, str] = ecu_status(_sim(stack), ecu)["config_dids"]
    return dids


def _values(stack: Stack, *items: str) -> dict[tuple[str, str], str]:
    with stack.client("update_agent") as ua:
        got = ua.call("update_agent.config.get", {"items": list(items)})
    return {(v["item"], v["ecu"]): v["value"] for v in got["values"]}


def test_gated_change_is_refused_alone_then_applied_after_the_flash_in_one_campaign(stack: Stack) -> None:
    assert stack.vehicle_version() == V1
    with stack.client("update_agent") as ua:
        refused = ua.call("update_agent.config.set", {"values": {"launch_control": "on"}})
    assert refused["state"] == "refused"
    assert refused["too_old"] == {"engine": ["1.0.0", "1.1.0"]}
    assert _held(stack, "engine")["launch_control"] == "00"  # nothing written

    done = stack.otactl("update", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr + stack.log_tails()
    assert stack.vehicle_version() == V2
    assert _values(stack, *CHANGE) == {("launch_control", "engine"): "on", ("drive_mode", "engine"): "sport"}
    assert _held(stack, "engine")["launch_control"] == "01"
    rows = [(step, ecu, state) for _, step, ecu, state in stack.journal_rows()]
    assert rows.index(("flash", "engine", "done")) < rows.index(("configure", None, "done")) \
        < rows.index(("verify", None, "done"))


def test_diagnostic_change_confirmed_by_read_back(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    code, result, err = config_cli(stack.scenario.env, "set", "drive_mode=eco")
    assert code == 0, err
    assert result["state"] == "applied"
    assert [(e["ecu"], e["previous"], e["read_back"], e["state"]) for e in result["ecus"]] == [
        ("engine", "sport", "eco", "confirmed")]
    assert _held(stack, "engine")["drive_mode"] == "00"  # the ECU's own record
    # otactl config get, its parser and code in this process (saves a second interpreter start)
    capsys.readouterr()
    assert _config_command(stack, "get", "drive_mode") == 0
    got = json.loads(capsys.readouterr().out)
    assert got["values"] == [{"item": "drive_mode", "ecu": "engine", "value": "eco", "raw": "00", "error": None}]


def test_broadcast_change_confirmed_by_read_back_on_every_ecu(stack: Stack) -> None:
    vehicle = load_vehicle_config(stack.scenario.vehicle_config)
    catalog = load_items(CONFIGS / "bench-config-items.yaml", vehicle)
    with VehicleAccess(vehicle, catalog) as access:
        result = apply_change(access, plan_change(catalog, [("comfort_lights", "on"), ("hill_hold_level", "3")]))
    assert result.state == "applied", result.to_dict()
    assert {(o.item, o.ecu): (o.previous, o.read_back, o.state) for o in result.outcomes} == {
        ("comfort_lights", "brake"): ("off", "on", "confirmed"),
        ("comfort_lights", "body"): ("off", "on", "confirmed"),
        ("hill_hold_level", "brake"): ("1", "3", "confirmed")}
    assert _held(stack, "brake") == {"comfort_lights": "01", "hill_hold_level": "03"}
    assert _held(stack, "body")["comfort_lights"] == "01"


def test_one_ecu_refusing_leaves_every_ecu_on_its_previous_value(stack: Stack,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    before = {ecu: _held(stack, ecu) for ecu in ("engine", "body")}
    capsys.readouterr()
    with pytest.raises(ProtocolError) as refused:  # otactl exits 4: an ECU refused
        _config_command(stack, "set", "drive_mode=normal", "speed_limit=90")
    assert refused.value.exit_code == 4
    assert "speed_limit: body refused the write" in str(refused.value) and "0x22" in str(refused.value)
    result = json.loads(capsys.readouterr().out)
    assert result["state"] == "rolled_back"
    states = {(e["item"], e["ecu"]): e["state"] for e in result["ecus"]}
    assert states == {("drive_mode", "engine"): "restored", ("speed_limit", "engine"): "restored",
                      ("speed_limit", "body"): "refused"}
    assert {ecu: _held(stack, ecu) for ecu in ("engine", "body")} == before
    assert any("refuse_config_write" in f for f in ecu_status(_sim(stack), "body")["faults_fired"])


def test_update_agent_applies_and_rolls_back_over_ipc(stack: Stack) -> None:
    with stack.client("update_agent") as ua:
        result: dict[str, Any] = ua.call("update_agent.config.set", {"values": {"comfort_lights": "off"}})
        assert result["state"] == "applied", result
        assert {e["ecu"]: e["read_back"] for e in result["ecus"]} == {"brake": "off", "body": "off"}
        refused = ua.call("update_agent.config.set", {"values": {"speed_limit": "60"}})
        assert refused["state"] == "rolled_back"
    assert _values(stack, "speed_limit", "comfort_lights") == {
        ("speed_limit", "engine"): "250", ("speed_limit", "body"): "250",
        ("comfort_lights", "brake"): "off", ("comfort_lights", "body"): "off"}
