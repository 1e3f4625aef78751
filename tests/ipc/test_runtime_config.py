"""Daemon configuration: defaults, the runtime dir override, a daemon's own keys, and clear errors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.config.node import Node
from agent.errors import ConfigurationError
from agent.ipc.paths import DEFAULT_RUNTIME_DIR, runtime_dir, socket_path
from agent.runtime.config import DaemonConfig, load_config


@dataclass(frozen=True, kw_only=True)
class DmConfig(DaemonConfig):
    cache_dir: Path
    max_concurrent: int = 4

    @classmethod
    def own_fields(cls, node: Node) -> dict[str, Any]:
        return {"cache_dir": Path(node.get("cache_dir", str, "/var/lib/ota-agent/cache")),
                "max_concurrent": node.integer("max_concurrent", 4, minimum=1, maximum=64)}


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_put_the_socket_in_the_board_runtime_dir() -> None:
    config = load_config(DmConfig, "dmclient", None, env={})
    assert config.runtime_dir == DEFAULT_RUNTIME_DIR == Path("/run/ota-agent")
    assert config.ipc.socket == Path("/run/ota-agent/dmclient.sock")
    assert config.ipc.mode == 0o660 and config.ipc.allowed_uids is None
    assert (config.log_level, config.worker_deadline, config.cache_dir) == \
        ("info", 60.0, Path("/var/lib/ota-agent/cache"))


def test_the_environment_overrides_the_configured_runtime_dir(tmp_path: Path) -> None:
    path = write(tmp_path, {"runtime": {"dir": "/srv/run"}})
    assert load_config(DmConfig, "dmclient", path, env={}).ipc.socket == Path("/srv/run/dmclient.sock")
    env = {"OTA_RUNTIME_DIR": str(tmp_path)}
    assert load_config(DmConfig, "dmclient", path, env=env).ipc.socket == tmp_path / "dmclient.sock"
    assert socket_path("hmi_agent", env=env) == tmp_path / "hmi_agent.sock"
    with pytest.raises(ConfigurationError, match=r"\$OTA_RUNTIME_DIR must be an absolute path"):
        runtime_dir(env={"OTA_RUNTIME_DIR": "relative"})


def test_a_full_section(tmp_path: Path) -> None:
    path = write(tmp_path, {
        "runtime": {"log_level": "warning"},
        "dmclient": {
            "log_level": "debug", "shutdown_timeout": 3,
            "ipc": {"socket": "/tmp/dm.sock", "mode": "0o640", "group": 0,
                    "allowed_users": ["root", 990], "allowed_groups": [0], "max_message_bytes": 65536},
            "watchdog": {"worker_deadline": 30},
            "cache_dir": "/data/cache", "max_concurrent": 8,
        },
        "hmi_agent": {"anything": "is the hmi agent's business"},
    })
    config = load_config(DmConfig, "dmclient", path, env={})
    assert config.source == str(path)
    assert (config.log_level, config.shutdown_timeout, config.worker_deadline) == ("debug", 3.0, 30.0)
    assert config.ipc.socket == Path("/tmp/dm.sock") and config.ipc.mode == 0o640 and config.ipc.group == 0
    assert config.ipc.allowed_uids == frozenset({0, 990}) and config.ipc.allowed_gids == frozenset({0})
    assert (config.cache_dir, config.max_concurrent) == (Path("/data/cache"), 8)
    other = load_config(DaemonConfig, "update_agent", path, env={})
    assert other.log_level == "warning"  # from runtime.log_level


def test_yaml_octal_mode(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("dmclient:\n  ipc:\n    mode: 0600\n")
    assert load_config(DmConfig, "dmclient", path, env={}).ipc.mode == 0o600


@pytest.mark.parametrize(("data", "message"), [
    ({"dmclinet": {}}, "unknown section 'dmclinet'"),
    ({"dmclient": {"colour": 1}}, "dmclient: unknown key 'colour'"),
    ({"dmclient": {"ipc": {"mode": 660}}}, "dmclient.ipc.mode: file mode must be within 0000..0777"),
    ({"dmclient": {"ipc": {"mode": "rw-rw----"}}}, "dmclient.ipc.mode: expected an octal file mode"),
    ({"dmclient": {"ipc": {"mode": "0060"}}}, "leaves the owner unable to use the socket"),
    ({"dmclient": {"ipc": {"allowed_users": ["no-such-user-xyz"]}}},
     "dmclient.ipc.allowed_users[0]: no such user 'no-such-user-xyz' on this system"),
    ({"dmclient": {"ipc": {"allowed_groups": "ota"}}}, "dmclient.ipc.allowed_groups: expected a list"),
    ({"dmclient": {"ipc": {"group": True}}}, "dmclient.ipc.group: expected a group name or id"),
    ({"dmclient": {"ipc": {"socket": "/tmp/" + "s" * 120}}}, "dmclient.ipc.socket: socket path is"),
    ({"dmclient": {"ipc": {"max_message_bytes": 10}}}, "dmclient.ipc.max_message_bytes: must be in"),
    ({"dmclient": {"log_level": "loud"}}, "dmclient.log_level: must be one of debug, info, warning, error"),
    ({"dmclient": {"watchdog": {"worker_deadline": 0}}}, "dmclient.watchdog.worker_deadline: must be >= "),
    ({"dmclient": {"max_concurrent": 0}}, "dmclient.max_concurrent: must be in [1, 64]"),
    ({"runtime": {"dir": "run"}}, "runtime.dir: must be an absolute path, got 'run'"),
])
def test_errors_name_the_file_the_key_and_the_reason(tmp_path: Path, data: dict[str, Any], message: str) -> None:
    path = write(tmp_path, data)
    with pytest.raises(ConfigurationError) as info:
        load_config(DmConfig, "dmclient", path, env={})
    assert message in str(info.value)
    assert str(info.value).startswith(str(path))


def test_a_missing_file_is_an_error_not_the_defaults(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"cannot read"):
        load_config(DmConfig, "dmclient", tmp_path / "absent.yaml", env={})


def test_a_client_finds_a_peers_socket_without_judging_the_peers_own_keys(tmp_path: Path) -> None:
    from agent.runtime.config import peer_socket

    path = write(tmp_path, {"runtime": {"dir": "/srv/run"},
                            "dmclient": {"cache_dir": "/data", "ipc": {"socket": "dm.sock"}}})
    assert peer_socket("dmclient", path, env={}) == Path("/srv/run/dm.sock")
    assert peer_socket("hmi_agent", path, env={}) == Path("/srv/run/hmi_agent.sock")
    assert peer_socket("dmclient", None, env={"OTA_RUNTIME_DIR": "/tmp/x"}) == Path("/tmp/x/dmclient.sock")
    with pytest.raises(ConfigurationError, match=r"unknown key 'cache_dir'"):
        load_config(DaemonConfig, "dmclient", path, env={})  # only the daemon's own class knows its keys
