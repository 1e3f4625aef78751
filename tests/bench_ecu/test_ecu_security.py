"""SecurityAccess: seed / key with the configured algorithm, attempt counter, lock-out on a fake clock."""

from __future__ import annotations

from collections.abc import Callable

from update_agent.seedkey import aes_cmac_key, xor_key

from .support import Tester

MakeCore = Callable[..., Tester]


def _seed(t: Tester, level: int) -> bytes:
    response = t.one(bytes([0x27, level]))
    assert response[:2] == bytes([0x67, level]), response.hex()
    return response[2:]


def test_key_from_the_configured_algorithm_unlocks(make_core: MakeCore) -> None:
    t = make_core("engine")
    t.one("1003")
    seed = _seed(t, 0x01)
    assert len(seed) == 4 and any(seed)
    key = xor_key(seed, 0x01, {"mask": "5A3CC3A5"})
    assert t.one(b"\x27\x02" + key) == b"\x67\x02"
    assert t.core.security.unlocked
    assert _seed(t, 0x01) == bytes(4)  # already unlocked: all-zero seed


def test_aes_cmac_ecu_and_level_0x11(make_core: MakeCore) -> None:
    t = make_core("brake", security={"seed_length": 16})
    t.one("1003")
    assert t.nrc("2701") == 0x12  # brake only has level 0x11
    seed = _seed(t, 0x11)
    assert len(seed) == 16
    key = aes_cmac_key(seed, 0x11, {"secret": "000102030405060708090a0b0c0d0e0f"})
    assert t.one(b"\x27\x12" + key) == b"\x67\x12"


def test_security_access_is_not_offered_in_the_default_session(make_core: MakeCore) -> None:
    t = make_core()
    assert t.nrc("2701") == 0x7F


def test_send_key_without_seed_is_a_sequence_error(make_core: MakeCore) -> None:
    t = make_core()
    t.one("1003")
    assert t.nrc("270201020304") == 0x24
    assert t.nrc("2702") == 0x13
    assert t.nrc("270401020304") == 0x12


def test_invalid_keys_then_lockout_then_success(make_core: MakeCore) -> None:
    t = make_core("engine", security={"max_attempts": 3, "lockout_time": 10.0})
    t.one("1003")
    for _ in range(2):
        _seed(t, 1)
        assert t.nrc("2702deadbeef") == 0x35  # invalidKey
    _seed(t, 1)
    assert t.nrc("2702deadbeef") == 0x36  # exceededNumberOfAttempts
    assert t.core.status()["security_locked_out"]
    assert t.nrc("2701") == 0x37  # requiredTimeDelayNotExpired
    for _ in range(3):  # 9.9 s, keeping the session with TesterPresent
        t.clock.advance(3.3)
        t.one("3e00")
    assert t.nrc("2701") == 0x37
    t.clock.advance(0.2)
    seed = _seed(t, 1)
    assert t.one(b"\x27\x02" + xor_key(seed, 1, {"mask": "5A3CC3A5"})) == b"\x67\x02"
    assert t.core.status()["security_failed_attempts"] == 0


def test_a_seed_is_good_for_one_key(make_core: MakeCore) -> None:
    t = make_core()
    t.one("1003")
    seed = _seed(t, 1)
    assert t.nrc("2702deadbeef") == 0x35
    key = xor_key(seed, 1, {"mask": "5A3CC3A5"})
    assert t.nrc(b"\x27\x02" + key) == 0x24  # the seed was used up by the invalid key


def test_session_change_relocks(make_core: MakeCore) -> None:
    t = make_core()
    t.unlock()
    t.one("1003")
    assert not t.core.security.unlocked


def test_refuse_security_fault_refuses_then_recovers(make_core: MakeCore) -> None:
    t = make_core("engine", faults={"refuse_security": {"times": 2}})
    t.one("1003")
    for _ in range(2):
        seed = _seed(t, 1)
        assert t.nrc(b"\x27\x02" + xor_key(seed, 1, {"mask": "5A3CC3A5"})) == 0x35
    seed = _seed(t, 1)
    assert t.one(b"\x27\x02" + xor_key(seed, 1, {"mask": "5A3CC3A5"})) == b"\x67\x02"
    assert t.core.status()["faults_fired"] == ["refuse_security: on", "refuse_security: on"]
