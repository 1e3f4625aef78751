"""``ota-update-agent`` configuration: the ``update_agent`` section of the stack's YAML file.

::

    update_agent:
      vehicle_config: /etc/ota-agent/vehicle.yaml   # default: $OTA_VEHICLE_CONFIG, else the bench vehicle
      config_items: /etc/ota-agent/config-items.yaml  # remote configuration items, loaded at start; when
                                                    #   not set: $OTA_CONFIG_ITEMS, else the bench items,
                                                    #   loaded on the first configuration request
      state_dir: /var/lib/ota-update-agent          # job table + version store; default: see
                                                    #   update_agent.state_dir (env, StateDirectory=)
      baselines:                                    # defaults for update_agent.baseline.match
        hardware: /etc/ota-agent/hw-baseline.xml
        software: /etc/ota-agent/sw-baseline.xml
      jobs:
        history_limit: 1000                         # finished jobs kept for job.status
        progress_rate: 10                           # job.progress events per second per job, at most
      versions:
        uds_timeout: 2.0                            # s per ECU (default: each ECU's request_timeout)
      watchdog:
        worker_deadline: 60                         # s; a flash worker gets at least the longest
                                                    #   NRC 0x78 chain of its ECUs on top
      linux_ecus:                                   # Linux ECUs reached over SOME/IP (independent download,
        ivi: {instance: 1}                          #   update_agent.linux_jobs): "OTA secondary" instance
      someip: {address: 127.0.0.21, sd: {group: 224.224.224.245, port: 30490}}   # this node, with linux_ecus
      linux_timeouts: {call: 30, connect: 10, notification: 5, download: 3600}   # s (update_agent.linux_jobs)

Relative paths are relative to the config file. The vehicle config is loaded at start
(and on SIGHUP), so a bad one stops the daemon with the file, key and reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config.locate import vehicle_config_path
from agent.config.node import Node
from agent.runtime.config import DaemonConfig
from update_agent.linux_jobs import LinuxEcuSettings, parse_settings
from update_agent.state_dir import state_dir


def _path(node: Node, key: str) -> Path | None:
    value = node.get(key, str, None)
    if value is None:
        return None
    p = Path(value)
    if not p.is_absolute():
        base = (Path(node.source).resolve().parent if node.source and not node.source.startswith("(")
                else Path.cwd())
        p = base / p
    return p


@dataclass(frozen=True, kw_only=True)
class UpdateAgentConfig(DaemonConfig):
    vehicle_config: Path
    state_dir: Path
    config_items: Path | None = None
    hardware_baseline: Path | None = None
    software_baseline: Path | None = None
    history_limit: int = 1000
    progress_rate: float = 10.0
    uds_timeout: float | None = None
    linux: LinuxEcuSettings | None = None

    @classmethod
    def own_fields(cls, node: Node) -> dict[str, Any]:
        baselines = node.child("baselines", {})
        jobs = node.child("jobs", {})
        versions = node.child("versions", {})
        fields: dict[str, Any] = {
            "vehicle_config": _path(node, "vehicle_config") or vehicle_config_path(None),
            "state_dir": _path(node, "state_dir") or state_dir(None),
            "config_items": _path(node, "config_items"),
            "hardware_baseline": _path(baselines, "hardware"),
            "software_baseline": _path(baselines, "software"),
            "history_limit": jobs.integer("history_limit", 1000, minimum=1, maximum=1_000_000),
            "progress_rate": jobs.number("progress_rate", 10.0, minimum=0.1, maximum=1000.0),
            "uds_timeout": (versions.number("uds_timeout", minimum=0.01, maximum=600.0)
                            if versions.has("uds_timeout") else None),
        }
        for child in (baselines, jobs, versions):
            child.done()
        fields["linux"] = parse_settings(node)
        return fields
