"""atheris: bytes as a vehicle config file and as a daemon's stack config file."""

from __future__ import annotations

import tempfile
from pathlib import Path

import atheris

# third-party code is imported before the instrumented block: the project's parsers are the target
import yaml  # noqa: F401
from _harness import PROJECT, run

with atheris.instrument_imports(include=PROJECT):
    from agent.config.vehicle import load_vehicle_config
    from agent.runtime.config import load_config
    from update_agent.daemon_config import UpdateAgentConfig


DIR = Path(tempfile.mkdtemp(prefix="fuzz-config-"))


def target(data: bytes) -> None:
    path = DIR / "c.yaml"
    path.write_bytes(data)
    if data[:1] == b"s":
        load_config(UpdateAgentConfig, "update_agent", path, env={"OTA_RUNTIME_DIR": str(DIR)})
    else:
        load_vehicle_config(path)


if __name__ == "__main__":
    run(target)
