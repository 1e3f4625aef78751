"""Download orders: the targets to fetch, parsed and validated from their JSON form.

A target (``length`` and ``hashes`` always describe the *image* that ends in the cache,
the bytes that get installed; its SHA-256 is its cache address)::

    {"name": "engine-2.1",                       # optional label
     "length": 1048576, "hashes": {"sha256": "...", "sha512": "..."},
     "url": "https://backend/files/engine.bin",  # the full image; optional when a delta is given
     "encryption": {...},                        # optional: `url` serves it encrypted
                                                 #   (see dmclient.encryption for the format)
     "delta": {"base": {"sha256": "...", "sha512": "..."},   # image the patch was made from
               "url": "...", "length": 4096, "hashes": {...}}}  # the bsdiff4 patch as served

URLs are absolute ``https://`` or paths resolved against the configured backend URL.
Errors name the offending field by its path (``targets[2].delta.hashes.sha256``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

from agent.errors import ConfigurationError
from dmclient.digests import Hashes
from dmclient.encryption import TAG_BYTES, EncryptionSpec
from dmclient.transfer import Blob

MAX_LENGTH = 1 << 40
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,63}$")
_OWNER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/+-]{0,127}$")


class InvalidOrderError(ConfigurationError):
    """A download order (from IPC or the CLI) is malformed; the message names the field."""


def _check_keys(data: Mapping[str, Any], where: str, required: set[str], optional: set[str]) -> None:
    unknown = sorted(set(data) - required - optional)
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r}")
    for key in sorted(required):
        if key not in data:
            raise ValueError(f"{where}.{key}: required")


def _length(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_LENGTH:
        raise ValueError(f"{where}: expected a positive byte count up to 1 TiB, got {value!r}")
    return value


def resolve_url(value: Any, where: str, base_url: str | None) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}: expected a URL")
    url = urljoin(base_url, value) if base_url else value
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.netloc:
        hint = "" if base_url else " (no backend URL is configured to resolve relative paths)"
        raise ValueError(f"{where}: expected an https:// URL, got {value!r}{hint}")
    return url


def check_owner(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _OWNER.match(value):
        raise ValueError(f"{where}: expected a pin owner like 'campaign:42' or 'rollback:engine', got {value!r}")
    return value


@dataclass(frozen=True)
class DeltaSpec:
    base: Hashes
    patch: Blob


@dataclass(frozen=True)
class TargetSpec:
    name: str
    length: int
    hashes: Hashes
    url: str | None = None
    encryption: EncryptionSpec | None = None
    delta: DeltaSpec | None = None

    @classmethod
    def parse(cls, data: Any, where: str, *, base_url: str | None = None) -> TargetSpec:
        if not isinstance(data, Mapping):
            raise ValueError(f"{where}: expected a mapping")
        _check_keys(data, where, {"length", "hashes"}, {"name", "url", "encryption", "delta"})
        length = _length(data["length"], f"{where}.length")
        hashes = Hashes.parse(data["hashes"], f"{where}.hashes")
        name = data.get("name", hashes.sha256[:12])
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"{where}.name: 1-64 letters, digits or ._:+- expected, got {name!r}")
        url = resolve_url(data["url"], f"{where}.url", base_url) if "url" in data else None
        encryption = None
        if "encryption" in data:
            if url is None:
                raise ValueError(f"{where}.encryption: given without a url to download from")
            encryption = EncryptionSpec.parse(data["encryption"], f"{where}.encryption")
        delta = None
        if "delta" in data:
            d = data["delta"]
            dw = f"{where}.delta"
            if not isinstance(d, Mapping):
                raise ValueError(f"{dw}: expected a mapping")
            _check_keys(d, dw, {"base", "url", "length", "hashes"}, set())
            delta = DeltaSpec(Hashes.parse(d["base"], f"{dw}.base"),
                              Blob(resolve_url(d["url"], f"{dw}.url", base_url), _length(d["length"], f"{dw}.length"),
                                   Hashes.parse(d["hashes"], f"{dw}.hashes"), f"{name} (delta patch)"))
            if delta.base.sha256 == hashes.sha256:
                raise ValueError(f"{dw}.base: the base is the target itself")
        if url is None and delta is None:
            raise ValueError(f"{where}: needs a url (full image) or a delta")
        return cls(name, length, hashes, url, encryption, delta)

    def full_blob(self) -> Blob | None:
        """The full image as served (the ciphertext when encrypted), or None when not offered."""
        if self.url is None:
            return None
        if self.encryption is not None:
            return Blob(self.url, self.length + TAG_BYTES, self.encryption.hashes, f"{self.name} (encrypted)")
        return Blob(self.url, self.length, self.hashes, self.name)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "length": self.length, "hashes": self.hashes.to_dict()}
        if self.url is not None:
            out["url"] = self.url
        if self.encryption is not None:
            out["encryption"] = self.encryption.to_dict()
        if self.delta is not None:
            p = self.delta.patch
            out["delta"] = {"base": self.delta.base.to_dict(), "url": p.url, "length": p.length,
                            "hashes": p.hashes.to_dict()}
        return out


@dataclass(frozen=True)
class Order:
    targets: tuple[TargetSpec, ...]
    pin: str | None = None

    @classmethod
    def parse(cls, data: Any, *, base_url: str | None = None) -> Order:
        """From ``{"targets": [...], "pin": "campaign:42"}``; InvalidOrderError naming the field."""
        try:
            if not isinstance(data, Mapping):
                raise ValueError("order: expected a mapping")
            _check_keys(data, "order", {"targets"}, {"pin"})
            raw = data["targets"]
            if not isinstance(raw, list) or not raw:
                raise ValueError("targets: expected a non-empty list")
            targets = tuple(TargetSpec.parse(t, f"targets[{i}]", base_url=base_url) for i, t in enumerate(raw))
            pin = check_owner(data["pin"], "pin") if data.get("pin") is not None else None
        except ValueError as e:
            raise InvalidOrderError(str(e)) from e
        seen: dict[str, int] = {}
        for i, t in enumerate(targets):
            if t.hashes.sha256 in seen:
                raise InvalidOrderError(f"targets[{i}]: same image as targets[{seen[t.hashes.sha256]}]")
            seen[t.hashes.sha256] = i
        return cls(targets, pin)
