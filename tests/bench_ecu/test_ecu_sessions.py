"""Sessions, S3, TesterPresent, ECUReset, CommunicationControl, ControlDTCSetting, functional requests."""

from __future__ import annotations

from collections.abc import Callable

from .support import Tester

MakeCore = Callable[..., Tester]


def test_extended_session_advertises_p2_and_p2_star(make_core: MakeCore) -> None:
    t = make_core("engine", p2=0.05, p2_star=5.0)
    # 50 03, P2 = 50 ms (0x0032), P2* = 5 s in 10 ms units (0x01F4)
    assert t.one("1003") == bytes.fromhex("5003 0032 01f4")
    assert t.read_did(0xF186) == b"\x03"


def test_programming_session_only_from_extended(make_core: MakeCore) -> None:
    t = make_core()
    assert t.nrc("1002") == 0x22  # conditionsNotCorrect from default
    assert t.one("1003")[0] == 0x50
    assert t.one("1002")[:2] == b"\x50\x02"
    assert t.read_did(0xF186) == b"\x02"


def test_session_control_rejects_bad_requests(make_core: MakeCore) -> None:
    t = make_core()
    assert t.nrc("1004") == 0x12  # safety system session not supported
    assert t.nrc("100300") == 0x13
    assert t.nrc("10") == 0x13


def test_suppress_positive_response_bit(make_core: MakeCore) -> None:
    t = make_core()
    assert t.send("1083") == []  # extended, suppressed
    assert t.read_did(0xF186) == b"\x03"
    assert t.send("3e80") == []
    assert t.nrc("1084") == 0x12  # negative responses are never suppressed


def test_s3_timeout_falls_back_to_default_and_relocks(make_core: MakeCore) -> None:
    t = make_core("engine", session_timeout=5.0)
    t.unlock()
    assert t.core.next_deadline() == t.clock() + 5.0
    t.poll(4.9)
    assert t.read_did(0xF186) == b"\x02"  # the read restarts S3
    t.poll(5.01)
    assert t.core.status()["session"] == "default"
    assert t.read_did(0xF186) == b"\x01"
    assert not t.core.security.unlocked
    assert t.nrc("3101ff00440001000000000100") == 0x7F  # routines need a non-default session


def test_tester_present_keeps_the_session(make_core: MakeCore) -> None:
    t = make_core("engine", session_timeout=5.0)
    t.unlock()
    for _ in range(5):
        t.clock.advance(4.0)
        assert t.send("3e80", functional=True) == []
    t.poll(1.0)
    assert t.core.status()["session"] == "programming"
    assert t.core.security.unlocked
    assert t.core.status()["tester_present"] == 5


def test_tester_present_rejects_unknown_subfunction(make_core: MakeCore) -> None:
    t = make_core()
    assert t.one("3e00") == b"\x7e\x00"
    assert t.nrc("3e01") == 0x12
    assert t.nrc("3e0000") == 0x13


def test_ecu_reset_answers_then_resets(make_core: MakeCore) -> None:
    t = make_core()
    t.unlock()
    assert t.one("1101") == b"\x51\x01"
    status = t.core.status()
    assert status["session"] == "default" and status["resets"] == 1
    assert not t.core.security.unlocked
    assert t.nrc("1105") == 0x12


def test_ecu_is_deaf_while_it_reboots(make_core: MakeCore) -> None:
    t = make_core("engine", reset_time=0.5)
    assert t.one("1101") == b"\x51\x01"
    assert t.send("3e00") == []
    t.clock.advance(0.5)
    assert t.one("3e00") == b"\x7e\x00"


def test_communication_control_and_dtc_setting_are_tracked(make_core: MakeCore) -> None:
    t = make_core()
    assert t.nrc("280301") == 0x7F  # not in the default session
    assert t.nrc("8502") == 0x7F
    t.one("1003")
    assert t.one("280301") == b"\x68\x03"  # disableRxAndTx, normal messages
    assert t.one("8502") == b"\xc5\x02"
    status = t.core.status()
    assert status["communication_control"] == {"control_type": 3, "communication_type": 1}
    assert status["dtc_setting"] == "off"
    assert t.nrc("280300") == 0x31  # communicationType without a message group
    assert t.nrc("8503") == 0x12
    t.one("1001")  # back to default re-enables both
    status = t.core.status()
    assert status["communication_control"] == {"control_type": 0, "communication_type": 1}
    assert status["dtc_setting"] == "on"


def test_functional_requests(make_core: MakeCore) -> None:
    t = make_core()
    assert t.one("1003", functional=True) == bytes.fromhex("5003 0032 01f4")
    assert t.send("8582", functional=True) == []  # suppressed positive answer
    assert t.core.status()["dtc_setting"] == "off"
    assert t.send("288301", functional=True) == []
    assert t.core.status()["communication_control"]["control_type"] == 3
    # ISO 14229-1 7.5: no 0x11 / 0x12 / 0x31 / 0x7E / 0x7F to a functional request
    assert t.send("22f1ff", functional=True) == []
    assert t.send("1004", functional=True) == []
    assert t.send("3e01", functional=True) == []
    # services that are never functional are ignored
    assert t.send("2711", functional=True) == []
    assert t.send("3101ff01", functional=True) == []
    assert t.one("22f189", functional=True) == b"\x62\xf1\x891.0.0"


def test_functional_requests_answered_without_suppress_bit_and_refused_by_fault(make_core: MakeCore) -> None:
    t = make_core(faults={"refuse_request": {"service": 0x85, "nrc": 0x22, "count": 2}})
    assert t.one("1003", functional=True)[:2] == b"\x50\x03"
    assert t.one("280301", functional=True) == b"\x68\x03"  # disableRxAndTx, answered
    assert t.core.status()["communication_control"]["control_type"] == 3
    assert t.one("8502", functional=True) == b"\xc5\x02"  # request #1 of 0x85: carried out
    assert t.core.status()["dtc_setting"] == "off"
    assert t.one("8501", functional=True) == b"\x7f\x85\x22"  # #2: refused (conditionsNotCorrect), not done
    assert t.core.status()["dtc_setting"] == "off"
    assert t.core.status()["faults_fired"] == ["refuse_request: service 0x85 request #2 -> NRC 0x22"]
    assert t.one("8501", functional=True) == b"\xc5\x01"  # fired once (times: 1)


def test_unknown_service(make_core: MakeCore) -> None:
    t = make_core()
    assert t.nrc("1901ff") == 0x11
