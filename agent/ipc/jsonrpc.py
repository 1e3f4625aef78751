"""JSON-RPC 2.0 message codec: stateless encode and decode of single messages.

One message is one line of UTF-8 JSON (see :mod:`agent.ipc.framing`).
:func:`decode` turns a line into a :class:`Request`, :class:`Notification`,
:class:`Response` or :class:`ErrorResponse`, or raises :class:`DecodeError`
carrying the JSON-RPC code to answer with (-32700 for bytes that are not
JSON, -32600 for JSON that is not a JSON-RPC 2.0 message) and the request id
when one could be read. It never raises anything else, whatever the bytes.

Strictness, on purpose: members other than those of JSON-RPC 2.0 are
rejected, ids are strings, integers or null (never floats or booleans),
``NaN`` / ``Infinity`` are not JSON, and batches (JSON arrays) are rejected
with a clear -32600: every peer of this stack sends one message per line, and
a daemon serving batches would have to bound their size and fan-out too.
Whether params match the method is the protocol's business
(:mod:`agent.ipc.registry`), not the codec's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NoReturn

from agent.ipc.error_codes import INVALID_REQUEST, PARSE_ERROR, RpcError, SchemaError

JsonId = str | int | None

_VERSION = "2.0"
_REQUEST_KEYS = frozenset({"jsonrpc", "method", "params", "id"})
_RESPONSE_KEYS = frozenset({"jsonrpc", "result", "error", "id"})


@dataclass(frozen=True)
class Request:
    """A call that expects a response."""

    id: JsonId
    method: str
    params: dict[str, Any] | list[Any] | None


@dataclass(frozen=True)
class Notification:
    """A call without an id: no response (client -> daemon), or an event (daemon -> client)."""

    method: str
    params: dict[str, Any] | list[Any] | None


@dataclass(frozen=True)
class Response:
    id: JsonId
    result: Any


@dataclass(frozen=True)
class ErrorResponse:
    id: JsonId
    code: int
    message: str
    data: Any = None


Message = Request | Notification | Response | ErrorResponse


class DecodeError(RpcError):
    """A line that is not one valid JSON-RPC 2.0 message; ``code`` says which answer it earns."""

    def __init__(self, message: str, *, code: int, id: JsonId = None) -> None:
        super().__init__(message, code=code)
        self.id = id


# -- encode ----------------------------------------------------------------------------
def encode(message: Message) -> bytes:
    """One line (with its newline) for a message; :class:`SchemaError` if a value is not JSON."""
    obj: dict[str, Any] = {"jsonrpc": _VERSION}
    if isinstance(message, (Request, Notification)):
        obj["method"] = message.method
        if message.params is not None:
            obj["params"] = message.params
        if isinstance(message, Request):
            obj["id"] = message.id
    elif isinstance(message, Response):
        obj["result"] = message.result
        obj["id"] = message.id
    else:
        error: dict[str, Any] = {"code": message.code, "message": message.message}
        if message.data is not None:
            error["data"] = message.data
        obj["error"] = error
        obj["id"] = message.id
    try:
        # ensure_ascii: a lone surrogate (legal in JSON text) cannot make invalid UTF-8 on the wire
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        what = getattr(message, "method", None) or f"response {getattr(message, 'id', None)!r}"
        raise SchemaError(f"{what}: not representable as JSON: {e}") from e
    return text.encode("ascii") + b"\n"


# -- decode ----------------------------------------------------------------------------
def _no_constants(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    return {dict: "an object", list: "an array", str: "a string", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def decode(line: bytes) -> Message:
    """The message in ``line`` (without its newline), or :class:`DecodeError`."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DecodeError(f"parse error: not UTF-8 at byte {e.start}", code=PARSE_ERROR) from None
    try:
        obj = json.loads(text, parse_constant=_no_constants)
    except RecursionError:
        raise DecodeError("parse error: JSON nested too deeply", code=PARSE_ERROR) from None
    except ValueError as e:  # JSONDecodeError, NaN, ints past the digit limit
        raise DecodeError(f"parse error: {e}", code=PARSE_ERROR) from None
    if isinstance(obj, list):
        if not obj:
            raise DecodeError("invalid request: empty batch", code=INVALID_REQUEST)
        raise DecodeError("invalid request: batches are not supported; send one message per line",
                          code=INVALID_REQUEST)
    if not isinstance(obj, dict):
        raise DecodeError(f"invalid request: expected a JSON-RPC object, got {_describe(obj)}",
                          code=INVALID_REQUEST)
    return _from_object(obj)


def _from_object(obj: dict[str, Any]) -> Message:
    has_id = "id" in obj
    raw_id = obj.get("id")
    id_ok = raw_id is None or isinstance(raw_id, str) or (isinstance(raw_id, int)
                                                          and not isinstance(raw_id, bool))
    msg_id: JsonId = raw_id if id_ok else None

    def bad(reason: str) -> DecodeError:
        return DecodeError(f"invalid request: {reason}", code=INVALID_REQUEST, id=msg_id)

    if obj.get("jsonrpc") != _VERSION:
        raise bad('"jsonrpc" must be "2.0"')
    if not id_ok:
        raise bad(f'"id" must be a string, an integer or null, got {_describe(raw_id)}')
    if "method" in obj:
        unknown = sorted(set(obj) - _REQUEST_KEYS)
        if unknown:
            raise bad(f"unknown member {unknown[0]!r} in a request")
        method = obj["method"]
        if not isinstance(method, str) or not method:
            raise bad(f'"method" must be a non-empty string, got {_describe(method)}')
        params = obj.get("params")
        if "params" in obj and not isinstance(params, (dict, list)):
            raise bad(f'"params" must be an object or an array, got {_describe(params)}')
        if has_id:
            return Request(id=msg_id, method=method, params=params)
        return Notification(method=method, params=params)
    unknown = sorted(set(obj) - _RESPONSE_KEYS)
    if unknown:
        raise bad(f"unknown member {unknown[0]!r}")
    if not has_id:
        raise bad('neither "method" (request) nor "id" (response)')
    if ("result" in obj) == ("error" in obj):
        raise bad('a response has exactly one of "result" and "error"')
    if "result" in obj:
        return Response(id=msg_id, result=obj["result"])
    error = obj["error"]
    if not isinstance(error, dict):
        raise bad(f'"error" must be an object, got {_describe(error)}')
    code, message = error.get("code"), error.get("message")
    if not isinstance(code, int) or isinstance(code, bool) or not isinstance(message, str):
        raise bad('"error" needs an integer "code" and a string "message"')
    if set(error) - {"code", "message", "data"}:
        raise bad(f"unknown member {sorted(set(error) - {'code', 'message', 'data'})[0]!r} in error")
    return ErrorResponse(id=msg_id, code=code, message=message, data=error.get("data"))
