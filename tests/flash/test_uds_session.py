"""The UDS session over udsoncan: the bytes it sends, how it waits, how it re-sends, what it raises.

The connection is udsoncan's own seam (``BaseConnection``), scripted here: each
request gets the answers the test lists (``None`` = the answer is lost).
"""

from __future__ import annotations

import dataclasses
import threading
from collections import deque
from collections.abc import Callable

import pytest
from udsoncan.connections import BaseConnection
from udsoncan.exceptions import TimeoutException

from agent.config.vehicle import EcuConfig, TimingConfig, VehicleConfig
from agent.errors import ConfigurationError, NegativeResponseError, OtaTimeoutError, ProtocolError
from tests.flash.flashkit import FakeClock
from update_agent.uds.client import UdsClientSession, client_config
from update_agent.uds.tester_present import TesterPresentKeeper as Keeper

Answers = Callable[[bytes], list[bytes | None]]


class ScriptedConnection(BaseConnection):
    def __init__(self, answers: Answers) -> None:
        super().__init__("scripted")
        self.answers = answers
        self.sent: list[bytes] = []
        self.inbox: deque[bytes | None] = deque()

    def open(self) -> ScriptedConnection:
        return self

    def close(self) -> None:
        pass

    def is_open(self) -> bool:
        return True

    def specific_send(self, payload: bytes, timeout: float | None = None) -> None:
        self.sent.append(bytes(payload))
        self.inbox.extend(self.answers(bytes(payload)))

    def specific_wait_frame(self, timeout: float | None = None) -> bytes | None:
        frame = self.inbox.popleft() if self.inbox else None
        if frame is None:
            raise TimeoutException(f"scripted: no answer (timeout={timeout})")
        return frame

    def empty_rxqueue(self) -> None:
        self.inbox.clear()

    def empty_txqueue(self) -> None:
        pass


class Seen:
    def __init__(self) -> None:
        self.nrcs: list[tuple[int, int]] = []
        self.retries: list[tuple[int, int, str]] = []

    def on_nrc(self, service: int, nrc: int) -> None:
        self.nrcs.append((service, nrc))

    def on_retry(self, service: int, attempt: int, reason: str) -> None:
        self.retries.append((service, attempt, reason))


def _ecu(vehicle: VehicleConfig, **timing: float) -> EcuConfig:
    engine = vehicle.ecu("engine")
    return dataclasses.replace(engine, timing=dataclasses.replace(engine.timing, **timing))


def _session(ecu: EcuConfig, answers: Answers) -> tuple[UdsClientSession, ScriptedConnection, Seen]:
    conn = ScriptedConnection(answers)
    session = UdsClientSession(ecu, conn)
    seen = Seen()
    session.set_observer(seen)
    return session, conn, seen


def test_client_timing_lets_a_response_pending_chain_outlive_request_timeout(
        bench_vehicle: VehicleConfig) -> None:
    timing = TimingConfig(p2=0.05, p2_star=5.0, request_timeout=0.5, response_pending_limit=120.0)
    ecu = dataclasses.replace(bench_vehicle.ecu("engine"), timing=timing)
    config = client_config(ecu, lambda: None)
    assert config["p2_timeout"] == 0.5  # first answer (final or 0x78)
    assert config["p2_star_timeout"] == 5.0  # each answer after a 0x78
    assert config["request_timeout"] == 120.0  # udsoncan's overall cap: only an endless 0x78 chain
    assert config["use_server_timing"] is False


def test_response_pending_is_waited_through_and_counted(bench_vehicle: VehicleConfig) -> None:
    session, conn, seen = _session(_ecu(bench_vehicle), lambda req: [
        b"\x7f\x31\x78", b"\x7f\x31\x78", b"\x7f\x31\x78", b"\x71\x01\xff\x00\x00"])
    status = session.start_routine(0xFF00, bytes.fromhex("44 00010000 00080000"))
    assert status == b"\x00"
    assert conn.sent == [bytes.fromhex("31 01 ff00 44 00010000 00080000")]
    assert seen.nrcs == [(0x31, 0x78)] * 3


def test_a_negative_response_is_named(bench_vehicle: VehicleConfig) -> None:
    session, _, seen = _session(_ecu(bench_vehicle), lambda req: [b"\x7f\x31\x72"])
    with pytest.raises(NegativeResponseError) as err:
        session.start_routine(0xFF00, b"")
    assert str(err.value) == "NRC 0x72 generalProgrammingFailure"
    assert (err.value.service, err.value.nrc, err.value.exit_code) == (0x31, 0x72, 4)
    assert seen.nrcs == [(0x31, 0x72)]


def test_busy_repeat_request_is_repeated_after_the_delay_until_the_ecu_takes_it(
        bench_vehicle: VehicleConfig) -> None:
    answers = deque([[b"\x7f\x10\x21"], [b"\x7f\x10\x21"], [b"\x50\x02\x00\x32\x01\xf4"]])
    conn = ScriptedConnection(lambda req: answers.popleft())
    t = FakeClock()
    session = UdsClientSession(_ecu(bench_vehicle, busy_repeat_delay=0.25), conn, clock=t, sleep=t.sleep)
    seen = Seen()
    session.set_observer(seen)
    session.change_session(0x02)  # the ECU finished what it was busy with: the third try is taken
    assert conn.sent == [b"\x10\x02"] * 3  # the same request, repeated
    assert t.slept == [0.25, 0.25]
    assert seen.nrcs == [(0x10, 0x21)] * 2
    assert [r[:2] for r in seen.retries] == [(0x10, 1), (0x10, 2)]


def test_busy_repeats_are_bounded_by_busy_limit(bench_vehicle: VehicleConfig) -> None:
    conn = ScriptedConnection(lambda req: [b"\x7f\x34\x21"])
    t = FakeClock()
    session = UdsClientSession(_ecu(bench_vehicle, busy_repeat_delay=0.5, busy_limit=2.0), conn,
                               clock=t, sleep=t.sleep)
    with pytest.raises(NegativeResponseError, match=r"NRC 0x21 busyRepeatRequest \(still busy after 2\.0 s") as e:
        session.request_download(0x10000, 16, address_bytes=4, length_bytes=4, data_format=0)
    assert e.value.nrc == 0x21 and e.value.service == 0x34
    assert len(conn.sent) == 5 and sum(t.slept) == 2.0  # 0, 0.5, 1.0, 1.5, 2.0 s: then it gives up


def test_no_answer_is_a_timeout_naming_the_wait(bench_vehicle: VehicleConfig) -> None:
    session, _, _ = _session(_ecu(bench_vehicle, request_timeout=0.5), lambda req: [None])
    with pytest.raises(OtaTimeoutError, match=r"DiagnosticSessionControl: no response within 0\.5 s "
                                              r"\(ECU not answering\)"):
        session.change_session(0x03)
    session, _, _ = _session(_ecu(bench_vehicle), lambda req: [b"\x7f\x31\x78", None])
    with pytest.raises(OtaTimeoutError, match=r"no final response within P2\* \(5 s\) after 1 NRC 0x78"):
        session.start_routine(0xFF00, b"")


def test_session_control_takes_the_ecus_p2_star_when_longer(bench_vehicle: VehicleConfig) -> None:
    # P2 = 0x0032 ms, P2* = 0x0BB8 * 10 ms = 30 s
    session, _, _ = _session(_ecu(bench_vehicle, p2_star=5.0), lambda req: [b"\x50\x02\x00\x32\x0b\xb8"])
    timing = session.change_session(0x02)
    assert (timing.p2, timing.p2_star) == (0.05, 30.0)
    assert session._client.config["p2_star_timeout"] == 30.0
    assert session._client.config["p2_timeout"] == 2.0  # our request_timeout, never the ECU's 50 ms


def test_a_timed_out_block_is_re_sent_with_the_same_counter(bench_vehicle: VehicleConfig) -> None:
    answers = iter([[None], [b"\x76\x07"]])
    session, conn, seen = _session(_ecu(bench_vehicle, transfer_retries=2), lambda req: next(answers))
    session.transfer_data(0x07, b"\xaa" * 16)
    assert conn.sent == [b"\x36\x07" + b"\xaa" * 16] * 2
    assert [(s, a) for s, a, _ in seen.retries] == [(0x36, 1)]


def test_re_sends_are_bounded(bench_vehicle: VehicleConfig) -> None:
    session, conn, seen = _session(_ecu(bench_vehicle, transfer_retries=2), lambda req: [None])
    with pytest.raises(OtaTimeoutError, match="TransferData block 0x07: no response after 3 attempts"):
        session.transfer_data(0x07, b"\xaa")
    assert len(conn.sent) == 3 and len(seen.retries) == 2
    session, conn, _ = _session(_ecu(bench_vehicle, transfer_retries=0), lambda req: [None])
    with pytest.raises(OtaTimeoutError):
        session.transfer_data(0x01, b"\xaa")
    assert len(conn.sent) == 1


def test_a_late_answer_to_the_previous_block_is_not_taken_for_this_one(bench_vehicle: VehicleConfig) -> None:
    # block 2's first answer was lost and it was re-sent; the lost answer then shows up after block 3
    answers = iter([[b"\x76\x02", b"\x76\x03"], [b"\x76\x03"]])
    session, conn, seen = _session(_ecu(bench_vehicle), lambda req: next(answers))
    session.transfer_data(0x03, b"\xbb")
    assert conn.sent == [b"\x36\x03\xbb"] * 2
    assert "late answer to block 0x02" in seen.retries[0][2]


def test_a_wrong_echo_that_is_not_stale_is_a_protocol_error(bench_vehicle: VehicleConfig) -> None:
    session, _, _ = _session(_ecu(bench_vehicle), lambda req: [b"\x76\x09"])
    with pytest.raises(ProtocolError, match="does not match"):
        session.transfer_data(0x03, b"\xbb")


def test_request_download_encodes_formats_and_returns_max_block_length(bench_vehicle: VehicleConfig) -> None:
    session, conn, _ = _session(_ecu(bench_vehicle), lambda req: [b"\x74\x20\x08\x02"])
    assert session.request_download(0x10000, 0x8000, address_bytes=4, length_bytes=3, data_format=0x00) == 0x802
    assert conn.sent == [bytes.fromhex("34 00 34 00010000 008000")]


def test_security_and_dids_are_plain_bytes(bench_vehicle: VehicleConfig) -> None:
    def answer(req: bytes) -> list[bytes | None]:
        return {b"\x27\x01": [b"\x67\x01\xde\xad\xbe\xef"], b"\x22\xf1\x89": [b"\x62\xf1\x891.1.0"]}.get(
            req, [bytes([req[0] + 0x40]) + req[1:3]])

    session, conn, _ = _session(_ecu(bench_vehicle), answer)
    assert session.request_seed(0x01) == b"\xde\xad\xbe\xef"
    session.send_key(0x02, b"\x01\x02\x03\x04")
    assert session.read_did(0xF189) == b"1.1.0"
    session.write_did(0xF15A, bytes(9))
    assert conn.sent[1] == b"\x27\x02\x01\x02\x03\x04"
    assert conn.sent[3] == b"\x2e\xf1\x5a" + bytes(9)


def test_keep_alive_needs_functional_addressing(bench_vehicle: VehicleConfig) -> None:
    session, _, _ = _session(_ecu(bench_vehicle), lambda req: [])
    with pytest.raises(ConfigurationError, match="functional"):
        session.keep_alive(True)


def test_keep_alive_sends_functional_tester_present_until_stopped(bench_vehicle: VehicleConfig) -> None:
    sent: list[bytes] = []
    three = threading.Event()

    def functional(payload: bytes) -> None:
        sent.append(payload)
        if len(sent) >= 3:
            three.set()

    ecu = _ecu(bench_vehicle, tester_present_interval=0.1)
    session = UdsClientSession(ecu, ScriptedConnection(lambda req: []), functional=functional)
    session.keep_alive(True)
    assert three.wait(10), "TesterPresent was not repeated"
    session.keep_alive(False)
    count = session.keep_alive_sent
    assert count >= 3 and set(sent) == {b"\x3e\x80"}
    assert len(sent) == count  # nothing after stop


def test_the_keeper_stops_at_once() -> None:
    first = threading.Event()
    keeper = Keeper(lambda payload: first.set(), interval=3600)
    keeper.start()
    assert first.wait(10)
    keeper.stop()
    assert not keeper.running and keeper.sent == 1
