"""Daemon configuration: the common mechanics, extended by a dataclass per daemon.

One YAML file serves the stack (``/etc/ota-agent/agent.yaml`` on a board).
A daemon reads the shared ``runtime`` section and its own section; the other
daemons' sections are left to them, and any other top-level key is an error
(a misspelt section must not be ignored)::

    runtime:                      # shared by every daemon (all keys optional)
      dir: /run/ota-agent         # $OTA_RUNTIME_DIR overrides it
      log_level: info             # debug | info | warning | error
    dmclient:
      log_level: debug            # overrides runtime.log_level for this daemon
      shutdown_timeout: 10        # s for in-flight requests at SIGTERM
      ipc:
        socket: dmclient.sock     # relative to the runtime dir, or absolute
        mode: "0660"              # octal, quoted (or YAML 1.1 0660)
        group: ota                # chgrp the socket (name or gid)
        allowed_users: [root, 990]   # SO_PEERCRED uids (names or numbers); default: root + own uid
        allowed_groups: [ota]        # SO_PEERCRED gids, supplementary groups included
        max_message_bytes: 1048576
      watchdog:
        worker_deadline: 60       # s a busy worker may go without heartbeat()
        debug_hang: false         # bench/tests only: SIGUSR2 hangs the daemon (debug_hang.py)
      cache_dir: /var/lib/ota-agent/cache   # ...the daemon's own keys

A daemon adds its own keys by subclassing :class:`DaemonConfig`::

    @dataclass(frozen=True, kw_only=True)
    class DmclientConfig(DaemonConfig):
        cache_dir: Path
        max_concurrent: int = 4

        @classmethod
        def own_fields(cls, node: Node) -> dict[str, Any]:
            return {"cache_dir": Path(node.get("cache_dir", str, "/var/lib/ota-agent/cache")),
                    "max_concurrent": node.integer("max_concurrent", 4, minimum=1, maximum=64)}

    config = load_config(DmclientConfig, "dmclient", "/etc/ota-agent/agent.yaml")

Every error names file, key and reason (:class:`~agent.errors.ConfigurationError`);
unknown keys are refused in every section a daemon reads. A client of another
daemon finds its socket with :func:`peer_socket` (reads only ``runtime.dir`` and
``<daemon>.ipc.socket``).
"""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from agent.config.node import Node, load_yaml
from agent.errors import ConfigurationError
from agent.ipc.paths import check_socket_path, runtime_dir

#: the daemons of the stack (socket stems and config sections)
DAEMON_NAMES = ("agent", "dmclient", "update_agent", "hmi_agent", "system_agent")
LOG_LEVELS = ("debug", "info", "warning", "error")

C = TypeVar("C", bound="DaemonConfig")


@dataclass(frozen=True, kw_only=True)
class IpcSettings:
    """Where and to whom a daemon serves its IPC socket."""

    socket: Path
    mode: int = 0o660
    group: int | None = None
    #: None: the default policy (root and the daemon's own uid)
    allowed_uids: frozenset[int] | None = None
    allowed_gids: frozenset[int] = frozenset()
    max_message_bytes: int = 1 << 20


@dataclass(frozen=True, kw_only=True)
class DaemonConfig:
    """The configuration every daemon has; subclass it for a daemon's own keys."""

    name: str
    #: the file it came from (None: built-in defaults only)
    source: str | None = None
    runtime_dir: Path
    log_level: str = "info"
    ipc: IpcSettings
    worker_deadline: float = 60.0
    shutdown_timeout: float = 10.0
    #: bench / tests only: SIGUSR2 hangs the daemon (agent/runtime/debug_hang.py)
    debug_hang: bool = False

    @classmethod
    def own_fields(cls, node: Node) -> dict[str, Any]:
        """Parse the daemon's own keys from its section (a subclass overrides this)."""
        return {}


def load_config(cls: type[C], name: str, path: str | Path | None = None,
                env: Mapping[str, str] | None = None) -> C:
    """Load ``name``'s configuration as ``cls`` from ``path`` (None: defaults, still validated)."""
    top = load_yaml(path) if path is not None else Node({}, source="(defaults)", path="")
    known = {"runtime", name, *DAEMON_NAMES}
    unknown = sorted(k for k in top.data if k not in known)
    if unknown:
        raise top.error(f"unknown section {unknown[0]!r} (sections: runtime, {', '.join(DAEMON_NAMES)})",
                        None)
    shared = top.child("runtime", {})
    section = top.child(name, {})

    configured_dir = shared.get("dir", str, None)
    if configured_dir is not None and not Path(configured_dir).is_absolute():
        raise shared.error(f"must be an absolute path, got {configured_dir!r}", "dir")
    rdir = runtime_dir(configured_dir, env)
    default_level = shared.choice("log_level", LOG_LEVELS, "info")
    shared.done()

    log_level = section.choice("log_level", LOG_LEVELS, default_level)
    shutdown_timeout = section.number("shutdown_timeout", 10.0, minimum=0.0, maximum=600.0)
    ipc = _ipc_settings(section.child("ipc", {}), name, rdir)
    watchdog = section.child("watchdog", {})
    worker_deadline = watchdog.number("worker_deadline", 60.0, minimum=0.001, maximum=86400.0)
    debug_hang = watchdog.get("debug_hang", bool, False)
    watchdog.done()
    own = cls.own_fields(section)
    section.done()
    return cls(name=name, source=str(path) if path is not None else None, runtime_dir=rdir,
               log_level=log_level, ipc=ipc, worker_deadline=worker_deadline,
               shutdown_timeout=shutdown_timeout, debug_hang=debug_hang, **own)


def _ipc_settings(node: Node, name: str, rdir: Path) -> IpcSettings:
    sock = Path(node.get("socket", str, f"{name}.sock"))
    sock = sock if sock.is_absolute() else rdir / sock
    try:
        check_socket_path(sock)
    except ConfigurationError as e:
        raise node.error(e.reason, "socket") from None
    users = node.raw("allowed_users", None)
    groups = node.raw("allowed_groups", None)
    group = node.raw("group", None)
    settings = IpcSettings(
        socket=sock,
        mode=_mode(node, "mode"),
        group=None if group is None else _one_id(node, "group", group, "group"),
        allowed_uids=None if users is None else _ids(node, "allowed_users", users, "user"),
        allowed_gids=frozenset() if groups is None else _ids(node, "allowed_groups", groups, "group"),
        max_message_bytes=node.integer("max_message_bytes", 1 << 20, minimum=1024, maximum=64 << 20),
    )
    node.done()
    return settings


def _mode(node: Node, key: str) -> int:
    value = node.raw(key, 0o660)
    if isinstance(value, str):
        text = value[2:] if value.lower().startswith("0o") else value
        try:
            mode = int(text, 8)
        except ValueError:
            raise node.error(f"expected an octal file mode such as '0660', got {value!r}", key) from None
    elif isinstance(value, int) and not isinstance(value, bool):
        mode = value
    else:
        raise node.error(f"expected an octal file mode such as '0660', got {value!r}", key)
    if not 0 <= mode <= 0o777:
        raise node.error(f"file mode must be within 0000..0777 (write it quoted, e.g. '0660'); got {value!r}",
                         key)
    if mode & 0o600 != 0o600:
        raise node.error(f"mode {mode:04o} leaves the owner unable to use the socket", key)
    return mode


def _ids(node: Node, key: str, values: object, what: str) -> frozenset[int]:
    if not isinstance(values, list):
        raise node.error(f"expected a list of {what} names or ids, got {values!r}", key)
    return frozenset(_one_id(node, f"{key}[{i}]", value, what) for i, value in enumerate(values))


def _one_id(node: Node, key: str, value: object, what: str) -> int:
    """A uid (``what="user"``) or gid from a number or a name looked up on this system."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value:
        try:
            return pwd.getpwnam(value).pw_uid if what == "user" else grp.getgrnam(value).gr_gid
        except KeyError:
            raise node.error(f"no such {what} {value!r} on this system", key) from None
    raise node.error(f"expected a {what} name or id, got {value!r}", key)


def peer_socket(name: str, path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Path:
    """The socket another daemon ``name`` listens on, as the stack's config file says.

    For clients (the CLI, one daemon calling another): reads ``runtime.dir``
    and ``<name>.ipc.socket`` only, leaving the rest of that daemon's section
    to that daemon. ``path`` None: the defaults (``$OTA_RUNTIME_DIR`` honoured).
    """
    top = load_yaml(path) if path is not None else Node({}, source="(defaults)", path="")
    shared = top.child("runtime", {})
    configured_dir = shared.get("dir", str, None)
    if configured_dir is not None and not Path(configured_dir).is_absolute():
        raise shared.error(f"must be an absolute path, got {configured_dir!r}", "dir")
    rdir = runtime_dir(configured_dir, env)
    ipc = top.child(name, {}).child("ipc", {})
    sock = Path(ipc.get("socket", str, f"{name}.sock"))
    return sock if sock.is_absolute() else rdir / sock


def default_config(name: str, env: Mapping[str, str] | None = None) -> DaemonConfig:
    """The built-in defaults for ``name`` (no file), honouring ``$OTA_RUNTIME_DIR``."""
    return load_config(DaemonConfig, name, None, env if env is not None else os.environ)
