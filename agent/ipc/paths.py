"""Where the daemons' sockets live: the runtime directory.

``/run/ota-agent/`` on a board (systemd ``RuntimeDirectory=ota-agent``);
the daemon config's ``runtime.dir`` changes it, and ``$OTA_RUNTIME_DIR``
overrides both, so a bench or a test points every daemon and client at a
temporary directory with one variable. Each daemon listens on
``<runtime dir>/<daemon>.sock``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from agent.errors import ConfigurationError

ENV_RUNTIME_DIR = "OTA_RUNTIME_DIR"
DEFAULT_RUNTIME_DIR = Path("/run/ota-agent")
#: sun_path is 108 bytes on Linux, including the terminating NUL
MAX_SOCKET_PATH = 107


def runtime_dir(configured: str | Path | None = None, env: Mapping[str, str] | None = None) -> Path:
    """``$OTA_RUNTIME_DIR``, else ``configured``, else ``/run/ota-agent``; always absolute."""
    environ = os.environ if env is None else env
    from_env = environ.get(ENV_RUNTIME_DIR)
    if from_env:
        path, source = Path(from_env), f"${ENV_RUNTIME_DIR}"
    elif configured is not None:
        path, source = Path(configured), "runtime dir"
    else:
        return DEFAULT_RUNTIME_DIR
    if not path.is_absolute():
        raise ConfigurationError(f"{source} must be an absolute path, got {str(path)!r}")
    return path


def socket_path(daemon: str, directory: str | Path | None = None,
                env: Mapping[str, str] | None = None) -> Path:
    """The socket of ``daemon`` (``dmclient`` -> ``<runtime dir>/dmclient.sock``)."""
    if not daemon or "/" in daemon or daemon.startswith("."):
        raise ConfigurationError(f"daemon name must be a plain name, got {daemon!r}")
    return runtime_dir(directory, env) / f"{daemon}.sock"


def check_socket_path(path: Path) -> None:
    """Refuse a path the kernel cannot bind or connect to, with the reason."""
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise ConfigurationError(
            f"socket path is {len(os.fsencode(path))} bytes, more than the {MAX_SOCKET_PATH} bytes "
            f"a Unix socket address holds: {path}")
