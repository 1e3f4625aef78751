"""``ota-system-agent`` configuration: the ``system_agent`` section of the stack's YAML file.

::

    system_agent:
      state_source: can                               # can (DBC signals from the buses) | file (state_file)
      state_file: /run/ota-agent/vehicle-state.yaml   # state_source file: a YAML mapping signal: value
      can:                                            # state_source can (and the OTA-mode frame)
        vehicle_config: /etc/ota-agent/vehicle.yaml   # its buses: listened on, OTA mode sent on
        dbc: /etc/ota-agent/vehicle.dbc
        stale_factor: 5          # a message is stale after GenMsgCycleTime x this ...
        stale_after: 0.5         # ... or after this many s (overrides the factor)
        ota_mode_message: OTA_MODE
        signals:                 # default: system_agent.signals.DEFAULT_SIGNALS (the bench DBC)
          vehicle_speed: {message: VEHICLE_DYNAMICS, signal: VehicleSpeed}
          charging: {message: BATTERY_STATUS, signal: Charging, kind: bool}
      power_hold_file: /run/ota-agent/power-hold.json  # keep-awake request the gateway honours
      network: {url: "https://backend:443", interval: 5, timeout: 2}  # signal network_reachable
      state_dir: /var/lib/ota-agent/system-agent      # OTA mode, persisted (default: $STATE_DIRECTORY)
      tester_present_interval: 2.0                    # s between functional TesterPresent in OTA mode
      max_lease: 600                                  # s, the longest lease an engine may ask for
      rules:                                          # see system_agent.preconditions
        download: [...]
        install: [...]

Plus the keys every daemon has (see :mod:`agent.runtime.config`). ``state_source: file``
serves a desk without a bus (and the issue-6 tests); the bench and a car use ``can``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.config.node import Node
from agent.runtime.config import DaemonConfig
from system_agent.preconditions import PHASES, Rule, parse_rules
from system_agent.signals import DEFAULT_SIGNALS, KINDS, SignalSpec

DEFAULT_STATE_DIR = Path("/var/lib/ota-agent/system-agent")


def _abs(node: Node, key: str, default: Path) -> Path:
    value = node.get(key, str, str(default))
    if not Path(value).is_absolute():
        raise node.error(f"must be an absolute path, got {value!r}", key)
    return Path(value)


@dataclass(frozen=True)
class CanStateConfig:
    vehicle_config: Path
    dbc: Path
    stale_factor: float = 5.0
    stale_after: float | None = None
    ota_mode_message: str = "OTA_MODE"
    signals: tuple[SignalSpec, ...] = DEFAULT_SIGNALS


def _signal(name: str, node: Node) -> SignalSpec:
    spec = SignalSpec(name, node.get("message", str), node.get("signal", str), node.choice("kind", KINDS, "auto"))
    node.done()
    return spec


def parse_can(node: Node) -> CanStateConfig:
    signals = DEFAULT_SIGNALS
    if node.has("signals"):
        signals = tuple(_signal(name, child) for name, child in node.children("signals"))
    cfg = CanStateConfig(
        vehicle_config=_abs(node, "vehicle_config", Path("/etc/ota-agent/vehicle.yaml")),
        dbc=_abs(node, "dbc", Path("/etc/ota-agent/vehicle.dbc")),
        stale_factor=node.number("stale_factor", 5.0, minimum=1.5, maximum=100),
        stale_after=node.number("stale_after", minimum=0.01, maximum=60) if node.has("stale_after") else None,
        ota_mode_message=node.get("ota_mode_message", str, "OTA_MODE"),
        signals=signals,
    )
    node.done()
    return cfg


@dataclass(frozen=True)
class NetworkConfig:
    url: str
    interval: float = 5.0
    timeout: float = 2.0


def parse_network(node: Node) -> NetworkConfig:
    cfg = NetworkConfig(node.get("url", str), node.number("interval", 5.0, minimum=0.1, maximum=3600),
                        node.number("timeout", 2.0, minimum=0.05, maximum=60))
    node.done()
    return cfg


@dataclass(frozen=True, kw_only=True)
class SystemConfig(DaemonConfig):
    state_source: str = "file"
    can: CanStateConfig | None = None
    power_hold_file: Path = Path("/run/ota-agent/power-hold.json")
    network: NetworkConfig | None = None
    state_file: Path = Path("/run/ota-agent/vehicle-state.yaml")
    state_dir: Path = DEFAULT_STATE_DIR
    tester_present_interval: float = 2.0
    max_lease: float = 600.0
    rules: dict[str, tuple[Rule, ...]] = field(default_factory=lambda: {p: () for p in PHASES})

    @classmethod
    def own_fields(cls, node: Node) -> dict[str, Any]:
        env_state = os.environ.get("STATE_DIRECTORY")
        default_dir = Path(env_state.split(":")[0]) / "system-agent" if env_state else DEFAULT_STATE_DIR
        source = node.choice("state_source", ("can", "file"), "file")
        can = parse_can(node.child("can")) if node.has("can") else None
        if source == "can" and can is None:
            raise node.error("state_source can needs the can: section (vehicle_config, dbc)", "state_source")
        return {
            "state_source": source,
            "can": can,
            "power_hold_file": _abs(node, "power_hold_file", Path("/run/ota-agent/power-hold.json")),
            "network": parse_network(node.child("network")) if node.has("network") else None,
            "state_file": _abs(node, "state_file", Path("/run/ota-agent/vehicle-state.yaml")),
            "state_dir": _abs(node, "state_dir", default_dir),
            "tester_present_interval": node.number("tester_present_interval", 2.0, minimum=0.05, maximum=60),
            "max_lease": node.number("max_lease", 600.0, minimum=1, maximum=86400),
            "rules": parse_rules(node.child("rules", {})),
        }
