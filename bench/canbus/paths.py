"""Where the bench hub's sockets live."""

from __future__ import annotations

import os
from pathlib import Path

ENV_DIR = "OTA_BENCH_HUB_DIR"


def hub_dir() -> Path:
    """``$OTA_BENCH_HUB_DIR``, else a per-user directory under the temp dir."""
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env)
    base = os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
    return Path(base) / f"ota-bench-hub-{os.getuid()}"


def socket_path(channel: str) -> Path:
    """A channel is a name under :func:`hub_dir`, or an absolute socket path."""
    if os.path.isabs(channel):
        return Path(channel)
    if not channel or "/" in channel or channel.startswith("."):
        raise ValueError(f"bench bus channel must be a plain name or an absolute path, got {channel!r}")
    return hub_dir() / f"{channel}.sock"


def control_path(channel: str) -> Path:
    """The hub's control socket for ``channel`` (fault injection): ``<channel>.ctl`` beside the bus socket."""
    return socket_path(channel).with_suffix(".ctl")
