"""End to end: ``otactl flash`` / ``otactl versions`` in their own processes against the bench
simulator (``otactl bench ecus``) in another, over real UDS on real ISO-TP frames on the bench hub."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from flashkit import Bench, Cli, fast_bench, write_config

from bench.appimage import build_image, to_hex

pytestmark = pytest.mark.e2e

StartBench = Callable[..., tuple[Bench, Cli]]
BASE = {"engine": 0x10000, "brake": 0x20000, "body": 0x8000}
PART = {"engine": "ENG-4711", "brake": "BRK-0815", "body": "BCM-2201"}


def make_image(tmp_path: Path, ecu: str, version: str, size: int = 32 * 1024, fmt: str = "ihex") -> Path:
    data = build_image(version, PART[ecu], size, seed=ecu)
    path = tmp_path / f"{ecu}-{version}.{'hex' if fmt == 'ihex' else 's19'}"
    path.write_text(to_hex(data, BASE[ecu], fmt=fmt))
    return path


def faults(ecu: str, **knobs: Any) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        data["ecus"][ecu]["sim"]["faults"] = knobs
    return edit


def sim(ecu: str, **settings: Any) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        data["ecus"][ecu]["sim"].update(settings)
    return edit


def step(result: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in result["steps"] if s["name"] == name)


def software_version(tester: Cli, ecu: str) -> str:
    code, found, err = tester.versions(ecu)
    assert code == 0, err
    return str(found[ecu]["values"]["software_version"])


def ecu_status(bench: Bench, ecu: str) -> dict[str, Any]:
    return dict(json.loads((bench.state_dir / ecu / "status.json").read_text()))


# -- successful flashes ----------------------------------------------------------------------
def test_single_bank_flash_writes_checks_and_reports_the_new_version(
        start_bench: StartBench, tmp_path: Path) -> None:
    bench, tester = start_bench()
    assert bench.ready_line == "bench ready: engine,brake,body"
    code, before, _ = tester.versions()
    assert code == 0
    assert {e: v["values"]["software_version"] for e, v in before.items()} == {
        "engine": "1.0.0", "brake": "3.4.0", "body": "2.0.0"}
    image = make_image(tmp_path, "engine", "1.1.0")
    code, result, err = tester.flash_json("engine", image)
    assert code == 0, err
    assert result["ok"] and result["script"] == "single_bank"
    assert result["bytes"] == 32 * 1024 and result["blocks"] == 16  # 2048 data bytes per block
    crc = zlib.crc32(build_image("1.1.0", PART["engine"], 32 * 1024, seed="engine"))
    assert result["image"]["crc32"] == f"{crc:08x}"
    check = step(result, "check_memory")
    assert check["status"] == "ok" and f"CRC-32 {crc:08x}" in check["detail"]  # ECU's 0202 agreed
    assert step(result, "erase")["nrcs"].get("0x78", 0) >= 1  # the erase answered 0x78 first
    assert result["versions_after"]["software_version"] == "1.1.0"
    assert software_version(tester, "engine") == "1.1.0"
    assert software_version(tester, "body") == "2.0.0"
    bench.restart()  # flash contents persist across a bench restart
    assert software_version(tester, "engine") == "1.1.0"
    bench.stop()
    status = ecu_status(bench, "engine")
    assert status["fingerprint"].endswith(b"OTACTL".hex())


def test_ab_flash_activates_the_new_bank(start_bench: StartBench, tmp_path: Path) -> None:
    bench, tester = start_bench()
    image = make_image(tmp_path, "brake", "3.5.0", fmt="srec")
    done = tester.flash("brake", image)
    assert done.returncode == 0, done.stderr
    assert "brake: flashed; software version now 3.5.0" in done.stdout
    assert "activate" in done.stdout
    assert software_version(tester, "brake") == "3.5.0"
    bench.stop()
    status = ecu_status(bench, "brake")
    assert status["active_bank"] == "B" and status["pending_bank"] is None


def test_an_ab_ecu_already_running_the_image_is_not_flashed_again_so_its_other_bank_keeps_the_old(
        start_bench: StartBench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A repeated flash job (its first attempt activated the bank but its end was lost) finds the ECU on
    the new version and leaves it: the other bank keeps the old image, and the rollback reaches it."""
    from agent.config.vehicle import load_vehicle_config
    from update_agent.flashing import flash_ecu
    from update_agent.images import load_image
    from update_agent.rollback import switch_bank

    _, tester = start_bench()
    old = software_version(tester, "brake")
    image = make_image(tmp_path, "brake", "3.5.0", fmt="srec")
    assert tester.flash("brake", image).returncode == 0  # the first attempt went through
    monkeypatch.setenv("OTA_BENCH_HUB_DIR", tester.env["OTA_BENCH_HUB_DIR"])
    vehicle = load_vehicle_config(tester.config)
    again = flash_ecu(vehicle, "brake", load_image(image), target_version="3.5.0")
    assert again.ok and again.already_active and again.bytes_transferred == 0 and not again.steps
    assert again.to_dict()["already_active"] is True and again.versions_after["software_version"] == "3.5.0"
    back = switch_bank(vehicle, "brake", expected_version=old)  # the rollback still finds the old image
    assert back.result.ok, back.result.error
    assert back.bank_switch == "switched" and software_version(tester, "brake") == old
    other = flash_ecu(vehicle, "brake", load_image(image), target_version="3.5.0")  # runs another: flashed
    assert other.ok and not other.already_active and other.bytes_transferred > 0


def test_block_counter_wraps_past_0xff_on_the_bus(start_bench: StartBench, tmp_path: Path) -> None:
    # 64 bytes per TransferData: a 20 KiB image needs 320 blocks, counter 1..0xFF, 0x00, 0x01..
    _bench, tester = start_bench(sim("engine", max_block_length=0x42))
    code, result, err = tester.flash_json("engine", make_image(tmp_path, "engine", "1.2.0", size=20 * 1024))
    assert code == 0, err
    assert result["blocks"] == 320 and step(result, "check_memory")["status"] == "ok"
    assert software_version(tester, "engine") == "1.2.0"


def test_a_slow_erase_outlives_request_timeout_and_tester_present_keeps_the_session(
        start_bench: StartBench, tmp_path: Path) -> None:
    # request_timeout is 1 s; the erase takes 2.5 s, announced by NRC 0x78 every 0.2 s
    bench, tester = start_bench(lambda d: (sim("engine", response_pending_interval=0.2, session_timeout=1.0)(d),
                                           faults("engine", erase_time={"seconds": 2.5})(d)))
    code, result, err = tester.flash_json("engine", make_image(tmp_path, "engine", "1.3.0", size=16 * 1024))
    assert code == 0, err
    erase = step(result, "erase")
    # >= 6 pending answers 0.2 s apart: the chain outlasted request_timeout, and the tester waited it out
    assert erase["status"] == "ok" and erase["nrcs"]["0x78"] >= 6
    bench.stop()
    assert ecu_status(bench, "engine")["tester_present"] >= 2  # functional 3E 80 during the wait


# -- faults: a bounded retry succeeds, or a clear error and the ECU left as a bootloader would --------
def test_a_lost_transfer_data_answer_is_re_sent_with_the_same_counter(
        start_bench: StartBench, tmp_path: Path) -> None:
    _bench, tester = start_bench(faults("engine", drop_response={"service": 0x36, "count": 3, "times": 1}))
    code, result, err = tester.flash_json("engine", make_image(tmp_path, "engine", "1.1.1", size=16 * 1024))
    assert code == 0, err
    download = step(result, "download")
    assert download["retries"] == 1 and download["blocks"] == 8
    assert step(result, "check_memory")["status"] == "ok"  # the repeated block was not written twice
    assert software_version(tester, "engine") == "1.1.1"


def test_an_ecu_that_stops_answering_fails_with_a_timeout_and_can_be_reflashed(
        start_bench: StartBench, tmp_path: Path) -> None:
    bench, tester = start_bench(faults("engine", drop_response={"service": 0x36, "count": 2, "times": "always"}))
    image = make_image(tmp_path, "engine", "1.4.0", size=16 * 1024)
    done = tester.flash("engine", image)
    assert done.returncode == 3
    assert ("error: engine: step 'download' (TransferData block 2/8 counter 0x02 at 0x00010800): "
            "TransferData block 0x02: no response after 3 attempts (ECU not answering)") in done.stderr
    # single bank, erased and half written: still in the bootloader, and says so
    assert software_version(tester, "engine") == "BOOT"
    _reflash_without_faults(bench, tester, image, "1.4.0")


def _reflash_without_faults(bench: Bench, tester: Cli, image: Path, version: str) -> None:
    data = yaml.safe_load(tester.config.read_text())
    for ecu in data["ecus"].values():
        ecu["sim"].pop("faults", None)
    fixed = tester.config.with_name("vehicle-fixed.yaml")
    fixed.write_text(yaml.safe_dump(data, sort_keys=False))
    bench.restart(fixed)
    tester.config = fixed
    code, _, err = tester.flash_json("engine", image)
    assert code == 0, err
    assert software_version(tester, "engine") == version


def test_an_nrc_on_a_block_names_the_step_and_the_ecu_stays_flashable(
        start_bench: StartBench, tmp_path: Path) -> None:
    _bench, tester = start_bench(faults("engine", nrc_on_block={"block": 3, "nrc": 0x72}))
    image = make_image(tmp_path, "engine", "1.5.0", size=16 * 1024)
    code, result, err = tester.flash_json("engine", image)
    assert code == 4
    assert ("error: engine: step 'download' (TransferData block 3/8 counter 0x03 at 0x00011000): "
            "NRC 0x72 generalProgrammingFailure") in err
    assert result["error"]["nrc"] == "0x72" and result["error"]["step"] == "download"
    assert [s["status"] for s in result["cleanup"]] == ["ok", "ok"]  # reset after the failure
    assert software_version(tester, "engine") == "BOOT"
    code, result, err = tester.flash_json("engine", image)  # the fault fired once: flash again
    assert code == 0, err
    assert software_version(tester, "engine") == "1.5.0"


def test_a_reset_in_the_middle_of_a_transfer(start_bench: StartBench, tmp_path: Path) -> None:
    _bench, tester = start_bench(lambda d: (faults("engine", reset_mid_transfer={"block": 4})(d),
                                           faults("brake", reset_mid_transfer={"block": 4})(d)))
    engine_image = make_image(tmp_path, "engine", "1.6.0", size=16 * 1024)
    code, result, err = tester.flash_json("engine", engine_image)
    assert code != 0 and result["error"]["step"] == "download"
    assert "error: engine: step 'download' (TransferData block 4/8" in err
    assert software_version(tester, "engine") == "BOOT"  # single bank: in the bootloader ...
    code, _, err = tester.flash_json("engine", engine_image)  # ... and flashable again
    assert code == 0, err
    assert software_version(tester, "engine") == "1.6.0"
    # A/B: the old image keeps running and is still reported
    code, result, err = tester.flash_json("brake", make_image(tmp_path, "brake", "3.6.0", size=16 * 1024))
    assert code != 0 and "error: brake: step 'download'" in err
    assert software_version(tester, "brake") == "3.4.0"


def test_a_crc_mismatch_fails_verification_and_leaves_each_ecu_as_its_bootloader_would(
        start_bench: StartBench, tmp_path: Path) -> None:
    _bench, tester = start_bench(lambda d: (faults("engine", wrong_crc=True)(d),
                                            faults("brake", wrong_crc=True)(d)))
    code, result, err = tester.flash_json("brake", make_image(tmp_path, "brake", "3.7.0", size=16 * 1024))
    assert code == 5
    assert "error: brake: step 'check_memory' (routine 0202): checkMemory reported status 0x01" in err
    assert "activate" not in [s["name"] for s in result["steps"]]  # never reached
    assert software_version(tester, "brake") == "3.4.0"  # A/B: old image intact and reported
    code, result, err = tester.flash_json("engine", make_image(tmp_path, "engine", "1.7.0", size=16 * 1024))
    assert code == 5
    assert "error: engine: step 'check_memory' (routine 0202): checkMemory reported status 0x01" in err
    assert software_version(tester, "engine") == "BOOT"  # single bank: unchecked image is not started
    code, result, err = tester.flash_json("engine", make_image(tmp_path, "engine", "1.7.1", size=16 * 1024))
    assert code == 0, err  # the knob fired once: the reflash is checked and accepted
    assert software_version(tester, "engine") == "1.7.1"


def test_a_wrong_key_is_refused_and_nothing_is_erased(start_bench: StartBench, tmp_path: Path) -> None:
    _bench, tester = start_bench(faults("engine", refuse_security=True))
    done = tester.flash("engine", make_image(tmp_path, "engine", "1.8.0", size=16 * 1024))
    assert done.returncode == 4
    assert "error: engine: step 'security_access' (SecurityAccess 0x02 sendKey): NRC 0x35 invalidKey" \
        in done.stderr
    assert software_version(tester, "engine") == "1.0.0"  # the old application still runs


def test_failed_preconditions_stop_before_programming(start_bench: StartBench, tmp_path: Path) -> None:
    _bench, tester = start_bench(faults("brake", preconditions_fail=True))
    done = tester.flash("brake", make_image(tmp_path, "brake", "3.8.0", size=16 * 1024))
    assert done.returncode == 6
    assert "error: brake: step 'check_preconditions' (routine 0203): checkProgrammingPreconditions " \
           "reported status 0x01" in done.stderr
    assert software_version(tester, "brake") == "3.4.0"


def test_an_ecu_that_never_answers(start_bench: StartBench, tmp_path: Path) -> None:
    _bench, tester = start_bench(faults("engine", drop_response={"service": 0x10, "count": 1, "times": "always"}))
    done = tester.flash("engine", make_image(tmp_path, "engine", "1.9.0", size=16 * 1024))
    assert done.returncode == 3
    assert ("error: engine: step 'extended_session' (DiagnosticSessionControl 0x03): "
            "DiagnosticSessionControl: no response within 1 s (ECU not answering)") in done.stderr


def test_versions_marks_a_silent_ecu_and_still_reads_the_others(start_bench: StartBench) -> None:
    _bench, tester = start_bench(None, "--ecu", "engine")  # only the engine is simulated
    code, found, err = tester.versions()
    assert code == 3
    assert found["engine"]["answering"] and found["engine"]["values"]["software_version"] == "1.0.0"
    assert not found["brake"]["answering"] and not found["body"]["answering"]
    assert "no response within 1 s" in str(found["brake"]["error"])
    assert "error: not answering: brake" in err


def test_without_a_bench_every_command_says_the_bus_is_missing(
        tmp_path: Path, bench_env: dict[str, str]) -> None:
    tester = Cli(write_config(tmp_path, fast_bench), bench_env)
    done = tester.flash("engine", make_image(tmp_path, "engine", "2.0.0", size=1024))
    assert done.returncode == 3
    assert "error: bus powertrain: cannot open benchhub channel 'powertrain'" in done.stderr
    code, found, _ = tester.versions()
    assert code == 3 and not any(v["answering"] for v in found.values())


# -- bad input never reaches the bus ---------------------------------------------------------
def test_bad_input_is_refused_before_the_bus(tmp_path: Path, bench_env: dict[str, str]) -> None:
    tester = Cli(write_config(tmp_path, fast_bench), bench_env)  # no bench: nothing may be sent
    good = make_image(tmp_path, "engine", "2.0.0", size=1024)
    done = tester.flash("gearbox", good)
    assert done.returncode == 2 and "unknown ECU 'gearbox' (configured: body, brake, engine)" in done.stderr
    outside = make_image(tmp_path, "body", "2.0.0", size=1024)  # body's address, engine's map
    done = tester.flash("engine", outside)
    assert done.returncode == 2
    assert "segment 0x00008000-0x00008400 (1024 bytes) is outside the memory map of engine" in done.stderr
    broken = tmp_path / "broken.hex"
    lines = good.read_text().splitlines()
    lines[1] = lines[1][:9] + "ZZ" + lines[1][11:]
    broken.write_text("\n".join(lines) + "\n")
    done = tester.flash("engine", broken)
    assert done.returncode == 2 and "line 2: malformed ihex file" in done.stderr
    raw = tmp_path / "app.bin"
    raw.write_bytes(b"\x00" * 64)
    done = tester.flash("engine", raw)
    assert done.returncode == 2 and "needs a base address" in done.stderr


def test_the_demo_flashes_a_single_bank_and_an_ab_ecu(bench_env: dict[str, str]) -> None:
    import subprocess

    from flashkit import otactl

    done = subprocess.run(otactl("demo", "--flash-only", "--image-size", str(16 * 1024)), capture_output=True,
                          text=True, env=bench_env, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "engine: flashed; software version now 1.0.1" in out
    assert "brake: flashed; software version now 3.4.1" in out
    after = out[out.index("versions after"):]
    assert "1.0.1" in after and "3.4.1" in after and "2.0.0" in after
    assert "bench stopped" in out
