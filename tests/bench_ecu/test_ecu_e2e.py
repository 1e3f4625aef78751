"""End to end: ``otactl bench ecus`` in its own process, a udsoncan tester over can-isotp over the bench hub."""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from pathlib import Path

import can
import isotp
import pytest
import udsoncan
from udsoncan import AsciiCodec, MemoryLocation
from udsoncan.client import Client
from udsoncan.connections import PythonIsoTpConnection

from agent.config.vehicle import VehicleConfig, load_vehicle_config
from agent.errors import TransportError
from bench.appimage import build_image
from bench.canbus.hub import HubThread
from bench.ecu.host import start_hub

from .support import BRAKE_APP, BenchProcess, write_config

pytestmark = pytest.mark.e2e


@pytest.fixture
def bench_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    hub_dir = tmp_path / "hub"
    hub_dir.mkdir()
    monkeypatch.setenv("OTA_BENCH_HUB_DIR", str(hub_dir))  # for this process's bus too
    env = dict(os.environ)
    env["OTA_BENCH_HUB_DIR"] = str(hub_dir)
    return env


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return write_config(tmp_path / "vehicle.yaml", brake={"erase_time": 1.2, "response_pending_interval": 0.4})


@pytest.fixture
def processes() -> Iterator[list[BenchProcess]]:
    started: list[BenchProcess] = []
    yield started
    for p in started:
        p.kill()


def _client(config: VehicleConfig, ecu_name: str) -> Iterator[Client]:
    ecu = config.ecu(ecu_name)
    bus = can.Bus(interface="benchhub", channel=config.bus_of(ecu).channel)
    notifier = can.Notifier(bus, [])
    stack = isotp.NotifierBasedCanStack(
        bus, notifier, address=isotp.Address(isotp.AddressingMode.Normal_11bits, txid=ecu.isotp.tx_id,
                                             rxid=ecu.isotp.rx_id),
        params={"blocking_send": True, "stmin": 0, "blocksize": 0})
    cfg = dict(udsoncan.configs.default_client_config)
    cfg.update(use_server_timing=False, p2_timeout=2.0, p2_star_timeout=5.0, request_timeout=10.0,
               data_identifiers={0xF189: AsciiCodec(5), 0xF187: AsciiCodec(8)})
    sec = ecu.security
    cfg.update(security_algo=lambda level, seed, params: sec.load()(seed, level, sec.params))
    try:
        with Client(PythonIsoTpConnection(stack), config=cfg) as client:  # type: ignore[arg-type]
            yield client
    finally:
        notifier.stop()
        bus.shutdown()


def test_bench_ecus_serves_uds_and_stops_on_sigterm(tmp_path: Path, bench_env: dict[str, str],
                                                    config_path: Path, processes: list[BenchProcess]) -> None:
    bench = BenchProcess(["bench", "ecus", "--config", str(config_path), "--state-dir", str(tmp_path / "state")],
                         bench_env)
    processes.append(bench)
    assert bench.start("bench ready:") == "bench ready: engine,brake,body"
    config = load_vehicle_config(config_path)
    for client in _client(config, "brake"):
        assert client.read_data_by_identifier(0xF189).service_data.values[0xF189] == "3.4.0"
        assert client.read_data_by_identifier(0xF187).service_data.values[0xF187] == "BRK-0815"
        response = client.change_session(3)
        assert response.service_data.session_echo == 3
        assert response.service_data.p2_server_max == 0.05 and response.service_data.p2_star_server_max == 5.0
        client.tester_present()
    assert bench.terminate() == 0


def test_ab_flash_over_the_bench_bus_survives_a_restart(tmp_path: Path, bench_env: dict[str, str],
                                                       config_path: Path, processes: list[BenchProcess]) -> None:
    args = ["bench", "ecus", "--config", str(config_path), "--state-dir", str(tmp_path / "state"),
            "--ecu", "brake"]
    bench = BenchProcess(args, bench_env)
    processes.append(bench)
    assert bench.start("bench ready:") == "bench ready: brake"
    config = load_vehicle_config(config_path)
    image = build_image("3.5.0", "BRK-0815", 8 * 1024)
    for client in _client(config, "brake"):
        client.change_session(3)
        client.change_session(2)
        client.unlock_security_access(0x11)
        erase = bytes([0x44]) + BRAKE_APP.to_bytes(4, "big") + (0x8000).to_bytes(4, "big")
        assert client.start_routine(0xFF00, erase).service_data.routine_status_record == b"\x00"
        location = MemoryLocation(BRAKE_APP, len(image), address_format=32, memorysize_format=32)
        block = client.request_download(location).service_data.max_length - 2
        for n, offset in enumerate(range(0, len(image), block), start=1):
            client.transfer_data(n & 0xFF, image[offset:offset + block])
        client.request_transfer_exit()
        crc = zlib.crc32(image).to_bytes(4, "big")
        assert client.start_routine(0x0202, crc).service_data.routine_status_record == b"\x00"
        assert client.start_routine(0xFF01).service_data.routine_status_record == b"\x00"
        assert client.start_routine(0x0210).service_data.routine_status_record == b"\x00"
        client.ecu_reset(1)
        assert client.read_data_by_identifier(0xF189).service_data.values[0xF189] == "3.5.0"
    assert bench.terminate() == 0

    again = BenchProcess(args, bench_env)
    processes.append(again)
    again.start("bench ready:")
    for client in _client(config, "brake"):
        assert client.read_data_by_identifier(0xF189).service_data.values[0xF189] == "3.5.0"
    assert again.terminate() == 0


def test_bench_bus_alone_then_ecus_join_it(tmp_path: Path, bench_env: dict[str, str], config_path: Path,
                                           processes: list[BenchProcess]) -> None:
    hub = BenchProcess(["bench", "bus", "--config", str(config_path)], bench_env)
    processes.append(hub)
    assert hub.start("bench bus ready:") == "bench bus ready: powertrain,body"
    ecus = BenchProcess(["bench", "ecus", "--config", str(config_path), "--state-dir", str(tmp_path / "s"),
                         "--ecu", "engine", "--no-hub"], bench_env)
    processes.append(ecus)
    ecus.start("bench ready:")
    for client in _client(load_vehicle_config(config_path), "engine"):
        assert client.read_data_by_identifier(0xF189).service_data.values[0xF189] == "1.0.0"
    assert ecus.terminate() == 0
    assert hub.terminate() == 0


def test_a_second_hub_on_a_served_channel_is_refused(bench_env: dict[str, str]) -> None:
    with HubThread(["powertrain"]), pytest.raises(TransportError, match="already serves channel 'powertrain'"):
        start_hub(["powertrain"])


def test_bad_config_exits_with_the_configuration_error(tmp_path: Path, bench_env: dict[str, str],
                                                       processes: list[BenchProcess]) -> None:
    path = write_config(tmp_path / "bad.yaml", engine={"faults": {"wrong_crc": "sometimes"}})
    bench = BenchProcess(["bench", "ecus", "--config", str(path), "--state-dir", str(tmp_path / "s")],
                         bench_env)
    processes.append(bench)
    with pytest.raises(AssertionError, match=r"error: .*bad\.yaml: ecus\.engine\.sim\.faults\.wrong_crc"):
        bench.start("bench ready:")
    assert bench.proc is not None and bench.proc.returncode == 2


def test_simulator_stops_with_an_error_when_its_bus_goes_away(tmp_path: Path, bench_env: dict[str, str],
                                                              config_path: Path,
                                                              processes: list[BenchProcess]) -> None:
    hub = BenchProcess(["bench", "bus", "--config", str(config_path)], bench_env)
    processes.append(hub)
    hub.start("bench bus ready:")
    ecus = BenchProcess(["bench", "ecus", "--config", str(config_path), "--state-dir", str(tmp_path / "s"),
                         "--no-hub"], bench_env)
    processes.append(ecus)
    ecus.start("bench ready:")
    assert hub.terminate() == 0
    assert ecus.proc is not None
    assert ecus.proc.wait(timeout=30) == 3  # TransportError
    assert "hub closed the connection" in ecus.stderr()
