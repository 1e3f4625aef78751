"""The seam between UDS users (flash sequencer, version reader) and a UDS session.

:class:`UdsSession` is what the pure cores call; :class:`~update_agent.uds.client.UdsClientSession`
implements it over udsoncan, and tests may implement it in memory. Every
method either returns the positive answer or raises one of the stack's
errors, already normalised:

* :class:`~agent.errors.NegativeResponseError` (``service``, ``nrc``) with the
  message ``NRC 0x72 generalProgrammingFailure``;
* :class:`~agent.errors.OtaTimeoutError` when the ECU did not answer in time;
* :class:`~agent.errors.TransportError` when the bus failed;
* :class:`~agent.errors.ProtocolError` for a malformed or unexpected answer.

Timing (P2 / P2* / 0x78 chains), TesterPresent and the bounded re-send of a
timed-out TransferData live behind this seam, in the session.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class ServerTiming:
    """P2 / P2* as the ECU announced them in its DiagnosticSessionControl answer (seconds)."""

    p2: float | None
    p2_star: float | None


class SessionObserver(Protocol):
    """Told about what the caller does not see in return values: NRCs on the way, re-sends."""

    def on_nrc(self, service: int, nrc: int) -> None: ...

    def on_retry(self, service: int, attempt: int, reason: str) -> None: ...


class UdsSession(Protocol):
    """One tester-to-ECU UDS conversation (physical addressing)."""

    ecu: str

    def set_observer(self, observer: SessionObserver | None) -> None: ...

    def change_session(self, session: int) -> ServerTiming: ...

    def request_seed(self, level: int) -> bytes: ...

    def send_key(self, level: int, key: bytes) -> None: ...

    def read_did(self, did: int) -> bytes: ...

    def write_did(self, did: int, data: bytes) -> None: ...

    def start_routine(self, routine_id: int, option: bytes) -> bytes:
        """RoutineControl startRoutine; returns the routine status record (may be empty)."""
        ...

    def request_download(self, address: int, size: int, *, address_bytes: int, length_bytes: int,
                         data_format: int) -> int:
        """RequestDownload; returns maxNumberOfBlockLength (whole 0x36 request: SID + counter + data)."""
        ...

    def transfer_data(self, counter: int, data: bytes) -> None:
        """TransferData; a timed-out block is re-sent with the same counter a bounded number of times."""
        ...

    def request_transfer_exit(self) -> None: ...

    def ecu_reset(self, reset_type: int) -> None: ...

    def control_dtc_setting(self, enabled: bool) -> None: ...

    def communication_control(self, control: int, communication_type: int) -> None: ...

    def tester_present(self) -> None:
        """One physical TesterPresent that expects an answer (used to see an ECU come back)."""
        ...

    def keep_alive(self, enabled: bool) -> None:
        """Start / stop periodic functional TesterPresent (0x3E 0x80) for the session's lifetime."""
        ...
