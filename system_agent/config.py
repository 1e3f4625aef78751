"""``ota-system-agent`` configuration: the ``system_agent`` section of the stack's YAML file.

::

    system_agent:
      state_file: /run/ota-agent/vehicle-state.yaml   # issue 6: the bench vehicle state (signal: value)
      state_dir: /var/lib/ota-agent/system-agent      # OTA mode, persisted (default: $STATE_DIRECTORY)
      tester_present_interval: 2.0                    # s between functional TesterPresent in OTA mode
      max_lease: 600                                  # s, the longest lease an engine may ask for
      rules:                                          # see system_agent.preconditions
        download: [...]
        install: [...]

Plus the keys every daemon has (see :mod:`agent.runtime.config`). Issue 7 adds the
CAN vehicle-state source (DBC, signal ages) beside ``state_file``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.config.node import Node
from agent.runtime.config import DaemonConfig
from system_agent.preconditions import PHASES, Rule, parse_rules

DEFAULT_STATE_DIR = Path("/var/lib/ota-agent/system-agent")


def _abs(node: Node, key: str, default: Path) -> Path:
    value = node.get(key, str, str(default))
    if not Path(value).is_absolute():
        raise node.error(f"must be an absolute path, got {value!r}", key)
    return Path(value)


@dataclass(frozen=True, kw_only=True)
class SystemConfig(DaemonConfig):
    state_file: Path = Path("/run/ota-agent/vehicle-state.yaml")
    state_dir: Path = DEFAULT_STATE_DIR
    tester_present_interval: float = 2.0
    max_lease: float = 600.0
    rules: dict[str, tuple[Rule, ...]] = field(default_factory=lambda: {p: () for p in PHASES})

    @classmethod
    def own_fields(cls, node: Node) -> dict[str, Any]:
        env_state = os.environ.get("STATE_DIRECTORY")
        default_dir = Path(env_state.split(":")[0]) / "system-agent" if env_state else DEFAULT_STATE_DIR
        return {
            "state_file": _abs(node, "state_file", Path("/run/ota-agent/vehicle-state.yaml")),
            "state_dir": _abs(node, "state_dir", default_dir),
            "tester_present_interval": node.number("tester_present_interval", 2.0, minimum=0.05, maximum=60),
            "max_lease": node.number("max_lease", 600.0, minimum=1, maximum=86400),
            "rules": parse_rules(node.child("rules", {})),
        }
