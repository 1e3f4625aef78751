"""Response bytes and request field parsing for the UDS server, stateless.

Service ids and NRC values come from udsoncan (``udsoncan.services``,
``udsoncan.ResponseCode``) so the server and the tester name them alike; the
few byte layouts a server emits (positive ``SID+0x40``, negative ``7F SID NRC``)
are built here because udsoncan's codecs are written for the client side.
"""

from __future__ import annotations

from dataclasses import dataclass

from udsoncan.ResponseCode import ResponseCode
from udsoncan.services.CommunicationControl import CommunicationControl
from udsoncan.services.ControlDTCSetting import ControlDTCSetting
from udsoncan.services.DiagnosticSessionControl import DiagnosticSessionControl
from udsoncan.services.ECUReset import ECUReset
from udsoncan.services.ReadDataByIdentifier import ReadDataByIdentifier
from udsoncan.services.RequestDownload import RequestDownload
from udsoncan.services.RequestTransferExit import RequestTransferExit
from udsoncan.services.RoutineControl import RoutineControl
from udsoncan.services.SecurityAccess import SecurityAccess
from udsoncan.services.TesterPresent import TesterPresent
from udsoncan.services.TransferData import TransferData
from udsoncan.services.WriteDataByIdentifier import WriteDataByIdentifier

SID_SESSION = DiagnosticSessionControl.request_id()
SID_RESET = ECUReset.request_id()
SID_READ_DID = ReadDataByIdentifier.request_id()
SID_SECURITY = SecurityAccess.request_id()
SID_COMM_CONTROL = CommunicationControl.request_id()
SID_WRITE_DID = WriteDataByIdentifier.request_id()
SID_ROUTINE = RoutineControl.request_id()
SID_REQUEST_DOWNLOAD = RequestDownload.request_id()
SID_TRANSFER_DATA = TransferData.request_id()
SID_TRANSFER_EXIT = RequestTransferExit.request_id()
SID_TESTER_PRESENT = TesterPresent.request_id()
SID_DTC_SETTING = ControlDTCSetting.request_id()

#: services whose second byte is a sub-function with the suppressPosRspMsgIndicationBit
SUBFUNCTION_SERVICES = frozenset({SID_SESSION, SID_RESET, SID_SECURITY, SID_COMM_CONTROL, SID_ROUTINE,
                                  SID_TESTER_PRESENT, SID_DTC_SETTING})
#: NRCs a server does not send to a functionally addressed request (ISO 14229-1, 7.5)
SUPPRESSED_ON_FUNCTIONAL = frozenset({
    ResponseCode.ServiceNotSupported, ResponseCode.SubFunctionNotSupported,
    ResponseCode.RequestOutOfRange, ResponseCode.SubFunctionNotSupportedInActiveSession,
    ResponseCode.ServiceNotSupportedInActiveSession,
})
PENDING = ResponseCode.RequestCorrectlyReceived_ResponsePending


@dataclass(frozen=True)
class Response:
    """One UDS response the server sends, exactly as it goes on the wire."""

    data: bytes

    @property
    def nrc(self) -> int | None:
        """The negative response code, or None for a positive response."""
        return self.data[2] if len(self.data) >= 3 and self.data[0] == 0x7F else None

    @property
    def is_pending(self) -> bool:
        return self.nrc == PENDING

    def __repr__(self) -> str:
        return f"Response({self.data[:16].hex(' ')}{' ...' if len(self.data) > 16 else ''})"


class NrcError(Exception):
    """Raised inside a service handler; the server answers ``7F SID NRC``."""

    def __init__(self, nrc: int, reason: str = "") -> None:
        super().__init__(f"NRC {nrc:#04x} {ResponseCode.get_name(nrc)}{': ' + reason if reason else ''}")
        self.nrc = nrc
        self.reason = reason


def positive(sid: int, data: bytes = b"") -> Response:
    return Response(bytes([sid + 0x40]) + data)


def negative(sid: int, nrc: int) -> Response:
    return Response(bytes([0x7F, sid, nrc]))


def nrc_name(nrc: int) -> str:
    return f"{nrc:#04x} {ResponseCode.get_name(nrc)}"


def split_address_and_length(record: bytes) -> tuple[int, int, int]:
    """Parse ``addressAndLengthFormatIdentifier + memoryAddress + memorySize``.

    Returns ``(address, size, consumed bytes)``. Raises NrcError 0x31 for a
    format identifier with a zero or oversized nibble and 0x13 for a record
    shorter than the identifier announces.
    """
    if not record:
        raise NrcError(ResponseCode.IncorrectMessageLengthOrInvalidFormat,
                       "no addressAndLengthFormatIdentifier")
    alfid = record[0]
    n_addr, n_size = alfid & 0x0F, alfid >> 4
    if not (1 <= n_addr <= 5 and 1 <= n_size <= 4):
        raise NrcError(ResponseCode.RequestOutOfRange, f"addressAndLengthFormatIdentifier {alfid:#04x}")
    end = 1 + n_addr + n_size
    if len(record) < end:
        raise NrcError(ResponseCode.IncorrectMessageLengthOrInvalidFormat,
                       f"{alfid:#04x} announces {n_addr + n_size} bytes, got {len(record) - 1}")
    address = int.from_bytes(record[1:1 + n_addr], "big")
    size = int.from_bytes(record[1 + n_addr:end], "big")
    return address, size, end
