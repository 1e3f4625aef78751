"""Transfer rate and time to completion from byte counts sampled on an injected clock.

The rate is an exponentially weighted moving average with a time constant ``tau``
(weight ``1 - exp(-dt / tau)`` per sample, so irregular sampling is handled); the ETA is
the remaining bytes over that rate.
"""

from __future__ import annotations

import math


class RateMeter:
    def __init__(self, *, tau: float = 3.0) -> None:
        self.tau = tau
        self.rate: float | None = None
        self._last: tuple[float, int] | None = None

    def sample(self, now: float, done: int) -> None:
        if self._last is None:
            self._last = (now, done)
            return
        t0, d0 = self._last
        dt = now - t0
        if dt <= 0:
            return
        inst = max(0, done - d0) / dt
        w = 1.0 - math.exp(-dt / self.tau)
        self.rate = inst if self.rate is None else self.rate + w * (inst - self.rate)
        self._last = (now, done)

    def reset(self) -> None:
        self.rate = None
        self._last = None

    def eta(self, done: int, total: int) -> float | None:
        """Seconds to completion at the current rate (None while unknown or stalled)."""
        if done >= total:
            return 0.0
        if not self.rate or self.rate <= 0:
            return None
        return (total - done) / self.rate
