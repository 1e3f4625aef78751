"""ISO-TP plumbing: addressing modes from config, functional TesterPresent frames, the can-isotp
send guard, and the kernel ISO-TP path where the kernel has it."""

from __future__ import annotations

import dataclasses
import os
import socket

import can
import isotp
import pytest

from agent.config.vehicle import BusConfig, EcuConfig, IsoTpConfig, VehicleConfig
from agent.errors import TransportError
from update_agent.uds.transport import FlasherCanStack, FunctionalSender, isotp_address, kernel_socket

BUS = BusConfig(name="b", interface="virtual", channel="test")


def _ecu(vehicle: VehicleConfig, isotp_cfg: IsoTpConfig) -> EcuConfig:
    return dataclasses.replace(vehicle.ecu("engine"), isotp=isotp_cfg)


@pytest.mark.parametrize(("cfg", "tx", "rx", "prefix"), [
    (IsoTpConfig("normal_11bit", tx_id=0x7E0, rx_id=0x7E8), 0x7E0, 0x7E8, b""),
    (IsoTpConfig("normal_29bit", tx_id=0x18DA10F1, rx_id=0x18DAF110), 0x18DA10F1, 0x18DAF110, b""),
    (IsoTpConfig("normal_fixed_29bit", target_address=0x10, source_address=0xF1), 0x18DA10F1, 0x18DAF110, b""),
    (IsoTpConfig("extended_11bit", tx_id=0x6F1, rx_id=0x610, target_address=0x10, source_address=0xF1),
     0x6F1, 0x610, b"\x10"),
    (IsoTpConfig("mixed_11bit", tx_id=0x6F1, rx_id=0x610, address_extension=0x22), 0x6F1, 0x610, b"\x22"),
    (IsoTpConfig("mixed_29bit", target_address=0x10, source_address=0xF1, address_extension=0x22),
     0x18CE10F1, 0x18CEF110, b"\x22"),
])
def test_every_addressing_mode_maps_to_an_isotp_address(cfg: IsoTpConfig, tx: int, rx: int, prefix: bytes) -> None:
    address = isotp_address(cfg)
    assert address.get_tx_arbitration_id() == tx
    assert address.get_rx_arbitration_id() == rx
    assert address.get_tx_payload_prefix() == prefix
    assert address.is_tx_29bits() == cfg.is_29bit


@pytest.mark.parametrize(("cfg", "can_id", "data"), [
    (IsoTpConfig("normal_11bit", tx_id=0x7E0, rx_id=0x7E8, functional_id=0x7DF), 0x7DF, "023e80cccccccccc"),
    (IsoTpConfig("normal_fixed_29bit", target_address=0x33, source_address=0xF1), 0x18DB33F1,
     "023e80cccccccccc"),
    (IsoTpConfig("extended_11bit", tx_id=0x6F1, rx_id=0x610, target_address=0xDF, source_address=0xF1,
                 functional_id=0x6FF), 0x6FF, "df023e80cccccccc"),
    (IsoTpConfig("mixed_29bit", target_address=0x33, source_address=0xF1, address_extension=0x22),
     0x18CD33F1, "22023e80cccccccc"),
])
def test_functional_tester_present_frames(bench_vehicle: VehicleConfig, cfg: IsoTpConfig, can_id: int,
                                          data: str) -> None:
    cfg = dataclasses.replace(cfg, params={"tx_padding": 0xCC})
    frames: list[can.Message] = []
    FunctionalSender(_ecu(bench_vehicle, cfg), frames.append, BUS).send(b"\x3e\x80")
    assert [(f.arbitration_id, f.data.hex()) for f in frames] == [(can_id, data)]
    assert frames[0].is_extended_id == cfg.is_29bit


def test_a_rate_limited_single_frame_still_completes_a_blocking_send() -> None:
    """can-isotp 2.0.7 leaves TRANSMIT_SF_STANDBY without completing the request; FlasherCanStack does."""
    bus = can.Bus(interface="virtual", channel="flasher-stack-test", receive_own_messages=False)
    peer = can.Bus(interface="virtual", channel="flasher-stack-test")
    notifier = can.Notifier(bus, [], timeout=0.05)
    # a budget of 70 bits per 0.1 s: one 8-byte frame, the second waits in the standby state
    stack = FlasherCanStack(bus, notifier, address=isotp.Address(isotp.AddressingMode.Normal_11bits,
                                                                 txid=0x7E0, rxid=0x7E8),
                            params={"blocking_send": True, "tx_padding": 0, "rate_limit_enable": True,
                                    "rate_limit_max_bitrate": 700, "rate_limit_window_size": 0.1})
    stack.start()
    try:
        stack.send(b"\x3e\x00", send_timeout=5)
        stack.send(b"\x3e\x00", send_timeout=5)  # raised BlockingSendTimeout before the fix
        seen = [peer.recv(5), peer.recv(5)]
        assert [m.data[:3].hex() if m else None for m in seen] == ["023e00", "023e00"]
    finally:
        stack.stop()
        notifier.stop()
        bus.shutdown()
        peer.shutdown()


def _kernel_isotp_reason() -> str | None:
    if not hasattr(socket, "CAN_ISOTP"):
        return "this Python has no socket.CAN_ISOTP"
    try:
        s = socket.socket(socket.AF_CAN, socket.SOCK_DGRAM, socket.CAN_ISOTP)
    except OSError as e:
        return f"the kernel has no CAN ISO-TP sockets here ({e.strerror}; modprobe can-isotp)"
    s.close()
    if not os.path.exists("/sys/class/net/vcan0"):
        return "no vcan0 interface (ip link add dev vcan0 type vcan && ip link set up vcan0)"
    return None


def test_kernel_isotp_socket_is_configured_from_the_ecu_config(bench_vehicle: VehicleConfig) -> None:
    reason = _kernel_isotp_reason()
    if reason is not None:
        pytest.skip(f"kernel ISO-TP path not testable: {reason}")
    ecu = dataclasses.replace(bench_vehicle.ecu("engine"), isotp=dataclasses.replace(
        bench_vehicle.ecu("engine").isotp, stack="kernel", params={"stmin": 5, "blocksize": 8, "tx_padding": 0xAA}))
    sock = kernel_socket(ecu, BusConfig(name="powertrain", interface="socketcan", channel="vcan0"))
    try:
        opts = sock.get_opts()
        assert opts.optflag is not None and opts.optflag & isotp.socket.flags.WAIT_TX_DONE
        assert opts.txpad == 0xAA
        fc = sock.get_fc_opts()
        assert (fc.stmin, fc.bs) == (5, 8)
    finally:
        sock.close()


def test_kernel_stack_without_kernel_support_is_a_clear_transport_error(bench_vehicle: VehicleConfig) -> None:
    if _kernel_isotp_reason() is None:
        pytest.skip("the kernel has CAN ISO-TP here; the error path cannot be shown")
    with pytest.raises(TransportError, match="kernel ISO-TP socket unavailable here"):
        kernel_socket(bench_vehicle.ecu("engine"), BusConfig(name="p", interface="socketcan", channel="vcan0"))
