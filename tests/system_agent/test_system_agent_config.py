"""The system agent's configuration: the CAN state source, validated with the file, key and reason."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agent.errors import ConfigurationError
from agent.runtime.config import load_config
from system_agent.config import SystemConfig
from system_agent.signals import DEFAULT_SIGNALS, SignalSpec


def write(tmp_path: Path, section: dict[str, object]) -> Path:
    path = tmp_path / "stack.yaml"
    path.write_text(yaml.safe_dump({"system_agent": section}))
    return path


def test_can_source_with_defaults_and_own_signals(tmp_path: Path) -> None:
    cfg = load_config(SystemConfig, "system_agent", write(tmp_path, {
        "state_source": "can", "power_hold_file": "/run/x/hold.json",
        "can": {"vehicle_config": "/etc/v.yaml", "dbc": "/etc/v.dbc", "stale_after": 0.5,
                "signals": {"charging": {"message": "BATTERY_STATUS", "signal": "Charging", "kind": "bool"}}}}))
    assert cfg.state_source == "can" and cfg.can is not None
    assert (cfg.can.dbc, cfg.can.stale_after, cfg.can.stale_factor) == (Path("/etc/v.dbc"), 0.5, 5.0)
    assert cfg.can.signals == (SignalSpec("charging", "BATTERY_STATUS", "Charging", "bool"),)
    assert cfg.power_hold_file == Path("/run/x/hold.json")
    default = load_config(SystemConfig, "system_agent", write(tmp_path, {
        "state_source": "can", "can": {"vehicle_config": "/etc/v.yaml", "dbc": "/etc/v.dbc"}}))
    assert default.can is not None and default.can.signals == DEFAULT_SIGNALS


@pytest.mark.parametrize("section, key, reason", [
    ({"state_source": "can"}, "system_agent.state_source", "needs the can: section"),
    ({"state_source": "bus"}, "system_agent.state_source", "must be one of can, file"),
    ({"can": {"vehicle_config": "/v", "dbc": "/d", "stale_factor": 1}}, "system_agent.can.stale_factor",
     "must be >= 1.5"),
    ({"can": {"vehicle_config": "/v", "dbc": "rel.dbc"}}, "system_agent.can.dbc", "absolute path"),
    ({"can": {"vehicle_config": "/v", "dbc": "/d", "signals": {"x": {"message": "M", "signal": "S", "kind": "int"}}}},
     "system_agent.can.signals.x.kind", "must be one of auto, bool"),
    ({"can": {"vehicle_config": "/v", "dbc": "/d", "stale": 3}}, "system_agent.can", "unknown key 'stale'"),
])
def test_bad_config_names_file_key_and_reason(tmp_path: Path, section: dict[str, object], key: str,
                                              reason: str) -> None:
    with pytest.raises(ConfigurationError) as e:
        load_config(SystemConfig, "system_agent", write(tmp_path, section))
    assert reason in str(e.value) and key in str(e.value) and "stack.yaml" in str(e.value)
