"""Bench backend configuration (YAML, validated with :class:`agent.config.node.Node`)::

    listen: {host: 127.0.0.1, port: 0}       # port 0: any free port (printed in the ready line)
    files: files/                            # directory served under /files/
    tls:
      cert_file: pki/server.pem
      key_file: pki/server.key
      client_ca_file: pki/ca.pem             # client certificates must chain to this CA
    admin: {host: 127.0.0.1, port: 0}        # optional: fault / stats routes, plain HTTP, loopback only
    faults:                                  # optional: initial fault knobs (bench.backend.faults)
      - {path: engine.bin, drop_after: 65536, times: 1}
    repositories:                            # optional: Uptane-style repositories (bench.repository.config)
      image: image-repo/
      director: director/
      route: route.yaml
      vehicles: vehicles.yaml

Relative paths are relative to the config file.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from agent.config.node import Node, load_yaml
from bench.backend.faults import Fault
from bench.repository.config import RepositoriesConfig, load_repositories_config


@dataclass(frozen=True)
class Listen:
    host: str
    port: int


@dataclass(frozen=True)
class BackendConfig:
    listen: Listen
    files: Path
    cert_file: Path
    key_file: Path
    client_ca_file: Path
    admin: Listen | None = None
    faults: list[Fault] = field(default_factory=list)
    source: str = "<memory>"
    #: the Uptane-style repositories to serve (bench.repository.routes), if configured
    repositories: RepositoriesConfig | None = None


def _listen(node: Node, *, loopback_only: bool) -> Listen:
    host = node.get("host", str, "127.0.0.1")
    port = node.integer("port", 0, minimum=0, maximum=65535)
    if loopback_only:
        try:
            ok = ipaddress.ip_address(host).is_loopback
        except ValueError:
            ok = host == "localhost"
        if not ok:
            raise node.error(f"the admin routes are unauthenticated: listen on loopback only, not {host!r}", "host")
    node.done()
    return Listen(host, port)


def load_backend_config(path: str | Path) -> BackendConfig:
    root = load_yaml(path)
    base = Path(path).resolve().parent

    def file(node: Node, key: str, *, directory: bool = False) -> Path:
        p = Path(node.get(key, str))
        p = p if p.is_absolute() else base / p
        if directory and not p.is_dir():
            raise node.error(f"not a directory: {p}", key)
        if not directory and not p.is_file():
            raise node.error(f"no such file: {p}", key)
        return p

    tls = root.child("tls")
    cfg = BackendConfig(
        listen=_listen(root.child("listen", {}), loopback_only=False),
        files=file(root, "files", directory=True),
        cert_file=file(tls, "cert_file"),
        key_file=file(tls, "key_file"),
        client_ca_file=file(tls, "client_ca_file"),
        admin=_listen(root.child("admin"), loopback_only=True) if root.has("admin") else None,
        faults=root.items("faults", Fault.from_node, []) if root.has("faults") else [],
        source=str(path),
        repositories=load_repositories_config(root.child("repositories")) if root.has("repositories") else None,
    )
    tls.done()
    root.done()
    return cfg
