"""The can-isotp side of a simulated ECU: its physical channel and its functional listener.

The ECU's addressing is the mirror of the tester's (the tester's tx id is the
ECU's rx id; target and source addresses swap).

An :class:`EcuPort` owns no thread: it wraps a can-isotp
``TransportLayerLogic`` (rxfn / txfn, ``process()`` driven by the caller) and
is pumped by the bus loop of :mod:`bench.ecu.runner`, which reads the bus
once for all ECUs on it and hands each frame only to the port listening on
its id. Compared with one ``NotifierBasedCanStack`` per ECU (two threads each,
every frame of the bus decoded by every stack) this takes no thread hand-off
per frame, which is what bounds the frame rate of a Python ECU simulator.

Functional requests are single frames by definition (ISO 15765-2): they are
decoded with can-isotp's PDU parser and need no second transport layer; the
answers go out on the physical channel.
"""

from __future__ import annotations

import collections
import logging
from typing import Any

import can
import isotp
from isotp.protocol import PDU

from agent.config.vehicle import IsoTpConfig
from update_agent.uds.transport import ISOTP_MODES

log = logging.getLogger(__name__)

#: tester-side ISO-TP parameters that do not describe the ECU's own stack
_TESTER_ONLY = frozenset({"rate_limit_enable", "rate_limit_max_bitrate", "rate_limit_window_size",
                          "listen_mode", "override_receiver_stmin"})
#: how often an ISO-TP exchange in progress is processed for its timers (FC / CF timeouts), s
ACTIVE_POLL = 0.01


def server_address(cfg: IsoTpConfig) -> isotp.Address:
    """The ECU's ISO-TP address: the mirror of the tester's configured one."""
    return isotp.Address(
        ISOTP_MODES[cfg.addressing],
        txid=cfg.rx_id,
        rxid=cfg.tx_id,
        target_address=cfg.source_address,
        source_address=cfg.target_address,
        address_extension=cfg.address_extension,
    )


def server_params(cfg: IsoTpConfig, *, stmin: int, blocksize: int, max_block_length: int) -> dict[str, Any]:
    """can-isotp parameters of the ECU's stack: the tester's frame format, the ECU's flow control."""
    params = {k: v for k, v in cfg.params.items() if k not in _TESTER_ONLY}
    params.update(stmin=stmin, blocksize=blocksize, blocking_send=False,
                  max_frame_size=max(4095, max_block_length, int(params.get("max_frame_size", 0))))
    return params


class EcuPort:
    """The physical ISO-TP channel and the functional listener of one ECU, pumped by its bus loop."""

    def __init__(self, name: str, bus: can.BusABC, cfg: IsoTpConfig, params: dict[str, Any]) -> None:
        self.name = name
        self.bus = bus
        self.address = server_address(cfg)
        self.is_29bit = cfg.is_29bit
        self._frames: collections.deque[isotp.CanMessage] = collections.deque()
        self.stack = isotp.TransportLayerLogic(rxfn=self._rxfn, txfn=self._txfn, address=self.address,
                                               error_handler=self._on_error, params=params)
        self.rx_id = self.address.get_rx_arbitration_id(isotp.TargetAddressType.Physical)
        self.functional_id = cfg.functional_id
        self._functional_prefix: int | None = None
        self._functional_skip = 0
        if cfg.addressing.startswith("mixed"):
            self._functional_skip, self._functional_prefix = 1, cfg.address_extension
        elif cfg.addressing.startswith("extended"):
            self._functional_skip = 1  # the functional N_TA byte is not the ECU's own address

    # -- frames in ------------------------------------------------------------------
    def physical_frame(self, msg: can.Message) -> None:
        self._frames.append(isotp.CanMessage(arbitration_id=msg.arbitration_id, data=bytes(msg.data),
                                             extended_id=msg.is_extended_id, is_fd=msg.is_fd,
                                             bitrate_switch=msg.bitrate_switch))

    def functional_frame(self, msg: can.Message) -> bytes | None:
        """The request in a functionally addressed frame, or None if it carries none."""
        data = bytes(msg.data)
        if self._functional_prefix is not None and (not data or data[0] != self._functional_prefix):
            return None
        try:
            pdu = PDU(isotp.CanMessage(arbitration_id=msg.arbitration_id, data=data,
                                       extended_id=msg.is_extended_id, is_fd=msg.is_fd),
                      start_of_data=self._functional_skip)
        except ValueError as e:
            log.debug("%s: functional frame ignored: %s", self.name, e)
            return None
        if pdu.type != PDU.Type.SINGLE_FRAME or not pdu.data:
            log.debug("%s: functional frame that is not a single frame ignored", self.name)
            return None
        return bytes(pdu.data)

    def _rxfn(self, timeout: float) -> isotp.CanMessage | None:
        return self._frames.popleft() if self._frames else None

    def _txfn(self, msg: isotp.CanMessage) -> None:
        try:
            self.bus.send(can.Message(arbitration_id=msg.arbitration_id, data=msg.data,
                                      is_extended_id=msg.is_extended_id, is_fd=msg.is_fd,
                                      bitrate_switch=msg.bitrate_switch))
        except can.CanError as e:
            log.warning("%s: frame not sent: %s", self.name, e)

    def _on_error(self, error: Exception) -> None:
        log.info("%s: ISO-TP: %s", self.name, error)

    # -- the loop's side ----------------------------------------------------------------
    def pump(self) -> list[bytes]:
        """Run the ISO-TP state machines: consume frames, send frames; return complete requests."""
        self.stack.process()
        requests = []
        while (payload := self.stack.recv()) is not None:
            requests.append(bytes(payload))
        return requests

    def send(self, data: bytes) -> None:
        """Queue one response and start sending it (the rest follows on later pumps)."""
        try:
            self.stack.send(data)
        except (ValueError, RuntimeError) as e:
            log.warning("%s: response %s not sent: %s", self.name, data[:4].hex(" "), e)
            return
        self.stack.process(do_rx=False)

    def next_wake(self) -> float | None:
        """Seconds until the port must be pumped again without a new frame (None: not before one)."""
        stack = self.stack
        if stack.is_tx_transmitting_cf():
            delay = stack.next_cf_delay()
            return min(ACTIVE_POLL, delay) if delay is not None else ACTIVE_POLL
        if stack.is_rx_active() or stack.transmitting():
            return ACTIVE_POLL
        return None
