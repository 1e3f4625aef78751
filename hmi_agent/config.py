"""``ota-hmi-agent`` configuration: the ``hmi_agent`` section of the stack's YAML file.

::

    hmi_agent:
      policy: ask                          # ask | auto_accept (bench, workshop)
      db: /var/lib/ota-agent/hmi.db        # offers and the audit trail (default: $STATE_DIRECTORY/hmi.db)

Plus the keys every daemon has (see :mod:`agent.runtime.config`). Issue 7 adds
postpone limits, maintenance windows and deadlines here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config.node import Node
from agent.runtime.config import DaemonConfig
from hmi_agent.consent import POLICIES

DEFAULT_DB = Path("/var/lib/ota-agent/hmi.db")


@dataclass(frozen=True, kw_only=True)
class HmiConfig(DaemonConfig):
    policy: str = "ask"
    db: Path = DEFAULT_DB

    @classmethod
    def own_fields(cls, node: Node) -> dict[str, Any]:
        state = os.environ.get("STATE_DIRECTORY")
        default = Path(state.split(":")[0]) / "hmi.db" if state else DEFAULT_DB
        db = node.get("db", str, str(default))
        if not Path(db).is_absolute():
            raise node.error(f"must be an absolute path, got {db!r}", "db")
        return {"policy": node.choice("policy", POLICIES, "ask"), "db": Path(db)}
