"""Where the update agent keeps its state (the version store).

One rule: the ``--state-dir`` option, else ``$OTA_UPDATE_AGENT_STATE_DIR``,
else ``$STATE_DIRECTORY`` (set by systemd's ``StateDirectory=`` for the
daemon on a board), else ``$XDG_STATE_HOME/ota-update-agent``
(``~/.local/state/ota-update-agent``) for a bench user.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_STATE_DIR = "OTA_UPDATE_AGENT_STATE_DIR"


def state_dir(option: str | os.PathLike[str] | None = None) -> Path:
    if option:
        return Path(option)
    for env in (ENV_STATE_DIR, "STATE_DIRECTORY"):
        value = os.environ.get(env)
        if value:
            # systemd may pass several directories separated by ':'; ours is the first
            return Path(value.split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "ota-update-agent"
