"""End to end: the bench simulator (``otactl bench ecus``) in one process, ``otactl flash`` and
``otactl baseline`` in others, real UDS over real ISO-TP frames on the bench hub, real SQLite."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from baselinekit import Bench, bench_env, run, write_config

from bench.appimage import build_image, to_hex

pytestmark = pytest.mark.e2e

BASE = {"engine": 0x10000, "brake": 0x20000, "body": 0x8000}
PART = {"engine": "ENG-4711", "brake": "BRK-0815", "body": "BCM-2201"}


def sim_broadcasts_versions() -> bool:
    """True once the bench simulator understands ``sim.version_frames``."""
    from bench.ecu.simconfig import SimConfig
    return any(f.name == "version_frames" for f in dataclasses.fields(SimConfig))


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return bench_env(tmp_path)


@pytest.fixture
def bench(tmp_path: Path, env: dict[str, str]) -> Iterator[Callable[..., tuple[Bench, Path]]]:
    started: list[Bench] = []

    def start(edit: Callable[[dict[str, Any]], None] | None = None, *extra: str) -> tuple[Bench, Path]:
        config = write_config(tmp_path / f"vehicle{len(started)}.yaml", edit)
        b = Bench(config, tmp_path / f"sim-state{len(started)}", env, tmp_path / f"bench{len(started)}.log")
        started.append(b)
        return b.start(*extra), config

    yield start
    for b in started:
        b.stop()


def image(tmp_path: Path, ecu: str, version: str) -> Path:
    path = tmp_path / f"{ecu}-{version}.hex"
    path.write_text(to_hex(build_image(version, PART[ecu], 16 * 1024, seed=ecu), BASE[ecu]))
    return path


def flash(env: dict[str, str], config: Path, tmp_path: Path, ecu: str, version: str) -> None:
    done = run(env, "flash", "--ecu", ecu, str(image(tmp_path, ecu, version)), "--config", str(config))
    assert done.code == 0, done.stderr


def baseline(env: dict[str, str], config: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    done = run(env, "baseline", "--config", str(config), "--json", "--no-frames", *extra)
    return done.code, done.json()


def test_flashing_one_ecu_moves_the_vehicle_to_the_next_baseline_node(
        bench: Callable[..., tuple[Bench, Path]], env: dict[str, str], tmp_path: Path) -> None:
    _, config = bench()
    code, report = baseline(env, config)
    assert code == 0, report["reasons"]
    assert (report["hardware"]["matched"], report["software"]["vehicle_version"], report["software"]["sequence"]) \
        == ("BV-HW-A", "BV OS D 1.0.0", 1)
    assert {e["ecu"]: (e["source"], e["found_software"]) for e in report["ecus"]} == {
        "engine": ("uds", "1.0.0"), "brake": ("uds", "3.4.0"), "body": ("uds", "2.0.0")}

    flash(env, config, tmp_path, "engine", "1.1.0")
    code, report = baseline(env, config)
    assert code == 0 and report["software"]["vehicle_version"] == "BV OS D 1.1.0"
    assert report["software"]["sequence"] == 2

    # half-way to the third node: brake done, body not yet -> no match, the ECU that differs named
    flash(env, config, tmp_path, "brake", "3.5.0")
    code, report = baseline(env, config)
    assert code == 5 and report["software"]["status"] == "no-match"
    assert report["software"]["nearest"] == {"vehicle_version": "BV OS D 1.2.0", "sequence": 3}
    assert [(f["ecu"], f["found"]) for f in report["software"]["findings"]] == [("body", "2.0.0")]

    flash(env, config, tmp_path, "body", "2.1.0")
    code, report = baseline(env, config)
    assert code == 0 and report["software"]["vehicle_version"] == "BV OS D 1.2.0"

    # every reading went to the version store, with how and when
    from update_agent.version_store import VersionStore
    with VersionStore.in_dir(env["OTA_UPDATE_AGENT_STATE_DIR"]) as store:
        history = [r.software_version for r in store.history("engine")]
        assert history == ["1.1.0", "1.1.0", "1.1.0", "1.0.0"]
        assert all(r.source == "uds" for r in store.history("engine"))


def test_a_silent_ecu_and_a_wrong_hardware_version_are_reported(
        bench: Callable[..., tuple[Bench, Path]], env: dict[str, str]) -> None:
    def brake_h9(data: dict[str, Any]) -> None:
        data["ecus"]["brake"]["sim"]["hardware_version"] = "H9.9"
    _, config = bench(brake_h9, "--ecu", "engine", "--ecu", "brake")  # body is not simulated
    code, report = baseline(env, config)
    assert code == 5 and report["ok"] is False
    findings = {f["ecu"]: f for f in report["hardware"]["findings"]}
    assert findings["brake"]["problem"] == "hardware-mismatch" and findings["brake"]["found"] == "H9.9"
    assert findings["body"]["problem"] == "not-answering"
    assert "brake: hardware version H9.9 (expected H2.1)" in report["reasons"]
    assert any(r.startswith("body: not answering (") for r in report["reasons"])
    body = next(e for e in report["ecus"] if e["ecu"] == "body")
    assert body["answered"] is False and body["source"] == "uds"
    assert report["software"]["status"] == "not-checked"


@pytest.mark.skipif(not sim_broadcasts_versions(),
                    reason="waits on the bench simulator wiring sim.version_frames "
                           "(bench/version_broadcast.py) into bench/ecu")
def test_version_frames_show_the_new_version_after_the_flash_reset(
        bench: Callable[..., tuple[Bench, Path]], env: dict[str, str], tmp_path: Path) -> None:
    def broadcast(data: dict[str, Any]) -> None:
        for name, message in (("engine", "ENGINE_VERSION"), ("brake", "BRAKE_VERSION"), ("body", "BODY_VERSION")):
            data["ecus"][name]["sim"]["version_frames"] = {"message": message, "period": 0.05}
    _, config = bench(broadcast)
    done = run(env, "baseline", "--config", str(config), "--json", "--no-uds")
    report = done.json()
    assert done.code == 0 and report["software"]["vehicle_version"] == "BV OS D 1.0.0"
    assert {e["source"] for e in report["ecus"]} == {"can-frame"}

    flash(env, config, tmp_path, "engine", "1.1.0")
    done = run(env, "baseline", "--config", str(config), "--json", "--no-uds")
    report = done.json()
    assert done.code == 0 and report["software"]["vehicle_version"] == "BV OS D 1.1.0"
    engine = next(e for e in report["ecus"] if e["ecu"] == "engine")
    assert (engine["source"], engine["found_software"]) == ("can-frame", "1.1.0")
