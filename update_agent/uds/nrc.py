"""Negative response codes and service identifiers by their ISO 14229-1 names."""

from __future__ import annotations

from udsoncan.Response import Response

SERVICE_NAMES = {
    0x10: "DiagnosticSessionControl", 0x11: "ECUReset", 0x22: "ReadDataByIdentifier",
    0x27: "SecurityAccess", 0x28: "CommunicationControl", 0x2E: "WriteDataByIdentifier",
    0x31: "RoutineControl", 0x34: "RequestDownload", 0x36: "TransferData",
    0x37: "RequestTransferExit", 0x3E: "TesterPresent", 0x85: "ControlDTCSetting",
}

BUSY_REPEAT_REQUEST = 0x21
RESPONSE_PENDING = 0x78


def nrc_name(code: int) -> str:
    """``generalProgrammingFailure`` for 0x72: udsoncan's name in the standard's lowerCamel spelling."""
    name = str(Response.Code.get_name(code))
    if not name or name.isdigit() or code == 0:
        return "unknown"
    return (name[0].lower() + name[1:]).replace("_", "-")


def describe_nrc(code: int) -> str:
    """``NRC 0x72 generalProgrammingFailure``."""
    return f"NRC {code:#04x} {nrc_name(code)}"


def service_name(sid: int) -> str:
    return SERVICE_NAMES.get(sid, f"service {sid:#04x}")
