"""Shared by the atheris harnesses in this directory (each runs as a script).

``run(target, allowed)`` fuzzes ``target(data: bytes)``: any exception not in ``allowed`` (or one
without a message) is a finding and atheris stops with the input saved as ``crash-*``. libFuzzer
options pass through: ``python fuzz_images.py -runs=100000 -max_len=4096 corpus/``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import atheris

from agent.errors import OtaError

#: what the harnesses instrument (``atheris.instrument_imports(include=PROJECT)``): the project's packages only.
#: Instrumenting everything imported in the block (asyncio, ssl, logging... with it) costs tens of seconds
#: of start-up per harness and finds nothing in the project.
PROJECT = ["agent", "bench", "dmclient", "hmi_agent", "system_agent", "update_agent"]


def run(target: Callable[[bytes], object], allowed: tuple[type[BaseException], ...] = (OtaError,)) -> None:
    def one_input(data: bytes) -> None:
        try:
            target(data)
        except allowed as e:
            if not str(e).strip():
                raise AssertionError(f"{type(e).__name__} without a message") from e

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
