"""``ota-hmi-agent`` configuration: the ``hmi_agent`` section of the stack's YAML file.

::

    hmi_agent:
      policy: ask                   # ask | auto_accept (bench, workshop) | maintenance_window
      db: /var/lib/ota-agent/hmi.db # offers and the audit trail (default: $STATE_DIRECTORY/hmi.db)
      postpone: {limit: 3, interval: 14400}   # postponements per offer; s until it is asked again
      maintenance_windows: ["02:00-04:00"]    # daily local HH:MM-HH:MM or ISO START/END intervals
      mandatory: false              # bench fallback: offers that do not say are mandatory
      deadline_after: 604800        # s after the first offer a mandatory offer without a deadline is due
      someip: {enabled: false, ...}  # the head-unit service (hmi_agent/someip_service.py SomeIpSettings)

A mandatory offer past its deadline proceeds at the next maintenance window
without asking (at once when none is configured). The release's own ``mandatory`` /
``deadline`` (signed by the Director, carried by the offer) win over these two keys,
which apply only when the offer does not say. Plus the keys every daemon has
(see :mod:`agent.runtime.config`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.config.node import Node
from agent.runtime.config import DaemonConfig
from hmi_agent.consent import POLICIES, Rules
from hmi_agent.someip_service import SomeIpSettings, parse_someip
from hmi_agent.windows import WindowError, parse_window

DEFAULT_DB = Path("/var/lib/ota-agent/hmi.db")


@dataclass(frozen=True, kw_only=True)
class HmiConfig(DaemonConfig):
    policy: str = "ask"
    db: Path = DEFAULT_DB
    rules: Rules = field(default_factory=Rules)
    someip: SomeIpSettings = field(default_factory=SomeIpSettings)

    @classmethod
    def own_fields(cls, node: Node) -> dict[str, Any]:
        state = os.environ.get("STATE_DIRECTORY")
        default = Path(state.split(":")[0]) / "hmi.db" if state else DEFAULT_DB
        db = node.get("db", str, str(default))
        if not Path(db).is_absolute():
            raise node.error(f"must be an absolute path, got {db!r}", "db")
        postpone = node.child("postpone", {})
        limit = postpone.integer("limit", 3, minimum=0, maximum=100)
        interval = postpone.number("interval", 4 * 3600.0, minimum=0.0, maximum=30 * 86400.0)
        postpone.done()
        specs = node.raw("maintenance_windows", [])
        if not isinstance(specs, list) or not all(isinstance(s, str) for s in specs):
            raise node.error(f"expected a list of windows (strings), got {specs!r}", "maintenance_windows")
        windows = []
        for i, spec in enumerate(specs):
            try:
                windows.append(parse_window(spec))
            except WindowError as e:
                raise node.error(str(e), f"maintenance_windows[{i}]") from e
        policy = node.choice("policy", POLICIES, "ask")
        if policy == "maintenance_window" and not windows:
            raise node.error("policy maintenance_window needs at least one entry in maintenance_windows", "policy")
        deadline_after = node.number("deadline_after", None, minimum=0.0) if node.has("deadline_after") else None
        rules = Rules(postpone_limit=limit, postpone_interval=interval, maintenance_windows=tuple(windows),
                      mandatory=node.get("mandatory", bool, False), deadline_after=deadline_after)
        someip = parse_someip(node.child("someip", {}))
        return {"policy": policy, "db": Path(db), "rules": rules, "someip": someip}
