"""Which vehicle configuration a command uses.

One rule for every ``otactl`` command: the ``--config`` option, else
``$OTA_VEHICLE_CONFIG``, else the bench vehicle shipped with the package
(``configs/bench-vehicle.yaml``, found through :mod:`importlib.resources` so a
non-editable ``pip install .`` finds it too).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from agent.errors import ConfigurationError

ENV_CONFIG = "OTA_VEHICLE_CONFIG"
PACKAGED_CONFIG = "bench-vehicle.yaml"


def packaged_file(package: str, name: str) -> Path:
    """A data file shipped inside ``package``, as a file system path.

    setuptools installs package data as plain files, so the resource is a
    real path; a zipped install is refused with a clear error rather than
    copied to a temporary file that would vanish under the caller.
    """
    try:
        resource = resources.files(package) / name
    except ModuleNotFoundError as e:
        raise ConfigurationError(f"package {package!r} is not installed") from e
    if not resource.is_file():
        raise ConfigurationError(f"{name!r} is not shipped in package {package!r}")
    if not isinstance(resource, Path):
        raise ConfigurationError(f"{package}/{name} is not on the file system ({resource!r}); "
                                 "install the package unzipped")
    return resource


def config_file(option: str | os.PathLike[str] | None, env: str, packaged: str) -> Path:
    """The rule of every file a command loads: ``option``, else ``$env``, else ``configs/packaged``."""
    if option:
        return Path(option)
    value = os.environ.get(env)
    if value:
        return Path(value)
    return packaged_file("configs", packaged)


def vehicle_config_path(option: str | os.PathLike[str] | None = None) -> Path:
    """The vehicle config file a command should load (see module docstring)."""
    return config_file(option, ENV_CONFIG, PACKAGED_CONFIG)
