"""Fuzzing the IPC layer above the codec (tests/ipc fuzzes the line codec itself): what a peer sends
is decoded, then validated against the declaration of every method and event of every daemon."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.errors import OtaError
from agent.ipc.error_codes import error_from_wire
from agent.ipc.jsonrpc import Request, decode
from agent.ipc.protocol import PROTOCOL
from bench.canbus.control import PROTOCOL as HUB_PROTOCOL

from .fuzzkit import FUZZ, JSON, TIMEOUT, clear_outcome

pytestmark = pytest.mark.timeout(TIMEOUT)

PROTOCOLS = (PROTOCOL, HUB_PROTOCOL)
METHODS = sorted({(i, name) for i, p in enumerate(PROTOCOLS) for name in p.methods})
EVENTS = sorted({(i, name) for i, p in enumerate(PROTOCOLS) for name in p.events})


def _params_like(method: Any) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with the declared field names (so validation goes past the names) and random values."""
    names = sorted(getattr(method.params, "fields", {}))
    if not names:
        return st.dictionaries(st.text(max_size=8), JSON, max_size=3)
    return st.dictionaries(st.sampled_from(names) | st.text(max_size=8), JSON, max_size=len(names) + 1)


@FUZZ
@given(data=st.data(), which=st.sampled_from(METHODS))
def test_requests_for_every_declared_method(data: st.DataObject, which: tuple[int, str]) -> None:
    protocol = PROTOCOLS[which[0]]
    method = protocol.method(which[1])
    params = data.draw(_params_like(method) | JSON)
    line = json.dumps({"jsonrpc": "2.0", "id": 1, "method": which[1], "params": params}).encode()
    message = clear_outcome(decode, line)
    if isinstance(message, Request):  # what the server does next, before any handler runs
        clear_outcome(protocol.check_params, message.method, message.params)
    clear_outcome(protocol.check_result, which[1], data.draw(JSON))


@FUZZ
@given(data=st.data(), which=st.sampled_from(EVENTS))
def test_every_declared_event(data: st.DataObject, which: tuple[int, str]) -> None:
    protocol = PROTOCOLS[which[0]]
    clear_outcome(protocol.check_event, which[1], data.draw(_params_like(protocol.event(which[1])) | JSON))


@FUZZ
@given(method=st.text(max_size=30), params=JSON)
def test_undeclared_methods(method: str, params: Any) -> None:
    for protocol in PROTOCOLS:
        clear_outcome(protocol.check_params, method, params)


@FUZZ
@given(code=st.integers(-(2 ** 40), 2 ** 40) | st.sampled_from([-32700, -32600, -32601, -32602, -32603, -32001,
                                                               -32002, 1, 2, 3, 4, 5, 6, 1000, 1001]),
       message=st.text(max_size=40), data=JSON)
def test_error_objects_from_a_peer_become_stack_errors(code: int, message: str, data: Any) -> None:
    assert isinstance(error_from_wire(code, message or "x", data, context="fuzz"), OtaError)
