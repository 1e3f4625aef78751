"""``ota-agent`` configuration: the ``agent`` section of the stack's YAML file.

::

    agent:
      journal: /var/lib/ota-agent/journal.db   # the campaign journal (SQLite)
      vehicle_config: /etc/ota-agent/vehicle.yaml  # buses and ECUs: grouping by bus, A/B or single bank
      baseline: /etc/ota-agent/sw-baseline.xml # the software baseline the current version is matched with
      campaign:
        flash_attempts: 2        # flashes of one ECU before it is rolled back
        rollback_attempts: 2     # rollbacks of one ECU before the campaign reports a mixed baseline
        loop_limit: 3            # interruptions (engine crashes) of one step before the loop breaker
        all_or_nothing: true     # a failed ECU rolls back every ECU already updated
        install_last: [gateway]  # ECUs flashed after every other one (in this order)
        repeat: false            # after a success, check again and continue along the route
        max_repeats: 10          # bound on campaigns chained by 'repeat'
      ota_mode_lease: 30         # s of the OTA-mode lease, renewed every lease/3 while installing
      poll_interval: 0.2         # s between status polls of downloads and jobs
      job_timeout: 900           # s a flash / rollback job may take before it counts as failed
      install:                   # otactl install DIR (release directory, offline)
        image_root: /etc/ota-agent/image-root.json   # the vehicle's trusted Image repository root
        work_dir: /var/lib/ota-agent/install         # verified metadata and images

Relative paths are relative to the config file. Plus the keys every daemon has
(``log_level``, ``ipc``, ``watchdog``...: see :mod:`agent.runtime.config`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.config.node import Node
from agent.engine.campaign import Policy
from agent.runtime.config import DaemonConfig


def _path(node: Node, key: str, default: str) -> Path:
    p = Path(node.get(key, str, default))
    if not p.is_absolute():
        src = node.source
        base = Path(src).resolve().parent if src and not src.startswith("(") else Path.cwd()
        p = base / p
    return p


@dataclass(frozen=True, kw_only=True)
class AgentConfig(DaemonConfig):
    journal: Path
    vehicle_config: Path
    baseline: Path
    policy: Policy = field(default_factory=Policy)
    repeat: bool = False
    max_repeats: int = 10
    ota_mode_lease: float = 30.0
    poll_interval: float = 0.2
    job_timeout: float = 900.0
    install_root: Path | None = None
    install_dir: Path | None = None

    @classmethod
    def own_fields(cls, node: Node) -> dict[str, Any]:
        camp = node.child("campaign", {})
        last = camp.raw("install_last", [])
        if not isinstance(last, list) or not all(isinstance(x, str) for x in last):
            raise camp.error(f"expected a list of ECU names, got {last!r}", "install_last")
        policy = Policy(flash_attempts=camp.integer("flash_attempts", 2, minimum=1, maximum=10),
                        rollback_attempts=camp.integer("rollback_attempts", 2, minimum=1, maximum=10),
                        loop_limit=camp.integer("loop_limit", 3, minimum=1, maximum=100),
                        all_or_nothing=camp.get("all_or_nothing", bool, True),
                        install_last=tuple(last))
        repeat = camp.get("repeat", bool, False)
        max_repeats = camp.integer("max_repeats", 10, minimum=1, maximum=1000)
        camp.done()
        inst = node.child("install", {})
        install_root = _path(inst, "image_root", "") if inst.has("image_root") else None
        install_dir = _path(inst, "work_dir", "/var/lib/ota-agent/install")
        inst.done()
        return {
            "install_root": install_root, "install_dir": install_dir,
            "journal": _path(node, "journal", "/var/lib/ota-agent/journal.db"),
            "vehicle_config": _path(node, "vehicle_config", "/etc/ota-agent/vehicle.yaml"),
            "baseline": _path(node, "baseline", "/etc/ota-agent/sw-baseline.xml"),
            "policy": policy, "repeat": repeat, "max_repeats": max_repeats,
            "ota_mode_lease": node.number("ota_mode_lease", 30.0, minimum=1.0, maximum=3600.0),
            "poll_interval": node.number("poll_interval", 0.2, minimum=0.01, maximum=10.0),
            "job_timeout": node.number("job_timeout", 900.0, minimum=1.0, maximum=86400.0),
        }
