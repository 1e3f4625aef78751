"""Flashing under faults, end to end: a bench bus that drops, delays, errors and corrupts frames, and
simulated ECUs answering NRC 0x78 storms, 0x72, 0x73 or resetting mid-transfer.

The flasher is the one ``otactl flash`` and the update agent run (:func:`update_agent.flashing.flash_ecu`,
in this process), over real ISO-TP frames on the bench hub (its own process, fault injection set at
run time through its control socket) to ``otactl bench ecus`` (another process). After every flash the
outcome is one a user can live with: either it succeeded and the ECU's own flash holds the image
(byte for byte, read from its persisted bank) and reports the new version, or it failed with one of
the stack's errors naming what went wrong, and a retry on a clean bus flashes the ECU. Every wait
is bounded (the UDS timings below, the test timeout); nothing waits on time.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import can
import pytest
import yaml

from agent.config.vehicle import VehicleConfig, load_vehicle_config
from agent.errors import NegativeResponseError, OtaError, OtaTimeoutError, VerificationError
from bench.appimage import build_image, to_hex
from bench.canbus.control import fault_status, set_faults
from bench.canbus.hub import HubProcess
from bench.readyproc import ReadyProcess
from bench.scenario import FAST_SIM, FAST_TIMING, VEHICLE_TEMPLATE
from update_agent.flashing import flash_ecu
from update_agent.images import load_image
from update_agent.result import FlashResult

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

IMAGE_SIZE = 16 * 1024
#: the ECU faults, each fires once (``times`` defaults to 1), in the order the tests meet them
ECU_FAULTS: dict[str, dict[str, Any]] = {
    # engine: 0x72 at block 2, then 0x73 at block 2, then a reset at block 3, then a clean flash
    "engine": {"nrc_on_block": [{"block": 2, "nrc": 0x72}, {"block": 2, "nrc": 0x73}],
               "reset_mid_transfer": {"block": 3}},
    # brake: a storm of 40 NRC 0x78 on the 2nd TransferData (inside the cap), then one on the 10th
    # (the 2nd flash's 2nd block) that outlasts a tester with a short cap
    "brake": {"pending_storm": [{"service": 0x36, "count": 2, "pendings": 40},
                                {"service": 0x36, "count": 10, "pendings": 60}]},
}


@dataclass
class FaultBench:
    dir: Path
    config: Path
    vehicle: VehicleConfig
    state: Path
    ecus: ReadyProcess

    def image(self, ecu: str, version: str) -> tuple[Path, bytes]:
        sim = self.vehicle.ecu(ecu).sim
        assert sim is not None
        data = build_image(version, str(sim.data["part_number"]), IMAGE_SIZE, seed=ecu)
        path = self.dir / f"{ecu}-{version}.hex"
        path.write_text(to_hex(data, self.vehicle.ecu(ecu).memory.regions[0].start))
        return path, data

    def flash(self, ecu: str, path: Path, vehicle: VehicleConfig | None = None) -> FlashResult:
        return flash_ecu(vehicle or self.vehicle, ecu, load_image(path))

    def status(self, ecu: str) -> dict[str, Any]:
        return dict(json.loads((self.state / ecu / "status.json").read_text()))

    def flashed(self, ecu: str, data: bytes) -> bytes:
        """What the ECU's running bank holds where the image goes (its persisted flash)."""
        bank = "ab"[self.status(ecu)["active_bank"] == "B"]
        with open(self.state / ecu / f"bank_{bank}.bin", "rb") as f:
            return f.read(len(data))


def _vehicle_config(path: Path) -> Path:
    data = yaml.safe_load(VEHICLE_TEMPLATE.read_text())
    frames = data.get("version_frames")
    if isinstance(frames, dict):
        frames["dbc"] = str(VEHICLE_TEMPLATE.parent / frames["dbc"])
    for name, ecu in data["ecus"].items():
        ecu["timing"] = dict(FAST_TIMING)
        sim = ecu.setdefault("sim", {})
        sim.update(FAST_SIM)
        sim["initial_image_size"] = IMAGE_SIZE
        sim.pop("faults", None)
        if name in ECU_FAULTS:
            sim["faults"] = copy.deepcopy(ECU_FAULTS[name])
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultBench]:
    base = tmp_path_factory.mktemp("faults")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OTA_BENCH_HUB_DIR", str(base / "hub"))
        config = _vehicle_config(base / "vehicle.yaml")
        hub = HubProcess(["powertrain", "body"]).start()
        try:
            ecus = ReadyProcess("ecus", [sys.executable, "-m", "agent.cli.main", "bench", "ecus", "--config",
                                         str(config), "--state-dir", str(base / "state"), "--no-hub"],
                                prefix="bench ready:", log=base / "ecus.log", env=dict(os.environ))
            ecus.start(60)
            try:
                yield FaultBench(base, config, load_vehicle_config(config), base / "state", ecus)
            finally:
                ecus.stop()
        finally:
            hub.stop()


def _assert_flashed(bench: FaultBench, ecu: str, result: FlashResult, data: bytes, version: str) -> None:
    assert result.ok, f"{ecu}: {result.error}"
    assert result.image_crc32 == zlib.crc32(data)
    assert result.versions_after["software_version"] == version  # read back from the ECU after its reset
    assert zlib.crc32(bench.flashed(ecu, data)) == zlib.crc32(data)  # the ECU's own flash, byte for byte
    assert bench.status(ecu)["application_valid"]


def _assert_clear_failure(result: FlashResult) -> OtaError:
    assert not result.ok and isinstance(result.error, OtaError), result.error
    assert result.failed_step and str(result.error), "a failure names its step and its reason"
    return result.error


# -- ECU faults ----------------------------------------------------------------------------------
def test_nrc_0x72_0x73_and_a_reset_mid_transfer_each_fail_clearly_then_the_ecu_flashes(bench: FaultBench) -> None:
    path, data = bench.image("engine", "1.7.0")
    first = _assert_clear_failure(bench.flash("engine", path))
    assert isinstance(first, NegativeResponseError) and first.nrc == 0x72
    assert "0x72" in str(first) and "generalProgrammingFailure" in str(first)
    second = _assert_clear_failure(bench.flash("engine", path))
    assert isinstance(second, NegativeResponseError) and second.nrc == 0x73
    third = bench.flash("engine", path)
    # the ECU reset without answering block 3; the re-sent block finds no download active (0x24)
    assert "TransferData block 3/8" in str(_assert_clear_failure(third)) and third.failed_step == "download"
    assert bench.status("engine")["software_version"] == "BOOT"  # half an image: it stays in its bootloader
    _assert_flashed(bench, "engine", bench.flash("engine", path), data, "1.7.0")
    assert bench.status("engine")["faults_fired"] == [
        "nrc_on_block: block 2 -> NRC 0x72", "nrc_on_block: block 2 -> NRC 0x73", "reset_mid_transfer: block 3"]


def test_a_0x78_storm_inside_the_cap_is_waited_out_and_one_beyond_it_fails_clearly(bench: FaultBench) -> None:
    path, data = bench.image("brake", "3.9.0")
    result = bench.flash("brake", path)
    _assert_flashed(bench, "brake", result, data, "3.9.0")
    download = next(step for step in result.steps if step.name == "download")
    assert download.nrcs == {0x78: 40}  # the storm, waited out
    # a tester whose 0x78 chain cap (0.5 s) is shorter than the next storm (60 x 0.05 s)
    ecu = bench.vehicle.ecu("brake")
    impatient = replace(bench.vehicle, ecus={**bench.vehicle.ecus, "brake": replace(
        ecu, timing=replace(ecu.timing, response_pending_limit=0.5))})
    path2, data2 = bench.image("brake", "3.9.1")
    listener = can.Bus(interface="benchhub", channel="powertrain",
                       can_filters=[{"can_id": ecu.isotp.rx_id, "can_mask": 0x7FF, "extended": False}])
    try:
        error = _assert_clear_failure(bench.flash("brake", path2, impatient))
        assert isinstance(error, OtaTimeoutError)
        assert "NRC 0x78" in str(error) and "response_pending_limit" in str(error)
        assert bench.status("brake")["software_version"] == "3.9.0"  # A/B: the running bank untouched
        _await_end_of_storm(listener)  # until then the ECU answers 0x21 busyRepeatRequest
    finally:
        listener.shutdown()
    _assert_flashed(bench, "brake", bench.flash("brake", path2), data2, "3.9.1")


def _await_end_of_storm(listener: can.BusABC) -> None:
    """Read the ECU's answers on the bus up to the TransferData answer that ends its 0x78 storm."""
    stormed = False
    while True:
        msg = listener.recv(timeout=30)
        assert msg is not None, "the ECU's 0x78 storm did not end within 30 s"
        data = bytes(msg.data)
        if data[:4] == bytes([0x03, 0x7F, 0x36, 0x78]):
            stormed = True
        elif stormed and len(data) >= 2 and data[1] == 0x76:
            return


# -- bus faults ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kinds", [
    {"drop": 0.004, "delay": 0.02, "error": 0.02},
    {"corrupt": 0.004},
], ids=["drop-delay-error", "corrupt"])
def test_a_flash_over_a_faulty_bus_succeeds_verified_or_fails_clearly_and_a_retry_flashes(
        bench: FaultBench, kinds: dict[str, float]) -> None:
    version = "2.5.0" if "drop" in kinds else "2.6.0"
    path, data = bench.image("body", version)
    body = bench.vehicle.ecu("body").isotp
    before = fault_status("body")["counters"]
    set_faults("body", **kinds, seed=1, ids=[body.tx_id, body.rx_id])
    try:
        result = bench.flash("body", path)
    finally:
        status = set_faults("body")  # off
    injected = {k: status["counters"][k] - before[k] for k in kinds}
    assert sum(injected.values()) > 0, f"no fault was injected: {status}"
    if result.ok:
        _assert_flashed(bench, "body", result, data, version)
    else:
        error = _assert_clear_failure(result)
        if "corrupt" in kinds and isinstance(error, VerificationError):
            assert "CRC" in str(error)  # a flipped payload bit is caught by the ECU's checkMemory
        retry = bench.flash("body", path)
        _assert_flashed(bench, "body", retry, data, version)


def test_an_undetected_corruption_of_image_data_is_caught_by_the_ecus_crc_check(bench: FaultBench) -> None:
    """One payload bit flipped in the tester's frames (seed 2: about the 1245th frame, a consecutive frame
    of the 5th block) gets past ISO-TP and UDS; the ECU's checkMemory CRC refuses the image."""
    path, data = bench.image("body", "2.7.0")
    body = bench.vehicle.ecu("body").isotp
    before = fault_status("body")["counters"]["corrupt"]
    set_faults("body", corrupt=0.0006, seed=2, ids=[body.tx_id])
    try:
        result = bench.flash("body", path)
    finally:
        status = set_faults("body")
    assert status["counters"]["corrupt"] - before == 1
    error = _assert_clear_failure(result)
    assert isinstance(error, VerificationError) and result.failed_step == "check_memory", error
    assert "CRC" in str(error)
    assert not bench.status("body")["application_valid"]  # single bank: it stays in its bootloader
    assert bench.flashed("body", data) != data  # what the ECU holds is not the image
    _assert_flashed(bench, "body", bench.flash("body", path), data, "2.7.0")
