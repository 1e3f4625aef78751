"""ISO-TP connections for udsoncan, built from the vehicle config.

Two stacks, chosen per ECU by ``isotp.stack``:

* ``python`` (default): can-isotp's :class:`isotp.NotifierBasedCanStack` over a
  python-can bus shared through one :class:`can.Notifier` per bus (several
  ECUs on one bus share one CAN controller, as on a real gateway). Sends are
  always blocking (``blocking_send=True``): with non-blocking sends udsoncan
  would start its P2 timer while a long request is still leaving the tester.
* ``kernel``: the Linux CAN_ISOTP socket (:class:`isotp.socket`) on the bus's
  SocketCAN channel, with ``WAIT_TX_DONE`` for the same reason. The kernel
  module is absent on the development machines; this path is exercised where
  it exists and its test is skipped elsewhere with the reason.

Two guards against can-isotp 2.0.7 hanging a flash (:class:`FlasherCanStack`,
:class:`BoundedSendConnection`): a single frame that had to wait for the rate
limiter (``rate_limit_enable`` in the config) is sent from the
``TRANSMIT_SF_STANDBY`` state, which returns to idle without completing the
send request, so a blocking ``send()`` never returns (issue #129 / PR #130 fixed
only the unthrottled single frame); and udsoncan sends without a timeout, so
every send gets one, scaled to its length.

Every ISO-TP addressing mode of the config maps onto :class:`isotp.Address`.
Functional requests (TesterPresent 0x3E 0x80, OTA mode) are encoded by can-isotp too
(:class:`isotp.TransportLayerLogic` driven for one single frame), so padding,
address prefixes and CAN FD lengths are right in every mode; the answers of the ECUs
to a functional request are decoded the same way, one :class:`ResponseReceiver` per ECU.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from typing import Any

import can
import isotp
from udsoncan.connections import BaseConnection, IsoTPSocketConnection, PythonIsoTpConnection

from agent.config.vehicle import PREFIX_MODES, BusConfig, EcuConfig, IsoTpConfig
from agent.errors import ConfigurationError, TransportError
from update_agent.uds.canlink import NOTIFIER_TIMEOUT as NOTIFIER_TIMEOUT  # re-exported: CanLink lives there
from update_agent.uds.canlink import SHORT_NOTIFIER_TIMEOUT as SHORT_NOTIFIER_TIMEOUT
from update_agent.uds.canlink import CanLink as CanLink

log = logging.getLogger(__name__)

#: the vehicle config's addressing names, as can-isotp modes (the bench ECUs use the mirror)
ISOTP_MODES = {
    "normal_11bit": isotp.AddressingMode.Normal_11bits,
    "normal_29bit": isotp.AddressingMode.Normal_29bits,
    "normal_fixed_29bit": isotp.AddressingMode.NormalFixed_29bits,
    "extended_11bit": isotp.AddressingMode.Extended_11bits,
    "extended_29bit": isotp.AddressingMode.Extended_29bits,
    "mixed_11bit": isotp.AddressingMode.Mixed_11bits,
    "mixed_29bit": isotp.AddressingMode.Mixed_29bits,
}

FrameSender = Callable[[can.Message], None]
#: worst-case separation time an ECU may request (0x7F = 127 ms), per consecutive frame
_WORST_STMIN = 0.128
_SEND_SLACK = 5.0


class FlasherCanStack(isotp.NotifierBasedCanStack):
    """can-isotp's NotifierBasedCanStack with the rate-limited single frame completing its send."""

    def _process_tx(self) -> isotp.TransportLayerLogic.ProcessTxReport:
        report = super()._process_tx()
        request = self.active_send_request
        if (self.tx_state == self.TxState.IDLE and request is not None and self.tx_standby_msg is None
                and request.generator.depleted() and not request.complete_event.is_set()):
            self._stop_sending(success=True)  # the SF left from TRANSMIT_SF_STANDBY
        return report

    def stop(self) -> None:
        """Stop without waiting out the relay thread's read timeout (``default_read_timeout``, 50 ms
        per session closed otherwise): a stopped reader no longer blocks, and a ``None`` wakes the
        read blocked now (can-isotp takes ``None`` as "nothing received")."""
        reader = self.buffered_reader
        if reader is not None:
            reader.stop()
            reader.buffer.put(None)  # type: ignore[arg-type]
        super().stop()


#: builds the can-isotp stack for one ECU; benchmarks inject a subclass (bus emulation)
StackFactory = Callable[..., FlasherCanStack]


class BoundedSendConnection(PythonIsoTpConnection):
    """udsoncan's can-isotp connection, but no blocking send waits forever."""

    def __init__(self, isotp_layer: isotp.TransportLayer, name: str, frame_payload: int) -> None:
        super().__init__(isotp_layer, name=name)
        self._frame_payload = max(1, frame_payload)

    def specific_send(self, payload: bytes, timeout: float | None = None) -> None:
        if timeout is None:
            frames = -(-len(payload) // self._frame_payload)
            timeout = _SEND_SLACK + frames * _WORST_STMIN
        super().specific_send(payload, timeout)


def isotp_address(cfg: IsoTpConfig, **partial: bool) -> isotp.Address:
    """The physical tester-side address (tx = tester -> ECU, rx = ECU -> tester)."""
    mode = ISOTP_MODES[cfg.addressing]
    kwargs: dict[str, Any] = {}
    if cfg.addressing in PREFIX_MODES:
        kwargs.update(target_address=cfg.target_address, source_address=cfg.source_address)
        if cfg.functional_id is not None:
            kwargs["functional_id"] = cfg.functional_id
    else:
        kwargs.update(txid=cfg.tx_id, rxid=cfg.rx_id)
        if cfg.addressing.startswith("extended"):
            kwargs.update(target_address=cfg.target_address, source_address=cfg.source_address)
    if cfg.addressing.startswith("mixed"):
        kwargs["address_extension"] = cfg.address_extension
    try:
        return isotp.Address(mode, **kwargs, **partial)
    except ValueError as e:
        raise ConfigurationError(f"ISO-TP address: {e}", key="isotp") from e


def functional_address(cfg: IsoTpConfig) -> isotp.AsymmetricAddress:
    """Tester -> all ECUs (functional) for transmit; the physical rx side only completes the object."""
    if cfg.addressing in PREFIX_MODES:
        tx = isotp_address(cfg, tx_only=True)  # functional id prefix is applied by TargetAddressType
    else:
        if cfg.functional_id is None:
            raise ConfigurationError("isotp.functional_id is needed for functional TesterPresent",
                                     key="isotp.functional_id")
        tx_cfg = IsoTpConfig(addressing=cfg.addressing, tx_id=cfg.functional_id, rx_id=cfg.rx_id,
                             target_address=cfg.target_address, source_address=cfg.source_address,
                             address_extension=cfg.address_extension)
        tx = isotp_address(tx_cfg, tx_only=True)
    return isotp.AsymmetricAddress(tx_addr=tx, rx_addr=isotp_address(cfg, rx_only=True))


def isotp_params(ecu: EcuConfig, bus: BusConfig) -> dict[str, Any]:
    """can-isotp parameters: the ECU's, plus blocking sends and CAN FD from the bus."""
    params: dict[str, Any] = dict(ecu.isotp.params)
    params["blocking_send"] = True
    if bus.fd:
        params.setdefault("can_fd", True)
        params.setdefault("bitrate_switch", bus.data_bitrate is not None and bus.data_bitrate != bus.bitrate)
    return params


def python_stack(ecu: EcuConfig, link: CanLink, stack_factory: StackFactory | None = None,
                 ) -> FlasherCanStack:
    factory = stack_factory or FlasherCanStack
    try:
        return factory(link.bus, link.notifier, address=isotp_address(ecu.isotp),
                       params=isotp_params(ecu, link.config),
                       error_handler=_isotp_error_logger(ecu.name))
    except ValueError as e:
        raise ConfigurationError(f"ISO-TP parameters of {ecu.name}: {e}", key=f"ecus.{ecu.name}.isotp") from e


def open_connection(ecu: EcuConfig, link: CanLink, *, stack_factory: StackFactory | None = None,
                    ) -> BaseConnection:
    """An opened udsoncan connection to ``ecu`` over the stack its config asks for."""
    if ecu.isotp.stack == "kernel":
        conn: BaseConnection = IsoTPSocketConnection(link.config.channel, isotp_address(ecu.isotp),
                                                     tpsock=kernel_socket(ecu, link.config))
    else:
        stack = python_stack(ecu, link, stack_factory)
        conn = BoundedSendConnection(stack, ecu.name, stack.params.tx_data_length - 1)
    try:
        conn.open()
    except OSError as e:
        raise TransportError(f"{ecu.name}: cannot open ISO-TP on {link.config.channel!r}: {e}") from e
    return conn


def kernel_socket(ecu: EcuConfig, bus: BusConfig) -> isotp.socket:
    """A configured (not yet bound) kernel ISO-TP socket; TransportError where the kernel lacks CAN_ISOTP."""
    try:
        sock = isotp.socket()  # blocking: with WAIT_TX_DONE a send lasts as long as the transfer
    except (NotImplementedError, OSError) as e:
        raise TransportError(f"{ecu.name}: kernel ISO-TP socket unavailable here ({e}); "
                             "use isotp.stack: python") from e
    p = ecu.isotp.params
    opts = sock.get_opts()
    optflag = (opts.optflag or 0) | isotp.socket.flags.WAIT_TX_DONE
    sock.set_opts(optflag=optflag, txpad=p.get("tx_padding"))
    sock.set_fc_opts(bs=p.get("blocksize", 0), stmin=p.get("stmin", 0))
    if bus.fd:
        flags = 0x01 if isotp_params(ecu, bus).get("bitrate_switch") else 0  # CANFD_BRS
        sock.set_ll_opts(mtu=isotp.socket.LinkLayerProtocol.CAN_FD, tx_dl=p.get("tx_data_length", 64),
                         tx_flags=flags)
    return sock


def _isotp_error_logger(ecu: str) -> Callable[[Exception], None]:
    def handler(error: Exception) -> None:
        log.warning("%s: ISO-TP: %s", ecu, error)
    return handler


def _can_frame(msg: isotp.CanMessage) -> can.Message:
    return can.Message(arbitration_id=msg.arbitration_id, data=msg.data, is_extended_id=msg.is_extended_id,
                       is_fd=msg.is_fd, bitrate_switch=msg.bitrate_switch)


def _no_pacing(seconds: float) -> None:
    """can-isotp's ``wait_func`` for a stack that never sends consecutive frames: its ``Params.validate()``
    calls ``wait_func(0.001)`` (a real 1 ms sleep, twice per stack built) to check that it works."""


class FunctionalSender:
    """Encodes single-frame functional requests with can-isotp and puts them on the bus."""

    def __init__(self, ecu: EcuConfig, send_frame: FrameSender, bus: BusConfig) -> None:
        params = isotp_params(ecu, bus)
        params.update(blocking_send=False, wait_func=_no_pacing)  # functional requests are single frames
        self._send_frame = send_frame
        self._lock = threading.Lock()
        self._logic = isotp.TransportLayerLogic(rxfn=lambda timeout: None, txfn=self._tx,
                                                address=functional_address(ecu.isotp),  # type: ignore[arg-type]
                                                params=params)

    def _tx(self, msg: isotp.CanMessage) -> None:
        self._send_frame(_can_frame(msg))

    def send(self, payload: bytes) -> None:
        with self._lock:
            self._logic.send(payload, target_address_type=isotp.TargetAddressType.Functional)
            self._logic.process(do_rx=False)


def response_key(cfg: IsoTpConfig) -> tuple[int, bool]:
    """(arbitration id, extended id) of the frames an ECU answers the tester with."""
    address = isotp_address(cfg, rx_only=True)
    return address.get_rx_arbitration_id(isotp.TargetAddressType.Physical), address.is_rx_29bits()


class ResponseReceiver:
    """One ECU's physical responses decoded by can-isotp, driven by the caller (no thread of its own).

    The caller hands it the frames of the ECU's response id (:attr:`rx_key`) with :meth:`feed`
    and gets back the complete responses; a flow control a multi-frame response needs goes out
    through ``send_frame``. Used where several ECUs answer one functional request at once: one
    receiver per ECU, frames routed by arbitration id (the ISO-TP address check is can-isotp's).
    """

    def __init__(self, ecu: EcuConfig, send_frame: FrameSender, bus: BusConfig) -> None:
        params = isotp_params(ecu, bus)
        params.update(blocking_send=False, wait_func=_no_pacing)  # it sends flow control frames only
        address = isotp_address(ecu.isotp)
        self.ecu = ecu
        #: (arbitration id, extended id) of the ECU's responses
        self.rx_key = response_key(ecu.isotp)
        self._frames: collections.deque[isotp.CanMessage] = collections.deque()
        self._logic = isotp.TransportLayerLogic(rxfn=self._rxfn, txfn=lambda msg: send_frame(_can_frame(msg)),
                                                address=address, error_handler=_isotp_error_logger(ecu.name),
                                                params=params)

    def _rxfn(self, timeout: float) -> isotp.CanMessage | None:
        return self._frames.popleft() if self._frames else None

    def feed(self, msg: can.Message) -> list[bytes]:
        """Decode one received frame; returns the responses it completed (a single frame: one)."""
        self._frames.append(isotp.CanMessage(arbitration_id=msg.arbitration_id, data=bytes(msg.data),
                                             extended_id=msg.is_extended_id, is_fd=msg.is_fd,
                                             bitrate_switch=msg.bitrate_switch))
        self._logic.process()
        responses = []
        while (payload := self._logic.recv()) is not None:
            responses.append(bytes(payload))
        return responses
