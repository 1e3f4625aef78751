"""``ota-dmclient`` configuration: the ``dmclient`` section of the stack's YAML file.

::

    dmclient:
      backend:
        url: https://backend.oem.example:8443/     # relative target URLs resolve against it
        ca_file: /etc/ota-agent/pki/ca.pem         # the OEM private PKI's CA bundle (only trust anchor)
        cert_file: /etc/ota-agent/pki/client.pem   # our client certificate (CN = VIN)
        key_file: /etc/ota-agent/pki/client.key
        connect_timeout: 10                        # s
        read_timeout: 60                           # s without a byte before the attempt fails
      retries:
        attempts: 5                                # consecutive attempts without progress
        base_delay: 1.0                            # s, doubled per attempt, full jitter
        max_delay: 60.0
        max_retry_after: 600                       # longest Retry-After honoured (s)
      downloads:
        concurrency: 2                             # targets downloading at once
        chunk_bytes: 256KiB                        # read size (bounded memory per download)
        checkpoint_bytes: 16MiB                    # fsync + commit interval (at most this is re-fetched)
        delta_max_bytes: 256MiB                    # bsdiff4 holds base + patch + result in memory
        min_free_bytes: 64MiB                      # left free on the cache's filesystem
        progress_interval: 0.5                     # s between progress events
      cache:
        dir: /var/lib/ota-agent/cache
        budget: 4GiB
      state_db: /var/lib/ota-agent/dmclient.db
      encryption_key: /etc/ota-agent/pki/vehicle-enc.key   # optional: P-256 key content keys are wrapped to
      uptane: {...}                                # optional: the update check (dmclient.uptane.config)

Relative paths are relative to the config file. Sizes are bytes or ``<n>KiB|MiB|GiB``.
Plus the keys every daemon has (``log_level``, ``ipc``, ``watchdog``...: see
:mod:`agent.runtime.config`). The TLS files and the decryption key are loaded at start,
so a bad one stops the daemon with the file named.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agent.config.node import Node
from agent.runtime.config import DaemonConfig
from dmclient.retry import RetryPolicy
from dmclient.tls import TlsFiles

_SIZE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB|TiB)?\s*$")
_UNITS = {None: 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}


def size(node: Node, key: str, default: int, *, minimum: int = 0) -> int:
    value = node.raw(key, default)
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    elif isinstance(value, str) and (m := _SIZE.match(value)):
        n = int(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise node.error(f"expected a size in bytes or like '64MiB', got {value!r}", key)
    if n < minimum:
        raise node.error(f"must be at least {minimum} bytes, got {n}", key)
    return n


def path(node: Node, key: str, default: str | None) -> Path | None:
    value = node.get(key, str, default)
    if value is None:
        return None
    p = Path(value)
    if not p.is_absolute():
        base = Path(node.source).resolve().parent if node.source and not node.source.startswith("(") else Path.cwd()
        p = base / p
    return p


@dataclass(frozen=True, kw_only=True)
class DmclientConfig(DaemonConfig):
    backend_url: str | None = None
    tls: TlsFiles
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    concurrency: int = 2
    chunk_bytes: int = 256 << 10
    checkpoint_bytes: int = 16 << 20
    delta_max_bytes: int = 256 << 20
    min_free_bytes: int = 64 << 20
    progress_interval: float = 0.5
    cache_dir: Path
    cache_budget: int = 4 << 30
    state_db: Path
    encryption_key: Path | None = None
    #: ``dmclient.uptane.config.UptaneConfig`` when the ``uptane`` section is present
    uptane: Any = None

    @classmethod
    def own_fields(cls, node: Node) -> dict[str, Any]:
        backend = node.child("backend", {})
        url = backend.get("url", str, None)
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme != "https" or not parts.netloc:
                raise backend.error(f"expected an https:// URL, got {url!r}", "url")
            if not url.endswith("/"):
                url += "/"
        ca = path(backend, "ca_file", "/etc/ota-agent/pki/ca.pem")
        cert = path(backend, "cert_file", None)
        key = path(backend, "key_file", None)
        if (cert is None) != (key is None):
            raise backend.error("cert_file and key_file go together", "cert_file" if cert is None else "key_file")
        fields: dict[str, Any] = {
            "backend_url": url,
            "tls": TlsFiles(ca, cert, key),  # type: ignore[arg-type]
            "connect_timeout": backend.number("connect_timeout", 10.0, minimum=0.1, maximum=600),
            "read_timeout": backend.number("read_timeout", 60.0, minimum=0.1, maximum=3600),
        }
        backend.done()
        retries = node.child("retries", {})
        fields["retry"] = RetryPolicy(
            max_attempts=retries.integer("attempts", 5, minimum=1, maximum=100),
            base_delay=retries.number("base_delay", 1.0, minimum=0.0, maximum=3600),
            max_delay=retries.number("max_delay", 60.0, minimum=0.0, maximum=86400),
            max_retry_after=retries.number("max_retry_after", 600.0, minimum=0.0, maximum=86400))
        retries.done()
        downloads = node.child("downloads", {})
        fields.update(
            concurrency=downloads.integer("concurrency", 2, minimum=1, maximum=64),
            chunk_bytes=size(downloads, "chunk_bytes", 256 << 10, minimum=4096),
            checkpoint_bytes=size(downloads, "checkpoint_bytes", 16 << 20, minimum=4096),
            delta_max_bytes=size(downloads, "delta_max_bytes", 256 << 20, minimum=0),
            min_free_bytes=size(downloads, "min_free_bytes", 64 << 20),
            progress_interval=downloads.number("progress_interval", 0.5, minimum=0.01, maximum=60))
        if fields["chunk_bytes"] > 16 << 20:
            raise downloads.error("at most 16MiB (memory per download)", "chunk_bytes")
        downloads.done()
        cache = node.child("cache", {})
        fields["cache_dir"] = path(cache, "dir", "/var/lib/ota-agent/cache")
        fields["cache_budget"] = size(cache, "budget", 4 << 30, minimum=1)
        cache.done()
        fields["state_db"] = path(node, "state_db", "/var/lib/ota-agent/dmclient.db")
        fields["encryption_key"] = path(node, "encryption_key", None)
        if node.has("uptane"):
            from dmclient.uptane.config import load_uptane_config

            fields["uptane"] = load_uptane_config(node.child("uptane"), base_url=url)
        return fields
