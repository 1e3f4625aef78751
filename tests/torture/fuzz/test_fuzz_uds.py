"""Fuzzing what an ECU answers: random and mutated UDS response payloads into the update agent's UDS
session (udsoncan's response parsing plus the session's own checks) and its version reading.

The connection below stands for the ISO-TP link: every request the session sends is answered with
the next fuzzed payload (a chain of NRC 0x78 included); when the payloads run out the ECU is silent
and the session's (tiny) timeouts end the request. Whatever the ECU says, the session answers with a
value or one of the stack's errors.
"""

from __future__ import annotations

import collections
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from udsoncan.connections import BaseConnection

from agent.config.vehicle import EcuConfig, load_vehicle_config
from bench.scenario import VEHICLE_TEMPLATE
from update_agent.uds.client import UdsClientSession
from update_agent.versions import read_ecu_versions

from .fuzzkit import FUZZ, TIMEOUT, clear_outcome

pytestmark = pytest.mark.timeout(TIMEOUT)

SERVICES = (0x10, 0x11, 0x22, 0x27, 0x28, 0x2E, 0x31, 0x34, 0x36, 0x37, 0x3E, 0x85)


def _ecu() -> EcuConfig:
    ecu = load_vehicle_config(VEHICLE_TEMPLATE).ecu("engine")
    # a silent ECU ends a request at once: the waits are not what is tested here
    return replace(ecu, timing=replace(ecu.timing, p2=0.001, p2_star=0.002, request_timeout=0.002,
                                       response_pending_limit=0.05, transfer_retries=1, busy_limit=0.0))


ECU = _ecu()


class FuzzedEcu(BaseConnection):  # type: ignore[misc]
    """A connection whose every request is answered with the next payload from the test."""

    def __init__(self, answers: list[bytes]) -> None:
        super().__init__("fuzzed-ecu")
        self.answers = collections.deque(answers)
        self.inbox: collections.deque[bytes] = collections.deque()
        self.opened = False

    def open(self) -> FuzzedEcu:
        self.opened = True
        return self

    def close(self) -> None:
        self.opened = False

    def is_open(self) -> bool:
        return self.opened

    def empty_rxqueue(self) -> None:
        self.inbox.clear()

    def specific_send(self, payload: bytes, timeout: float | None = None) -> None:
        if self.answers:
            self.inbox.append(self.answers.popleft())

    def specific_wait_frame(self, timeout: float | None = 2) -> bytes | None:
        if self.inbox:
            return self.inbox.popleft()
        if self.answers and self.answers[0][:1] == b"\x7f":  # a 0x78 chain goes on without a request
            return self.answers.popleft()
        return None


def answer(service: int) -> st.SearchStrategy[bytes]:
    """What an ECU might send back for ``service``: right, wrong, short, long, pending, garbage."""
    positive = st.binary(max_size=12).map(lambda rest: bytes([service + 0x40]) + rest)
    negative = st.integers(0, 255).map(lambda nrc: bytes([0x7F, service, nrc]))
    pending = st.just(bytes([0x7F, service, 0x78]))
    other = st.binary(max_size=10)
    return st.one_of(positive, positive, negative, pending, other)


def _session(answers: list[bytes]) -> UdsClientSession:
    conn = FuzzedEcu(answers)
    conn.open()
    return UdsClientSession(ECU, conn)


CALLS: dict[int, Any] = {
    0x10: lambda s: s.change_session(3),
    0x11: lambda s: s.ecu_reset(1),
    0x22: lambda s: s.read_did(0xF189),
    0x27: lambda s: s.request_seed(0x11),
    0x28: lambda s: s.communication_control(3, 1),
    0x2E: lambda s: s.write_did(0xF1A0, b"\x00\x00\x00\x01"),
    0x31: lambda s: s.start_routine(0xFF00, bytes.fromhex("440001000000008000")),
    0x34: lambda s: s.request_download(0x10000, 0x4000, address_bytes=4, length_bytes=4, data_format=0),
    0x36: lambda s: s.transfer_data(1, bytes(64)),
    0x37: lambda s: s.request_transfer_exit(),
    0x3E: lambda s: s.tester_present(),
    0x85: lambda s: s.control_dtc_setting(False),
}


@FUZZ
@given(service=st.sampled_from(SERVICES), data=st.data())
def test_every_service_with_fuzzed_answers(service: int, data: st.DataObject) -> None:
    answers = data.draw(st.lists(answer(service), min_size=0, max_size=4))
    clear_outcome(CALLS[service], _session(answers))


@FUZZ
@given(answers=st.lists(answer(0x22) | st.binary(max_size=40).map(lambda d: b"\x62\xf1" + d), max_size=8))
def test_version_reading_with_fuzzed_did_values(answers: list[bytes]) -> None:
    found = clear_outcome(read_ecu_versions, _session(answers), ECU)
    if not isinstance(found, BaseException):
        assert all(isinstance(v, str) for v in found.values.values())


@FUZZ
@given(answers=st.lists(st.binary(max_size=16), max_size=6), service=st.sampled_from(SERVICES))
def test_raw_garbage(answers: list[bytes], service: int) -> None:
    clear_outcome(CALLS[service], _session(answers))
