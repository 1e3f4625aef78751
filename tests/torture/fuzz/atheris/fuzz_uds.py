"""atheris: ECU answers into the update agent's UDS session and its version reading."""

from __future__ import annotations

import collections
from dataclasses import replace
from importlib import resources

import atheris

# third-party code is imported before the instrumented block: the project's parsers are the target
import can  # noqa: F401
import isotp  # noqa: F401
import udsoncan.client  # noqa: F401
import yaml  # noqa: F401
from _harness import PROJECT, run

with atheris.instrument_imports(include=PROJECT):
    from udsoncan.connections import BaseConnection

    from agent.config.vehicle import load_vehicle_config
    from update_agent.uds.client import UdsClientSession
    from update_agent.versions import read_ecu_versions


with resources.as_file(resources.files("configs") / "bench-vehicle.yaml") as _path:
    _ecu = load_vehicle_config(_path).ecu("engine")
ECU = replace(_ecu, timing=replace(_ecu.timing, p2=0.001, p2_star=0.002, request_timeout=0.002,
                                   response_pending_limit=0.05, transfer_retries=1, busy_limit=0.0))


class Answers(BaseConnection):  # type: ignore[misc]
    def __init__(self, answers: list[bytes]) -> None:
        super().__init__("atheris-ecu")
        self.answers = collections.deque(answers)

    def open(self) -> Answers:
        return self

    def close(self) -> None:
        pass

    def is_open(self) -> bool:
        return True

    def empty_rxqueue(self) -> None:
        pass

    def specific_send(self, payload: bytes, timeout: float | None = None) -> None:
        pass

    def specific_wait_frame(self, timeout: float | None = 2) -> bytes | None:
        return self.answers.popleft() if self.answers else None


CALLS = [
    lambda s: s.change_session(3), lambda s: s.ecu_reset(1), lambda s: s.request_seed(0x11),
    lambda s: s.start_routine(0xFF00, b"\x44\x00\x01\x00\x00\x00\x00\x80\x00"),
    lambda s: s.request_download(0x10000, 0x4000, address_bytes=4, length_bytes=4, data_format=0),
    lambda s: s.transfer_data(1, bytes(16)), lambda s: s.request_transfer_exit(),
    lambda s: read_ecu_versions(s, ECU),
]


def target(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    call = CALLS[fdp.ConsumeIntInRange(0, len(CALLS) - 1)]
    answers = [fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 12)) for _ in range(fdp.ConsumeIntInRange(0, 5))]
    call(UdsClientSession(ECU, Answers(answers)))


if __name__ == "__main__":
    run(target)
