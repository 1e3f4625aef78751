"""Fault injection at run time: which request a configured fault hits, and how often.

Each knob of :class:`~bench.ecu.simconfig.FaultConfig` fires a bounded number
of times (``times``), then the ECU behaves again, so a tester's bounded retry
can be shown to succeed. Counters live for the life of the simulator process.
"""

from __future__ import annotations

import logging
from collections import Counter

from bench.ecu.simconfig import FaultConfig, Switch

log = logging.getLogger(__name__)


class _Shots:
    """How many times a knob may still fire (None: always)."""

    def __init__(self, times: int | None) -> None:
        self.left = times

    def fire(self) -> bool:
        if self.left is None:
            return True
        if self.left <= 0:
            return False
        self.left -= 1
        return True


class FaultPlan:
    """The faults of one ECU and how many shots each has left."""

    def __init__(self, config: FaultConfig, ecu: str = "") -> None:
        self.config = config
        self.ecu = ecu
        self._requests: Counter[int] = Counter()
        self._drops = [(d, _Shots(d.times)) for d in config.drop_response]
        self._storms = [(s, _Shots(s.times)) for s in config.pending_storm]
        self._block_nrcs = [(f, _Shots(f.times)) for f in config.nrc_on_block]
        self._resets = [(f, _Shots(f.times)) for f in config.reset_mid_transfer]
        self._refusals = [(f, _Shots(f.times)) for f in config.refuse_config_write]
        self._refused_requests = [(f, _Shots(f.times)) for f in config.refuse_request]
        self._slow = _Shots(config.erase_time.times) if config.erase_time else None
        self._switches = {name: _Shots(sw.times) for name, sw in (
            ("wrong_crc", config.wrong_crc), ("refuse_security", config.refuse_security),
            ("preconditions_fail", config.preconditions_fail),
            ("ignore_config_broadcast", config.ignore_config_broadcast)) if isinstance(sw, Switch)}
        #: every fault that fired, for the status file and the log: (knob, detail)
        self.fired: list[tuple[str, str]] = []

    def _note(self, knob: str, detail: str) -> None:
        self.fired.append((knob, detail))
        log.warning("%s: fault %s fired (%s)", self.ecu, knob, detail)

    def count_request(self, service: int) -> None:
        """Count a request of ``service``; call once per request, before :meth:`drop_response`."""
        self._requests[service] += 1

    def drop_response(self, service: int) -> bool:
        """True if the final response to the current request of ``service`` is to be lost."""
        n = self._requests[service]
        for drop, shots in self._drops:
            if drop.service == service and n >= drop.count and shots.fire():
                self._note("drop_response", f"service {service:#04x} request #{n}")
                return True
        return False

    def pending_storm(self, service: int) -> int:
        """How many NRC 0x78 come before the answer to the current request of ``service`` (0: none)."""
        n = self._requests[service]
        for storm, shots in self._storms:
            if storm.service == service and n >= storm.count and shots.fire():
                self._note("pending_storm", f"service {service:#04x} request #{n}: {storm.pendings} x NRC 0x78")
                return storm.pendings
        return 0

    def nrc_on_block(self, block: int) -> int | None:
        for fault, shots in self._block_nrcs:
            if fault.block == block and shots.fire():
                self._note("nrc_on_block", f"block {block} -> NRC {fault.nrc:#04x}")
                return fault.nrc
        return None

    def reset_at_block(self, block: int) -> bool:
        for fault, shots in self._resets:
            if fault.block == block and shots.fire():
                self._note("reset_mid_transfer", f"block {block}")
                return True
        return False

    def erase_time(self, default: float) -> float:
        slow = self.config.erase_time
        if slow is not None and self._slow is not None and self._slow.fire():
            self._note("erase_time", f"{slow.seconds} s")
            return slow.seconds
        return default

    def config_write_nrc(self, did: int) -> int | None:
        """The NRC to refuse a write of configuration DID ``did`` with, or None to accept it."""
        for fault, shots in self._refusals:
            if fault.did in (None, did) and shots.fire():
                self._note("refuse_config_write", f"DID {did:#06x} -> NRC {fault.nrc:#04x}")
                return fault.nrc
        return None

    def request_nrc(self, service: int) -> int | None:
        """The NRC to refuse the current request of ``service`` with, or None to carry it out."""
        n = self._requests[service]
        for fault, shots in self._refused_requests:
            if fault.service == service and n >= fault.count and shots.fire():
                self._note("refuse_request", f"service {service:#04x} request #{n} -> NRC {fault.nrc:#04x}")
                return fault.nrc
        return None

    def switch(self, name: str) -> bool:
        """True if the on/off knob ``name`` (wrong_crc, refuse_security, preconditions_fail,
        ignore_config_broadcast) fires now."""
        shots = self._switches.get(name)
        if shots is not None and shots.fire():
            self._note(name, "on")
            return True
        return False
