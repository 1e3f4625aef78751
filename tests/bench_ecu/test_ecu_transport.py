"""The ISO-TP side: addressing mirrors for every mode, and the bus loop on python-can's in-process bus."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import can
import cantools
import isotp
import pytest
import udsoncan
from udsoncan import AsciiCodec
from udsoncan.client import Client
from udsoncan.connections import PythonIsoTpConnection

from agent.config.vehicle import IsoTpConfig, VehicleConfig, load_vehicle_config
from bench.ecu.host import BenchHost
from bench.ecu.transport import ISOTP_MODES, server_address

from .support import BASE_CONFIG, dump_config, merge

TESTER_MODES: list[dict[str, Any]] = [
    {"addressing": "normal_11bit", "tx_id": 0x7E0, "rx_id": 0x7E8},
    {"addressing": "normal_29bit", "tx_id": 0x18DA10F1, "rx_id": 0x18DAF110},
    {"addressing": "normal_fixed_29bit", "target_address": 0x10, "source_address": 0xF1},
    {"addressing": "extended_11bit", "tx_id": 0x6F1, "rx_id": 0x610, "target_address": 0x10,
     "source_address": 0xF1},
    {"addressing": "extended_29bit", "tx_id": 0x18EF10F1, "rx_id": 0x18EFF110, "target_address": 0x10,
     "source_address": 0xF1},
    {"addressing": "mixed_11bit", "tx_id": 0x7E0, "rx_id": 0x7E8, "address_extension": 0x99},
    {"addressing": "mixed_29bit", "target_address": 0x10, "source_address": 0xF1, "address_extension": 0x99},
]


def _tester_address(cfg: IsoTpConfig) -> isotp.Address:
    return isotp.Address(ISOTP_MODES[cfg.addressing], txid=cfg.tx_id, rxid=cfg.rx_id,
                         target_address=cfg.target_address, source_address=cfg.source_address,
                         address_extension=cfg.address_extension)


@pytest.mark.parametrize("mode", TESTER_MODES, ids=lambda m: m["addressing"])
def test_server_address_is_the_mirror_of_the_tester(mode: dict[str, Any]) -> None:
    cfg = IsoTpConfig(**mode)
    tester, server = _tester_address(cfg), server_address(cfg)
    physical = isotp.TargetAddressType.Physical
    assert tester.get_tx_arbitration_id(physical) == server.get_rx_arbitration_id(physical)
    assert server.get_tx_arbitration_id(physical) == tester.get_rx_arbitration_id(physical)
    request = isotp.CanMessage(arbitration_id=tester.get_tx_arbitration_id(physical),
                               data=tester.get_tx_payload_prefix() + b"\x02\x3e\x00",
                               extended_id=tester.is_tx_29bits())
    answer = isotp.CanMessage(arbitration_id=server.get_tx_arbitration_id(physical),
                              data=server.get_tx_payload_prefix() + b"\x02\x7e\x00",
                              extended_id=server.is_tx_29bits())
    assert server.is_for_me(request) and tester.is_for_me(answer)
    assert not server.is_for_me(answer)


@pytest.fixture
def virtual_config(tmp_path: Path) -> VehicleConfig:
    tag = uuid.uuid4().hex[:8]
    data = merge(BASE_CONFIG, {"buses": {"powertrain": {"interface": "virtual", "channel": f"pt-{tag}"},
                                         "body": {"interface": "virtual", "channel": f"body-{tag}"}}})
    data["ecus"]["engine"]["sim"].update(erase_time=0.3, response_pending_interval=0.1)
    return load_vehicle_config(dump_config(tmp_path / "virtual.yaml", data))


@pytest.fixture
def host(virtual_config: VehicleConfig, tmp_path: Path) -> Iterator[BenchHost]:
    host = BenchHost(virtual_config, tmp_path / "state", ecus=["engine", "brake"])
    host.start()
    assert host.hub is None  # no benchhub bus: no hub
    yield host
    host.stop()


@pytest.fixture
def tester_bus(virtual_config: VehicleConfig) -> Iterator[can.BusABC]:
    bus = can.Bus(interface="virtual", channel=virtual_config.buses["powertrain"].channel)
    yield bus
    bus.shutdown()


@pytest.fixture
def notifier(tester_bus: can.BusABC) -> Iterator[can.Notifier]:
    notifier = can.Notifier(tester_bus, [])
    yield notifier
    notifier.stop()


def _client(notifier: can.Notifier, txid: int, rxid: int, **config: Any) -> Client:
    bus = notifier.bus
    assert isinstance(bus, can.BusABC)
    stack = isotp.NotifierBasedCanStack(bus, notifier,
                                        address=isotp.Address(isotp.AddressingMode.Normal_11bits,
                                                              txid=txid, rxid=rxid),
                                        params={"blocking_send": True})
    cfg = dict(udsoncan.configs.default_client_config)
    cfg.update(use_server_timing=False, p2_timeout=2.0, request_timeout=10.0,
               data_identifiers={0xF190: AsciiCodec(17), 0xF189: AsciiCodec(5)}, **config)
    return Client(PythonIsoTpConnection(stack), config=cfg)  # type: ignore[arg-type]


def test_multi_frame_answers_and_two_ecus_on_one_bus(host: BenchHost, notifier: can.Notifier) -> None:
    with _client(notifier, 0x7E0, 0x7E8) as engine, _client(notifier, 0x7E1, 0x7E9) as brake:
        # F190 is 20 bytes: first frame, flow control from the tester, consecutive frames
        assert engine.read_data_by_identifier(0xF190).service_data.values[0xF190] == "BENCHVIN000000001"
        assert brake.read_data_by_identifier(0xF189).service_data.values[0xF189] == "3.4.0"
        assert engine.read_data_by_identifier(0xF189).service_data.values[0xF189] == "1.0.0"


def test_erase_response_pending_over_the_bus(host: BenchHost, notifier: can.Notifier) -> None:
    pendings: list[int] = []
    sec = host.config.ecu("engine").security
    client = _client(notifier, 0x7E0, 0x7E8, nrc78_callback=lambda: pendings.append(1),
                     security_algo=lambda level, seed, params: sec.load()(seed, level, sec.params))
    with client:
        client.change_session(3)
        client.change_session(2)
        client.unlock_security_access(1)
        record = bytes([0x44]) + (0x10000).to_bytes(4, "big") + (0x8000).to_bytes(4, "big")
        assert client.start_routine(0xFF00, record).service_data.routine_status_record == b"\x00"
    assert pendings  # the first 0x78 at once (how many follow depends on the machine: see unit tests)


def test_functional_request_is_answered_on_the_physical_id(host: BenchHost, tester_bus: can.BusABC) -> None:
    tester_bus.send(can.Message(arbitration_id=0x7DF, data=b"\x02\x10\x03", is_extended_id=False))
    answers: dict[int, bytes] = {}
    while len(answers) < 2:
        msg = tester_bus.recv(timeout=5)
        assert msg is not None, f"only {answers} answered"
        answers[msg.arbitration_id] = bytes(msg.data[:7])
    assert answers == {0x7E8: bytes.fromhex("065003003201f4"),
                       0x7E9: bytes.fromhex("065003003201f4")}
    tester_bus.send(can.Message(arbitration_id=0x7DF, data=b"\x02\x3e\x80", is_extended_id=False))
    tester_bus.send(can.Message(arbitration_id=0x7E0, data=b"\x03\x22\xf1\x86", is_extended_id=False))
    msg = tester_bus.recv(timeout=5)
    assert msg is not None and msg.arbitration_id == 0x7E8 and bytes(msg.data[:5]) == b"\x04\x62\xf1\x86\x03"


def test_same_config_on_kernel_vcan(tmp_path: Path) -> None:
    """Only the interface and channel change on a Linux machine with vcan (skipped without one)."""
    try:
        probe = can.Bus(interface="socketcan", channel="vcan0")
    except Exception as e:  # no kernel CAN here: python-can says why
        pytest.skip(f"no socketcan vcan0 on this machine ({type(e).__name__}: {e})")
    probe.shutdown()
    data = merge(BASE_CONFIG, {"buses": {"powertrain": {"interface": "socketcan", "channel": "vcan0"}}})
    config = load_vehicle_config(dump_config(tmp_path / "vcan.yaml", data))
    host = BenchHost(config, tmp_path / "state", ecus=["engine"])
    host.start()
    bus = can.Bus(interface="socketcan", channel="vcan0")
    notifier = can.Notifier(bus, [])
    try:
        with _client(notifier, 0x7E0, 0x7E8) as client:
            assert client.read_data_by_identifier(0xF189).service_data.values[0xF189] == "1.0.0"
    finally:
        notifier.stop()
        bus.shutdown()
        host.stop()


def test_version_frames_while_the_application_runs(tmp_path: Path) -> None:
    dbc = Path(__file__).parents[2] / "configs" / "bench-vehicle.dbc"
    tag = uuid.uuid4().hex[:8]
    data = merge(BASE_CONFIG, {"buses": {"powertrain": {"interface": "virtual", "channel": f"pt-{tag}"},
                                         "body": {"interface": "virtual", "channel": f"body-{tag}"}},
                               "version_frames": {"dbc": str(dbc)}})
    data["ecus"]["engine"]["sim"]["version_frames"] = {"message": "ENGINE_VERSION", "period": 0.02}
    config = load_vehicle_config(dump_config(tmp_path / "frames.yaml", data))
    db = cantools.database.load_file(str(dbc))
    frame_id = db.get_message_by_name("ENGINE_VERSION").frame_id
    tester = can.Bus(interface="virtual", channel=f"pt-{tag}")
    host = BenchHost(config, tmp_path / "state", ecus=["engine"])

    def next_version_frame() -> dict[str, Any]:
        for _ in range(200):
            msg = tester.recv(timeout=5)
            assert msg is not None, "no frame"
            if msg.arbitration_id == frame_id:
                return dict(db.decode_message(frame_id, msg.data))
        raise AssertionError("no version frame among 200 frames")

    try:
        host.start()
        first = next_version_frame()
        assert (first["SwMajor"], first["SwMinor"], first["SwPatch"], first["VersionCounter"]) == (1, 0, 0, 0)
        assert next_version_frame()["VersionCounter"] == 1
        tester.send(can.Message(arbitration_id=0x7E0, data=b"\x02\x11\x01", is_extended_id=False))
        counters = [next_version_frame()["VersionCounter"] for _ in range(3)]
        assert 0 in counters  # the first frame after the reset starts over
    finally:
        tester.shutdown()
        host.stop()
