"""JSON-RPC error codes, the IPC's own error classes, and OtaError <-> wire mapping.

Standard JSON-RPC 2.0 codes say what was wrong with the *message*; the
application codes (1000-1007) carry an :class:`~agent.errors.OtaError` raised
by a daemon's handler across the socket, so the client re-raises the same
branch (and the same leaf, for the leaves listed here) with the daemon's own
message::

    # in ota-dmclient's handler
    raise VerificationError("target engine.bin: sha256 mismatch")
    # in the CLI, around client.call("dmclient.download.start", ...)
    except VerificationError as e:   # same class, same message, exit code 5
        ...

An OtaError leaf that is not listed travels as its nearest listed base class;
``data["type"]`` keeps the original class name for logs.
"""

from __future__ import annotations

from typing import Any

from agent.errors import (
    ConfigurationError,
    NegativeResponseError,
    OtaError,
    OtaTimeoutError,
    ProtocolError,
    TransportError,
    VehicleStateError,
    VerificationError,
)

# -- JSON-RPC 2.0 standard codes -------------------------------------------------
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# -- implementation-defined server errors (-32000..-32099) -----------------------
#: the peer's credentials (SO_PEERCRED) are not allowed by the access policy
ACCESS_DENIED = -32001
#: the daemon is shutting down and takes no new requests
SHUTTING_DOWN = -32002

STANDARD_MESSAGES = {
    PARSE_ERROR: "parse error",
    INVALID_REQUEST: "invalid request",
    METHOD_NOT_FOUND: "method not found",
    INVALID_PARAMS: "invalid params",
    INTERNAL_ERROR: "internal error",
    ACCESS_DENIED: "access denied",
    SHUTTING_DOWN: "daemon shutting down",
}


class RpcError(ProtocolError):
    """The peer answered a JSON-RPC error that is not an application error.

    ``code`` is the JSON-RPC error code, ``data`` the optional error data.
    """

    def __init__(self, message: str, *, code: int = INTERNAL_ERROR, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.data = data


class MethodNotFoundError(RpcError):
    """The method is not declared in the protocol, or not served by this daemon."""

    def __init__(self, message: str, *, data: Any = None) -> None:
        super().__init__(message, code=METHOD_NOT_FOUND, data=data)


class SchemaError(RpcError, ValueError):
    """A message does not match its declaration in :mod:`agent.ipc.protocol`.

    Raised on send (the client refuses to send invalid params) and on receive
    (the daemon answers -32602, re-raised here by the client). Handlers may
    raise it too, for checks a schema cannot express; the caller then gets
    -32602 with the handler's message.
    """

    def __init__(self, message: str, *, data: Any = None) -> None:
        super().__init__(message, code=INVALID_PARAMS, data=data)


class AccessDeniedError(ConfigurationError):
    """The access policy refused the peer (SO_PEERCRED uid/gid), or the socket's mode did.

    A deployment matter (run as the right user, or add the user to the
    daemon's allowed uids/gids), hence a configuration error (exit code 2).
    """

    code = ACCESS_DENIED


# -- application codes: one per OtaError branch (and the leaves with fields) --------
_APP_CODES: dict[type[OtaError], int] = {
    OtaError: 1000,
    TransportError: 1001,
    OtaTimeoutError: 1002,
    ProtocolError: 1003,
    NegativeResponseError: 1004,
    VerificationError: 1005,
    ConfigurationError: 1006,
    VehicleStateError: 1007,
}
_APP_CLASSES = {code: cls for cls, code in _APP_CODES.items()}


def is_application_code(code: int) -> bool:
    return code in _APP_CLASSES


def error_to_wire(exc: OtaError) -> tuple[int, str, dict[str, Any]]:
    """``(code, message, data)`` for an OtaError raised by a handler.

    :class:`SchemaError` raised by a handler becomes -32602 (invalid params);
    every other OtaError (including an :class:`RpcError` that came from a
    nested call to another daemon) travels as its nearest branch.
    """
    if isinstance(exc, SchemaError):
        return INVALID_PARAMS, str(exc), {"type": _qualname(type(exc))}
    cls: type[BaseException]
    for cls in type(exc).__mro__:
        if cls in _APP_CODES:
            code = _APP_CODES[cls]  # type: ignore[index]
            break
    else:  # pragma: no cover - OtaError itself is in the table
        code = _APP_CODES[OtaError]
    data: dict[str, Any] = {"type": _qualname(type(exc))}
    if isinstance(exc, NegativeResponseError):
        data.update(service=exc.service, nrc=exc.nrc)
    if isinstance(exc, ConfigurationError):
        data.update(reason=exc.reason, source=exc.source, key=exc.key)
    return code, str(exc), data


def error_from_wire(code: int, message: str, data: Any, *, context: str = "") -> OtaError:
    """The exception a client raises for a JSON-RPC error object.

    ``context`` (e.g. ``"dmclient.download.start"``) is prefixed to standard
    JSON-RPC errors only; application errors keep the daemon's message as is.
    """
    extra = data if isinstance(data, dict) else {}
    cls = _APP_CLASSES.get(code)
    if cls is not None:
        if cls is NegativeResponseError:
            service, nrc = extra.get("service"), extra.get("nrc")
            if isinstance(service, int) and isinstance(nrc, int):
                return NegativeResponseError(message, service=service, nrc=nrc)
            return ProtocolError(message)
        if cls is ConfigurationError:
            reason = extra.get("reason")
            if isinstance(reason, str):
                source, key = extra.get("source"), extra.get("key")
                return ConfigurationError(reason, source=source if isinstance(source, str) else None,
                                          key=key if isinstance(key, str) else None)
            return ConfigurationError(message)
        return cls(message)
    where = f"{context}: " if context else ""
    if code == INVALID_PARAMS:
        return SchemaError(f"{where}{message}", data=data)
    if code == METHOD_NOT_FOUND:
        return MethodNotFoundError(f"{where}{message}", data=data)
    if code == ACCESS_DENIED:
        return AccessDeniedError(message)
    if code == SHUTTING_DOWN:
        return TransportError(f"{where}{message}")
    return RpcError(f"{where}{message}", code=code, data=data)


def _qualname(cls: type[BaseException]) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
