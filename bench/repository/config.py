"""The ``repositories`` section of the bench backend config: where the Uptane repositories live.

::

    repositories:
      image: image-repo/        # an Image repository built by `otactl release build --out image-repo/`
      director: director/       # the Director's keys, roots and per-vehicle metadata (created if missing)
      route: route.yaml         # the task route (bench.repository.route)
      vehicles: vehicles.yaml   # the vehicle registry (bench.repository.vehicles)

Relative paths are relative to the backend config file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent.config.node import Node


@dataclass(frozen=True)
class RepositoriesConfig:
    image: Path
    director: Path
    route: Path
    vehicles: Path


def load_repositories_config(node: Node) -> RepositoriesConfig:
    base = Path(node.source).resolve().parent

    def path(key: str, *, must: str | None = None) -> Path:
        p = Path(node.get(key, str))
        p = p if p.is_absolute() else base / p
        if must == "file" and not p.is_file():
            raise node.error(f"no such file: {p}", key)
        if must == "dir" and not (p / "keys" / "keyring.json").is_file():
            raise node.error(f"{p} is not an Image repository (build a release into it first)", key)
        return p

    cfg = RepositoriesConfig(image=path("image", must="dir"), director=path("director"),
                             route=path("route", must="file"), vehicles=path("vehicles", must="file"))
    node.done()
    return cfg
