"""Each fault knob: the failure a tester sees, and a bounded retry that then succeeds."""

from __future__ import annotations

import zlib
from collections.abc import Callable

import pytest

from bench.appimage import build_image

from .support import ENGINE_APP, Tester

MakeCore = Callable[..., Tester]
IMAGE = build_image("1.1.0", "ENG-4711", 0x600)  # 6 blocks of 0x100 bytes


def _start_download(t: Tester) -> None:
    t.unlock()
    t.erase(ENGINE_APP, 0x8000)
    t.request_download(ENGINE_APP, len(IMAGE))


def _block(n: int) -> bytes:
    return bytes([0x36, n & 0xFF]) + IMAGE[(n - 1) * 0x100:n * 0x100]


def test_drop_response_then_the_repeated_block_is_not_written_twice(make_core: MakeCore) -> None:
    t = make_core("engine", faults={"drop_response": {"service": 0x36, "count": 3}})
    _start_download(t)
    assert t.one(_block(1)) == b"\x76\x01"
    assert t.one(_block(2)) == b"\x76\x02"
    assert t.send(_block(3)) == []  # written, answer lost
    assert t.one(_block(3)) == b"\x76\x03"  # the tester's retry: same counter
    for n in range(4, 7):
        assert t.one(_block(n)) == bytes([0x76, n])
    assert t.one("37") == b"\x77"
    assert t.check_memory(zlib.crc32(IMAGE)) == bytes.fromhex("7101020200")
    assert t.core.status()["faults_fired"] == ["drop_response: service 0x36 request #3"]


def test_drop_response_of_several_requests_of_any_service(make_core: MakeCore) -> None:
    t = make_core("engine", faults={"drop_response": [{"service": 0x22, "count": 2, "times": 2}]})
    assert t.one("22f189")
    assert t.send("22f189") == []
    assert t.send("22f189") == []
    assert t.one("22f189") == b"\x62\xf1\x891.0.0"


def test_drop_the_final_erase_answer_after_response_pending(make_core: MakeCore) -> None:
    t = make_core("engine", erase_time=1.0, faults={"drop_response": {"service": 0x31, "count": 1}})
    t.unlock()
    assert t.send("3101ff00440001000000008000")[0].is_pending
    t.clock.advance(1.0)
    assert t.core.poll(t.clock()) == []  # erased, the final answer lost
    assert t.erase(ENGINE_APP, 0x8000) == bytes.fromhex("7101ff0000")  # the retry works


def test_nrc_on_block_aborts_the_transfer_then_a_reflash_succeeds(make_core: MakeCore) -> None:
    t = make_core("engine", faults={"nrc_on_block": {"block": 4, "nrc": 0x72}})
    _start_download(t)
    for n in range(1, 4):
        t.one(_block(n))
    assert t.nrc(_block(4)) == 0x72
    assert t.nrc(_block(4)) == 0x24  # generalProgrammingFailure ended the transfer
    # the flasher starts over: erase, download, check
    t.erase(ENGINE_APP, 0x8000)
    t.request_download(ENGINE_APP, len(IMAGE))
    t.transfer(IMAGE)
    t.one("37")
    assert t.check_memory(zlib.crc32(IMAGE)) == bytes.fromhex("7101020200")


def test_nrc_on_block_always(make_core: MakeCore) -> None:
    t = make_core("engine", faults={"nrc_on_block": {"block": 2, "nrc": 0x71, "times": "always"}})
    for _ in range(3):
        t.one("1001")
        _start_download(t)
        t.one(_block(1))
        assert t.nrc(_block(2)) == 0x71


def test_nrc_on_block_that_does_not_abort_lets_the_block_be_resent(make_core: MakeCore) -> None:
    t = make_core("engine", faults={"nrc_on_block": {"block": 2, "nrc": 0x22}})
    _start_download(t)
    t.one(_block(1))
    assert t.nrc(_block(2)) == 0x22
    for n in range(2, 7):
        assert t.one(_block(n)) == bytes([0x76, n])
    assert t.one("37") == b"\x77"


def test_reset_mid_transfer(make_core: MakeCore) -> None:
    t = make_core("engine", faults={"reset_mid_transfer": {"block": 3}})
    _start_download(t)
    t.one(_block(1))
    t.one(_block(2))
    assert t.send(_block(3)) == []  # the ECU rebooted instead of answering
    status = t.core.status()
    assert status["resets"] == 1 and status["session"] == "default" and not status["security_unlocked"]
    assert t.version() == "BOOT"  # half an application: stays in the bootloader
    assert t.nrc(_block(3)) == 0x24
    t.flash(IMAGE, ENGINE_APP, erase_size=0x8000)  # fires once: the reflash goes through
    t.one("1101")
    assert t.version() == "1.1.0"


def test_slow_erase(make_core: MakeCore) -> None:
    t = make_core("engine", erase_time=0.5, response_pending_interval=1.0, faults={"erase_time": 4.5})
    t.unlock()
    responses = t.send("3101ff00440001000000008000")
    pendings = len(responses)
    while True:
        t.clock.t = t.core.next_deadline() or t.clock.t
        responses = t.core.poll(t.clock())
        if responses and not responses[0].is_pending:
            break
        pendings += len(responses)
    assert pendings == 5  # at 0, 1, 2, 3, 4 s; the answer at 4.5 s
    assert t.clock() - 1000.0 >= 4.5
    # the knob fired once: the next erase takes the configured 0.5 s
    start = t.clock()
    assert t.erase(ENGINE_APP, 0x8000) == bytes.fromhex("7101ff0000")
    assert t.clock() - start == pytest.approx(0.5)


def test_wrong_crc_then_right(make_core: MakeCore) -> None:
    t = make_core("engine", faults={"wrong_crc": True})
    _start_download(t)
    t.transfer(IMAGE)
    t.one("37")
    assert t.check_memory(zlib.crc32(IMAGE)) == bytes.fromhex("7101020201")
    assert t.check_memory(zlib.crc32(IMAGE)) == bytes.fromhex("7101020200")


def test_preconditions_fail_then_pass(make_core: MakeCore) -> None:
    t = make_core("engine", faults={"preconditions_fail": {"times": 2}})
    t.one("1003")
    assert t.one("31010203") == bytes.fromhex("7101020301")
    assert t.one("31010203") == bytes.fromhex("7101020301")
    assert t.one("31010203") == bytes.fromhex("7101020300")


def _answer_after_pendings(t: Tester, request: str | bytes) -> tuple[int, bytes]:
    """Send ``request``, follow the ECU's timers to the final answer: (NRC 0x78 count, final answer)."""
    responses = t.send(request)
    pendings = 0
    for _ in range(10000):
        pendings += sum(1 for r in responses if r.is_pending)
        final = [r for r in responses if not r.is_pending]
        if final:
            return pendings, final[0].data
        deadline = t.core.next_deadline(t.clock())
        assert deadline is not None, "the ECU answered 0x78 and then nothing more"
        t.clock.t = max(t.clock.t, deadline)
        responses = t.core.poll(t.clock())
    raise AssertionError("no final answer after 10000 timer steps")


def test_pending_storm_answers_after_the_configured_number_of_0x78(make_core: MakeCore) -> None:
    t = make_core("engine", response_pending_interval=0.05,
                  faults={"pending_storm": {"service": 0x36, "count": 2, "pendings": 25}})
    _start_download(t)
    assert t.one(_block(1)) == b"\x76\x01"  # the first block is answered at once
    assert _answer_after_pendings(t, _block(2)) == (25, b"\x76\x02")
    assert t.core.status()["pending_service"] is None
    for n in range(3, 7):  # times defaults to 1: the rest of the transfer is answered at once
        assert t.one(_block(n)) == bytes([0x76, n])
    assert t.one("37") == b"\x77"
    assert t.check_memory(zlib.crc32(IMAGE)) == bytes.fromhex("7101020200")  # the storm lost nothing
    assert t.core.status()["faults_fired"] == ["pending_storm: service 0x36 request #2: 25 x NRC 0x78"]


def test_pending_storm_while_busy_answers_busy_and_adds_to_a_slow_erase(make_core: MakeCore) -> None:
    t = make_core("engine", erase_time=0.5, response_pending_interval=0.1,
                  faults={"pending_storm": {"service": 0x31, "pendings": 10, "times": "always"}})
    t.one("1003")
    assert t.send("3101ff00440001000000008000")[0].is_pending  # no security yet: the NRC waits too
    assert t.core.status()["pending_service"] == 0x31
    assert t.nrc("22f189") == 0x21  # busyRepeatRequest while the chain runs
    pendings, answer = _answer_after_pendings(t, b"")  # b"": nothing new, follow the timers
    assert answer[:2] == b"\x7f\x31" and pendings == 9  # + the one above: a refusal waits too
    t.unlock()
    pendings, answer = _answer_after_pendings(t, "3101ff00440001000000008000")
    assert answer == bytes.fromhex("7101ff0000")
    assert pendings == 15  # 0.5 s of erase and 10 more, at 0.1 s


def test_wrong_block_sequence_counter_keeps_the_transfer_for_a_correct_block(make_core: MakeCore) -> None:
    """0x73 does not abort a transfer: the tester may send the expected block after it."""
    t = make_core("engine", faults={"nrc_on_block": {"block": 3, "nrc": 0x73}})
    _start_download(t)
    assert t.one(_block(1)) == b"\x76\x01"
    assert t.one(_block(2)) == b"\x76\x02"
    assert t.nrc(_block(3)) == 0x73
    assert t.nrc(_block(5)) == 0x73  # a real wrong counter: block 3 was not written
    for n in range(3, 7):
        assert t.one(_block(n)) == bytes([0x76, n])
    assert t.one("37") == b"\x77"
    assert t.check_memory(zlib.crc32(IMAGE)) == bytes.fromhex("7101020200")
