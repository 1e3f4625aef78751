"""ota-agent: the engine, the otactl CLI and the shared runtime."""

import os
import sys

_DIST = "ota_agent_stack"


def _installed_version() -> str:
    """The installed distribution's version, from its ``<name>-<version>.dist-info`` directory name.

    The name is the version by the wheel / installed-distribution spec; reading it so spares every
    daemon ``importlib.metadata`` and the ``email`` parser it pulls in (about 1 MiB of RSS each).
    """
    prefix, suffix = f"{_DIST}-", ".dist-info"
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            if name.startswith(prefix) and name.endswith(suffix):
                return name[len(prefix):-len(suffix)]
    return "0+unknown"  # running from a source tree that is not installed


__version__ = _installed_version()
