"""SOME/IP-SD announcement phases: initial wait, repetition, main (PRS_SOMEIPSD "Startup Behavior").

:class:`Announcer` says when an Offer (server) or a Find (client) is due. It is a pure state
machine driven by the caller's clock: ``start(now)`` enters the initial wait phase with a delay
drawn from the injected RNG in [initial_delay_min, initial_delay_max]; each ``poll(now)`` that
reaches the deadline returns True (send now) and moves on: the repetition phase sends up to
``repetitions_max`` more times, waiting ``repetitions_base_delay * 2**n`` before the n-th; the main
phase (offers only) repeats every ``cyclic_offer_delay``. A client's find stops after the
repetition phase, or when ``stop()`` is called because an offer arrived.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from agent.errors import ConfigurationError


@dataclass(frozen=True)
class SdTiming:
    """SD timing parameters, in seconds (TTL in whole seconds, as on the wire)."""

    initial_delay_min: float = 0.010
    initial_delay_max: float = 0.050
    repetitions_base_delay: float = 0.030
    repetitions_max: int = 3
    cyclic_offer_delay: float = 1.0
    ttl: int = 3

    def __post_init__(self) -> None:
        if not 0 <= self.initial_delay_min <= self.initial_delay_max:
            raise ConfigurationError("need 0 <= initial_delay_min <= initial_delay_max", key="someip.sd")
        if self.repetitions_base_delay <= 0 or self.repetitions_max < 0 or self.cyclic_offer_delay <= 0:
            raise ConfigurationError("repetition and cyclic delays must be > 0, repetitions_max >= 0",
                                     key="someip.sd")
        if not 1 <= self.ttl <= 0xFFFFFF:
            raise ConfigurationError(f"ttl {self.ttl} out of 1..0xFFFFFF", key="someip.sd.ttl")
        if self.cyclic_offer_delay >= self.ttl:
            raise ConfigurationError("cyclic_offer_delay must be shorter than the ttl, or offers expire between two",
                                     key="someip.sd")


class Phase(enum.Enum):
    DOWN = "down"
    INITIAL_WAIT = "initial wait"
    REPETITION = "repetition"
    MAIN = "main"
    DONE = "done"


class Announcer:
    """When to send the next Offer (``cyclic=True``) or Find (``cyclic=False``)."""

    def __init__(self, timing: SdTiming, rng: random.Random, *, cyclic: bool) -> None:
        self.timing = timing
        self.rng = rng
        self.cyclic = cyclic
        self.phase = Phase.DOWN
        self.deadline: float | None = None
        self.repetitions = 0

    def start(self, now: float) -> None:
        self.phase = Phase.INITIAL_WAIT
        self.repetitions = 0
        self.deadline = now + self.rng.uniform(self.timing.initial_delay_min, self.timing.initial_delay_max)

    def stop(self) -> None:
        self.phase = Phase.DOWN
        self.deadline = None

    def poll(self, now: float) -> bool:
        """True if a message is due at ``now``; advances to the next deadline."""
        if self.deadline is None or now < self.deadline:
            return False
        due = self.deadline
        if self.phase in (Phase.INITIAL_WAIT, Phase.REPETITION):
            if self.phase == Phase.REPETITION:
                self.repetitions += 1
            if self.repetitions < self.timing.repetitions_max:
                self.phase = Phase.REPETITION
                self.deadline = due + self.timing.repetitions_base_delay * (2 ** self.repetitions)
            else:
                self._after_repetitions(due)
        else:  # MAIN
            self.deadline = due + self.timing.cyclic_offer_delay
        return True

    def _after_repetitions(self, due: float) -> None:
        if self.cyclic:
            self.phase = Phase.MAIN
            self.deadline = due + self.timing.cyclic_offer_delay
        else:
            self.phase = Phase.DONE
            self.deadline = None
