"""atheris: bytes into the software and hardware baseline XML loaders."""

from __future__ import annotations

import atheris

# third-party code is imported before the instrumented block: the project's parsers are the target
import lxml.etree  # noqa: F401
from _harness import PROJECT, run

with atheris.instrument_imports(include=PROJECT):
    from update_agent.baseline.loading import parse_hardware_baseline, parse_software_baseline


def target(data: bytes) -> None:
    parse = parse_hardware_baseline if data[:1] == b"H" else parse_software_baseline
    parse(data, source="atheris")


if __name__ == "__main__":
    run(target)
