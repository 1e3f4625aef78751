"""A UDS session over a udsoncan :class:`~udsoncan.client.Client`, with the timing a flasher needs.

How udsoncan times a request (``udsoncan/client.py``, ``Client.send_request``,
1.26): after sending, it waits for each response frame at most the
*single-request* timeout, which is ``min(request_timeout, P2)`` at first and
becomes ``P2*`` after the first NRC 0x78; and the whole exchange, every 0x78
included, is capped by the *overall* ``request_timeout``, measured from the
send. So with udsoncan's defaults an erase that the ECU keeps alive with
0x78 for longer than ``request_timeout`` (5 s) is cut off although the ECU
answers on time - the trap the conventions warn about. With
``use_server_timing`` on, P2 also becomes the ECU's announced P2 (50 ms on the
bench), far below what a tester on a loaded bus or a Python process can
guarantee.

This session therefore configures the client as:

* ``p2_timeout`` = the ECU config's ``timing.request_timeout``: how long the
  tester waits for the first answer (final or 0x78) - P2client, i.e. the
  ECU's P2 plus transport latency (validated >= ``timing.p2``);
* ``p2_star_timeout`` = max(``timing.p2_star``, the P2* the ECU announced in its
  DiagnosticSessionControl answer): the wait for each next answer after a 0x78,
  restarted by every 0x78;
* ``request_timeout`` (the overall cap) = ``timing.response_pending_limit``:
  only a chain of 0x78 that never ends is cut, after that limit;
* ``use_server_timing`` off, so the announced P2 never shrinks our wait.

A timed-out TransferData is re-sent with the same blockSequenceCounter up to
``timing.transfer_retries`` times (a bootloader acknowledges a repeated last
block without writing it twice), except past the 0x78 chain cap: that ECU is
still busy with the block and would only answer 0x21.

A request answered NRC 0x21 (busyRepeatRequest: the ECU is still finishing something, e.g. an
erase a tester that died had started) is repeated, as ISO 14229-1 asks of the client, every
``timing.busy_repeat_delay`` s until ``timing.busy_limit`` s have passed; then the 0x21 is the
error (clock and sleep injected). Errors leave this class as the stack's
:mod:`agent.errors`, already named (``NRC 0x72 generalProgrammingFailure``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import can
import isotp
from udsoncan.client import Client
from udsoncan.common.DataFormatIdentifier import DataFormatIdentifier
from udsoncan.common.DidCodec import DidCodec
from udsoncan.common.MemoryLocation import MemoryLocation
from udsoncan.configs import default_client_config
from udsoncan.connections import BaseConnection
from udsoncan.exceptions import (
    InvalidResponseException,
    NegativeResponseException,
    TimeoutException,
    UnexpectedResponseException,
)

from agent.config.vehicle import EcuConfig
from agent.errors import (
    ConfigurationError,
    NegativeResponseError,
    OtaError,
    OtaTimeoutError,
    ProtocolError,
    TransportError,
)
from update_agent.uds.api import ServerTiming, SessionObserver
from update_agent.uds.nrc import BUSY_REPEAT_REQUEST, RESPONSE_PENDING, describe_nrc, service_name
from update_agent.uds.tester_present import TesterPresentKeeper

log = logging.getLogger(__name__)
T = TypeVar("T")

SID_SESSION, SID_RESET, SID_READ_DID, SID_SECURITY = 0x10, 0x11, 0x22, 0x27
SID_COMM_CONTROL, SID_WRITE_DID, SID_ROUTINE, SID_REQUEST_DOWNLOAD = 0x28, 0x2E, 0x31, 0x34
SID_TRANSFER_DATA, SID_TRANSFER_EXIT, SID_TESTER_PRESENT, SID_DTC_SETTING = 0x36, 0x37, 0x3E, 0x85


class RawCodec(DidCodec):
    """A DID value as the bytes on the wire; interpretation is the caller's."""

    def encode(self, *did_value: Any) -> bytes:
        (value,) = did_value
        return bytes(value)

    def decode(self, did_payload: bytes) -> Any:
        return bytes(did_payload)

    def __len__(self) -> int:
        raise DidCodec.ReadAllRemainingData


def client_config(ecu: EcuConfig, on_pending: Callable[[], None]) -> dict[str, Any]:
    """The udsoncan client configuration described in the module docstring."""
    config: dict[str, Any] = dict(default_client_config)
    config.update(
        exception_on_negative_response=True,
        exception_on_invalid_response=True,
        exception_on_unexpected_response=True,
        use_server_timing=False,
        p2_timeout=ecu.timing.request_timeout,
        p2_star_timeout=ecu.timing.p2_star,
        request_timeout=ecu.timing.response_pending_limit,
        nrc78_callback=on_pending,
        data_identifiers={"default": RawCodec()},
        logger_name=ecu.name,
    )
    return config


class UdsClientSession:
    """:class:`~update_agent.uds.api.UdsSession` over a udsoncan client on an open connection."""

    def __init__(self, ecu: EcuConfig, conn: BaseConnection, *,
                 functional: Callable[[bytes], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.ecu = ecu.name
        self._clock = clock
        self._sleep = sleep
        self._timing = ecu.timing
        self._conn = conn
        self._client = Client(conn, config=client_config(ecu, self._on_pending))  # type: ignore[arg-type]
        self._functional = functional
        self._keeper: TesterPresentKeeper | None = None
        self._keep_alive_sent = 0
        self._observer: SessionObserver | None = None
        self._service = 0
        self._pending = 0
        self.server_timing = ServerTiming(None, None)

    # -- plumbing -----------------------------------------------------------
    def set_observer(self, observer: SessionObserver | None) -> None:
        self._observer = observer

    def close(self) -> None:
        self.keep_alive(False)
        self._conn.close()

    def _on_pending(self) -> None:
        self._pending += 1
        if self._observer is not None:
            self._observer.on_nrc(self._service, RESPONSE_PENDING)

    def _call(self, service: int, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one udsoncan request, repeated while the ECU answers 0x21 (see the module docstring);
        translate whatever it raises into the stack's errors."""
        busy_since: float | None = None
        attempt = 0
        while True:
            try:
                return self._call_once(service, fn, *args, **kwargs)
            except NegativeResponseError as e:
                if e.nrc != BUSY_REPEAT_REQUEST:
                    raise
                now = self._clock()
                busy_since = now if busy_since is None else busy_since
                waited = now - busy_since
                if waited + self._timing.busy_repeat_delay > self._timing.busy_limit:
                    raise NegativeResponseError(f"{e} (still busy after {waited:.1f} s of repeats, "
                                                f"timing.busy_limit {self._timing.busy_limit:g} s)",
                                                service=service, nrc=BUSY_REPEAT_REQUEST) from e
                attempt += 1
                if self._observer is not None:
                    self._observer.on_retry(service, attempt, "NRC 0x21 busyRepeatRequest")
                self._sleep(self._timing.busy_repeat_delay)

    def _call_once(self, service: int, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        self._service = service
        self._pending = 0
        name = service_name(service)
        try:
            return fn(*args, **kwargs)
        except NegativeResponseException as e:
            code = int(e.response.code or 0)
            if self._observer is not None:
                self._observer.on_nrc(service, code)
            raise NegativeResponseError(describe_nrc(code), service=service, nrc=code) from e
        except TimeoutException as e:
            raise OtaTimeoutError(self._timeout_text(name, str(e))) from e
        except isotp.BlockingSendFailure as e:
            raise OtaTimeoutError(f"{name} request not sent: no flow control from the ECU "
                                  f"(ECU not answering?): {e}") from e
        except (InvalidResponseException, UnexpectedResponseException) as e:
            raise ProtocolError(f"{name}: {e}") from e
        except (can.CanError, OSError) as e:
            raise TransportError(f"{name}: bus failure: {e}") from e

    def _timeout_text(self, name: str, detail: str) -> str:
        if "Global" in detail:
            return (f"{name}: the ECU kept answering NRC 0x78 (responsePending) {self._pending} times "
                    f"beyond timing.response_pending_limit ({self._timing.response_pending_limit:g} s)")
        if self._pending:
            p2_star = float(self._client.config["p2_star_timeout"])
            return (f"{name}: no final response within P2* ({p2_star:g} s) after {self._pending} "
                    "NRC 0x78 (ECU not answering)")
        return f"{name}: no response within {self._timing.request_timeout:g} s (ECU not answering)"

    # -- services -----------------------------------------------------------
    def change_session(self, session: int) -> ServerTiming:
        response = self._call(SID_SESSION, self._client.change_session, session)
        assert response is not None
        data = response.service_data
        timing = ServerTiming(data.p2_server_max, data.p2_star_server_max)
        self.server_timing = timing
        if timing.p2_star is not None:
            self._client.config["p2_star_timeout"] = max(self._timing.p2_star, float(timing.p2_star))
        if timing.p2 is not None:
            self._client.config["p2_timeout"] = max(self._timing.request_timeout, float(timing.p2))
        return timing

    def request_seed(self, level: int) -> bytes:
        response = self._call(SID_SECURITY, self._client.request_seed, level)
        assert response is not None
        return bytes(response.service_data.seed or b"")

    def send_key(self, level: int, key: bytes) -> None:
        self._call(SID_SECURITY, self._client.send_key, level, key)

    def read_did(self, did: int) -> bytes:
        response = self._call(SID_READ_DID, self._client.read_data_by_identifier, did)
        assert response is not None
        return bytes(response.service_data.values[did])

    def write_did(self, did: int, data: bytes) -> None:
        self._call(SID_WRITE_DID, self._client.write_data_by_identifier, did, data)

    def start_routine(self, routine_id: int, option: bytes) -> bytes:
        response = self._call(SID_ROUTINE, self._client.start_routine, routine_id, option or None)
        assert response is not None
        return bytes(response.service_data.routine_status_record or b"")

    def request_download(self, address: int, size: int, *, address_bytes: int, length_bytes: int,
                         data_format: int) -> int:
        try:
            location = MemoryLocation(address, size, address_format=8 * address_bytes,
                                      memorysize_format=8 * length_bytes)
        except ValueError as e:
            raise ConfigurationError(f"RequestDownload {address:#x} +{size}: {e}") from e
        dfi = DataFormatIdentifier(compression=data_format >> 4, encryption=data_format & 0x0F)
        response = self._call(SID_REQUEST_DOWNLOAD, self._client.request_download, location, dfi)
        assert response is not None
        return int(response.service_data.max_length)

    def transfer_data(self, counter: int, data: bytes) -> None:
        attempts = 1 + self._timing.transfer_retries
        for attempt in range(1, attempts + 1):
            try:
                self._call(SID_TRANSFER_DATA, self._client.transfer_data, counter, data)
                return
            except OtaTimeoutError as e:
                if self._pending and "Global" in str(e.__cause__):
                    raise  # past the 0x78 cap the ECU still works on the block: a re-send meets 0x21 busy
                if attempt == attempts:
                    raise OtaTimeoutError(f"TransferData block {counter:#04x}: no response after "
                                          f"{attempts} attempts (ECU not answering)") from e
                reason = str(e)
            except ProtocolError as e:
                # A late answer to the previous, re-sent block: its echo is counter - 1. Sending
                # this block again is safe (a repeated last block is acknowledged, not rewritten).
                if isinstance(e, NegativeResponseError) or not _is_stale_echo(e, counter) \
                        or attempt == attempts:
                    raise
                reason = f"late answer to block {(counter - 1) & 0xFF:#04x}"
            log.warning("%s: TransferData block %#04x: %s; re-sending (attempt %d of %d)",
                        self.ecu, counter, reason, attempt + 1, attempts)
            if self._observer is not None:
                self._observer.on_retry(SID_TRANSFER_DATA, attempt, reason)

    def request_transfer_exit(self) -> None:
        self._call(SID_TRANSFER_EXIT, self._client.request_transfer_exit)

    def ecu_reset(self, reset_type: int) -> None:
        self.keep_alive(False)  # the ECU restarts in the default session
        self._call(SID_RESET, self._client.ecu_reset, reset_type)
        self._client.config["p2_timeout"] = self._timing.request_timeout
        self._client.config["p2_star_timeout"] = self._timing.p2_star

    def control_dtc_setting(self, enabled: bool) -> None:
        self._call(SID_DTC_SETTING, self._client.control_dtc_setting, 0x01 if enabled else 0x02)

    def communication_control(self, control: int, communication_type: int) -> None:
        self._call(SID_COMM_CONTROL, self._client.communication_control, control, communication_type)

    def tester_present(self) -> None:
        self._call(SID_TESTER_PRESENT, self._client.tester_present)

    def keep_alive(self, enabled: bool) -> None:
        if not enabled:
            if self._keeper is not None:
                self._keeper.stop()
                self._keep_alive_sent += self._keeper.sent
                self._keeper = None
            return
        if self._keeper is not None:
            return
        if self._functional is None:
            raise ConfigurationError(f"{self.ecu}: no functional addressing configured for TesterPresent "
                                     "(isotp.functional_id)")
        self._keeper = TesterPresentKeeper(self._functional, self._timing.tester_present_interval,
                                           name=f"{self.ecu}-tester-present")
        self._keeper.start()

    @property
    def keep_alive_sent(self) -> int:
        """Functional TesterPresent requests sent so far in this session."""
        return self._keep_alive_sent + (0 if self._keeper is None else self._keeper.sent)


def _is_stale_echo(error: OtaError, counter: int) -> bool:
    cause = error.__cause__
    if not isinstance(cause, UnexpectedResponseException):
        return False
    data = getattr(cause.response, "data", b"") or b""
    return bool(data) and data[0] == (counter - 1) & 0xFF

