"""SecurityAccess (0x27) server side: seeds, keys, attempt counter and lock-out delay.

The key is computed by the ECU config's ``security.algorithm`` (the same
``module:function`` the tester calls), so the bench accepts exactly the keys
the configured algorithm yields. Times come from the caller (injected clock).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from typing import Any

from udsoncan.ResponseCode import ResponseCode

from bench.ecu.codec import NrcError
from bench.ecu.faults import FaultPlan
from bench.ecu.simconfig import SecuritySim

log = logging.getLogger(__name__)

KeyAlgorithm = Callable[[bytes, int, dict[str, Any]], bytes]


class SecurityAccess:
    def __init__(self, *, level: int, algorithm: KeyAlgorithm, params: dict[str, Any], sim: SecuritySim,
                 rng: Callable[[int], bytes], faults: FaultPlan, ecu: str = "") -> None:
        self.level = level
        self.algorithm = algorithm
        self.params = params
        self.sim = sim
        self.rng = rng
        self.faults = faults
        self.ecu = ecu
        self.unlocked = False
        self.failed_attempts = 0
        self.locked_until: float | None = None
        self._seed: bytes | None = None

    def relock(self) -> None:
        self.unlocked = False
        self._seed = None

    def _lockout_active(self, now: float) -> bool:
        if self.locked_until is None:
            return False
        if now >= self.locked_until:
            self.locked_until = None
            self.failed_attempts = 0
            return False
        return True

    def request_seed(self, level: int, now: float) -> bytes:
        if level != self.level:
            raise NrcError(ResponseCode.SubFunctionNotSupported, f"security level {level:#04x} not supported")
        if self._lockout_active(now):
            raise NrcError(ResponseCode.RequiredTimeDelayNotExpired, "lock-out delay running")
        if self.unlocked:
            return bytes(self.sim.seed_length)  # already unlocked: the all-zero seed
        seed = self.rng(self.sim.seed_length)
        while not any(seed):
            seed = self.rng(self.sim.seed_length)
        self._seed = seed
        return seed

    def send_key(self, level: int, key: bytes, now: float) -> None:
        if level != self.level + 1:
            raise NrcError(ResponseCode.SubFunctionNotSupported, f"security level {level:#04x} not supported")
        if self._lockout_active(now):
            raise NrcError(ResponseCode.RequiredTimeDelayNotExpired, "lock-out delay running")
        seed = self._seed
        if seed is None:
            raise NrcError(ResponseCode.RequestSequenceError, "sendKey without a requestSeed")
        self._seed = None  # a seed is good for one key
        expected = self.algorithm(seed, self.level, self.params)
        refused = self.faults.switch("refuse_security")
        if refused or not hmac.compare_digest(expected, key):
            self.failed_attempts += 1
            if self.failed_attempts >= self.sim.max_attempts:
                self.locked_until = now + self.sim.lockout_time
                log.info("%s: security access locked for %.1f s after %d invalid keys", self.ecu,
                         self.sim.lockout_time, self.failed_attempts)
                raise NrcError(ResponseCode.ExceedNumberOfAttempts, "too many invalid keys")
            raise NrcError(ResponseCode.InvalidKey,
                           f"attempt {self.failed_attempts} of {self.sim.max_attempts}")
        self.failed_attempts = 0
        self.unlocked = True
