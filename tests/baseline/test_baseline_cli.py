"""``otactl baseline`` as a user runs it: exit codes, the table, the reasons, bad input."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import can
import pytest
from baselinekit import CONFIGS, bench_env, run, write_config

from bench.canbus.hub import HubThread
from bench.version_broadcast import VersionBroadcaster, load_dbc
from update_agent.version_reading import VersionReading
from update_agent.version_store import VersionStore


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return bench_env(tmp_path)


def store_readings(env: dict[str, str], software: dict[str, str], at: float,
                   hardware: dict[str, str] | None = None) -> None:
    hw = {"engine": "H1.0", "brake": "H2.1", "body": "H1.2", **(hardware or {})}
    with VersionStore.in_dir(env["OTA_UPDATE_AGENT_STATE_DIR"]) as store:
        store.record(VersionReading(e, "uds", at, True, hardware_version=hw[e], software_version=v)
                     for e, v in software.items())


def test_stored_readings_match_and_print_the_table(env: dict[str, str]) -> None:
    store_readings(env, {"engine": "1.1.0", "brake": "3.4.0", "body": "2.0.0"}, time.time() - 90)
    done = run(env, "baseline", "--stored")
    assert done.code == 0, done.stderr
    out = done.stdout
    assert "vehicle hardware   BV-HW-A" in out
    assert "vehicle software   BV OS D 1.1.0 (sequence 2)" in out
    engine = next(line for line in out.splitlines() if line.lstrip().startswith("engine"))
    assert engine.split()[:6] == ["engine", "H1.0", "H1.0", "1.1.0", "1.1.0", "uds"]
    assert "H1.2,H1.3" in out  # the accepted set of body hardware versions
    assert "2 min" in engine and engine.rstrip().endswith("ok")  # age of a reading 90 s old
    assert "why not matched" not in out


def test_no_match_exits_5_and_says_why(env: dict[str, str]) -> None:
    store_readings(env, {"engine": "1.1.0", "brake": "3.9.0", "body": "2.0.0"}, time.time())
    done = run(env, "baseline", "--stored")
    assert done.code == 5
    assert "vehicle software   NO MATCH (nearest BV OS D 1.1.0, sequence 2)" in done.stdout
    assert "- brake: software version 3.9.0 (expected 3.4.0)" in done.stdout
    data = run(env, "baseline", "--stored", "--json").json()
    assert data["ok"] is False and data["software"]["status"] == "no-match"
    assert data["software"]["findings"][0]["ecu"] == "brake"
    assert data["hardware_baseline"].endswith("bench-hw-baseline.xml")


def test_wrong_hardware_version_is_reported(env: dict[str, str]) -> None:
    store_readings(env, {"engine": "1.0.0", "brake": "3.4.0", "body": "2.0.0"}, time.time(),
                   hardware={"brake": "H9.9"})
    done = run(env, "baseline", "--stored")
    assert done.code == 5
    assert "vehicle hardware   NOT MATCHED (nearest BV-HW-A)" in done.stdout
    assert "- brake: hardware version H9.9 (expected H2.1)" in done.stdout
    assert "- software baseline not-checked: the hardware baseline did not match" in done.stdout


def test_hostile_baseline_is_an_input_error(env: dict[str, str], tmp_path: Path) -> None:
    store_readings(env, {"engine": "1.0.0", "brake": "3.4.0", "body": "2.0.0"}, time.time())
    evil = tmp_path / "evil.xml"
    evil.write_text('<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n<x>&e;</x>\n')
    done = run(env, "baseline", "--stored", "--sw-baseline", str(evil))
    assert done.code == 2
    assert done.stderr.strip() == (f"error: {evil}: line 2, element <!DOCTYPE>: a DOCTYPE / DTD is not allowed "
                                   "in a baseline file (entity expansion and external entities are refused; "
                                   "nothing was expanded or fetched)")
    assert done.stdout == ""


def test_malformed_version_in_a_baseline_names_the_position(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "sw.xml"
    bad.write_text((CONFIGS / "bench-sw-baseline.xml").read_text().replace('"BV OS D 1.1.0"', '"BV OS D 1.1"'))
    done = run(env, "baseline", "--stored", "--sw-baseline", str(bad))
    assert done.code == 2
    line = 1 + bad.read_text().split('"BV OS D 1.1"')[0].count("\n")
    assert f"error: {bad}: line {line}, element <vehicleVersion>: not valid against software-baseline.xsd: " \
           "attribute 'version': invalid vehicle version 'BV OS D 1.1': at index 11 (end of string): " \
           "expected '.' then the patch number Y" in done.stderr


def test_nothing_stored_yet(env: dict[str, str]) -> None:
    done = run(env, "baseline", "--stored")
    assert done.code == 2 and "no stored version readings yet" in done.stderr


@pytest.fixture
def hub(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[HubThread]:
    monkeypatch.setenv("OTA_BENCH_HUB_DIR", env["OTA_BENCH_HUB_DIR"])
    with HubThread(["powertrain", "body"]) as h:
        yield h


def test_passive_only_collection_from_version_frames(env: dict[str, str], hub: HubThread, tmp_path: Path) -> None:
    """The ECUs broadcast from this process; ``otactl baseline --no-uds`` listens from another."""
    config = write_config(tmp_path / "vehicle.yaml")
    db = load_dbc(CONFIGS / "bench-vehicle.dbc")
    powertrain = can.Bus(interface="benchhub", channel="powertrain")
    body = can.Bus(interface="benchhub", channel="body")
    casters = [
        VersionBroadcaster(powertrain, db, "ENGINE_VERSION", lambda: ("H1.0", "1.1.0"), period=0.05),
        VersionBroadcaster(powertrain, db, "BRAKE_VERSION", lambda: ("H2.1", "3.5.0"), period=0.05),
        VersionBroadcaster(body, db, "BODY_VERSION", lambda: ("H1.2", "2.1.0"), period=0.05),
    ]
    try:
        for c in casters:
            c.start()
        data = run(env, "baseline", "--config", str(config), "--no-uds", "--json").json()
    finally:
        for c in casters:
            c.stop()
        powertrain.shutdown()
        body.shutdown()
    assert data["ok"] and data["software"]["vehicle_version"] == "BV OS D 1.2.0"
    assert {e["ecu"]: (e["source"], e["found_software"]) for e in data["ecus"]} == {
        "engine": ("can-frame", "1.1.0"), "brake": ("can-frame", "3.5.0"), "body": ("can-frame", "2.1.0")}
    with VersionStore.in_dir(env["OTA_UPDATE_AGENT_STATE_DIR"]) as store:
        assert store.latest()["brake"].source == "can-frame"


def test_passive_only_without_frames_configured_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    def no_frames(data: dict[str, object]) -> None:
        data.pop("version_frames")
    config = write_config(tmp_path / "vehicle.yaml", no_frames)
    done = run(env, "baseline", "--config", str(config), "--no-uds")
    assert done.code == 2 and "--no-uds leaves nothing to collect with" in done.stderr
