"""Persistence of one simulated ECU: flash banks as files, metadata written atomically.

Layout of ``<state dir>/<ecu>/``:

* ``bank_a.bin`` (and ``bank_b.bin`` on an A/B ECU): the flash contents, one
  file per bank, regions back to back; mapped with ``mmap`` so a write to
  flash is a write to the page cache and survives the process being killed.
* ``state.json``: which ranges are programmed, the active and pending bank,
  which bank holds a validated application, the fingerprint and the
  configuration DIDs; written to a temp file, fsynced
  and renamed, so it is always either the old or the new version.
* ``status.json``: a read-only view for tests and engineers (session, security,
  communication control, DTC setting, faults fired...), rewritten on change.
* ``lock``: an exclusive ``flock`` so two simulators never share a directory.

A directory made for another memory map is refused, never reinitialised: what
is stored there is not ours to throw away.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import mmap
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.errors import ConfigurationError
from bench.ecu.flash import FlashBank, Layout, RangeSet

log = logging.getLogger(__name__)

FORMAT = 1
BANK_FILES = ("bank_a.bin", "bank_b.bin")


@dataclass
class Persisted:
    """What survives a restart besides the flash bytes."""

    active_bank: int = 0
    pending_bank: int | None = None
    fingerprint: bytes = bytes(9)
    #: per bank: the bootloader's "application valid" mark, set only by a passing checkMemory
    validated: list[bool] = field(default_factory=lambda: [True, True])
    config_dids: dict[str, bytes] = field(default_factory=dict)
    #: keys of state.json this version does not know, written back unchanged
    extra: dict[str, Any] = field(default_factory=dict)


def atomic_write(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` through a temp file and a rename (fsynced if ``durable``)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if durable:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class EcuStore:
    """The state directory of one ECU; :meth:`open` loads it or creates it."""

    def __init__(self, directory: Path, layout: Layout, bank_count: int, ecu: str) -> None:
        if bank_count not in (1, 2):
            raise ValueError("an ECU has one bank or two")
        self.directory = directory
        self.layout = layout
        self.bank_count = bank_count
        self.ecu = ecu
        self.banks: list[FlashBank] = []
        self._maps: list[mmap.mmap] = []
        self._lock_fd: int | None = None
        self._last_status: bytes | None = None

    @property
    def meta_path(self) -> Path:
        return self.directory / "state.json"

    @property
    def status_path(self) -> Path:
        return self.directory / "status.json"

    def _layout_record(self) -> dict[str, Any]:
        return {"banks": self.bank_count, "regions": self.layout.describe()}

    # -- open / close ---------------------------------------------------------
    def open(self, initialise: Callable[[FlashBank], None]) -> Persisted:
        """Load the stored state, or create it and let ``initialise`` fill bank A."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            persisted = self._load() if self.meta_path.exists() else self._create(initialise)
        except BaseException:
            self.close()
            raise
        return persisted

    def _lock(self) -> None:
        fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ConfigurationError(f"in use by another bench simulator (pid {holder})",
                                     source=str(self.directory)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _map(self, path: Path) -> mmap.mmap:
        with open(path, "r+b") as f:
            return mmap.mmap(f.fileno(), self.layout.size)

    def _create(self, initialise: Callable[[FlashBank], None]) -> Persisted:
        for name in BANK_FILES[:self.bank_count]:
            path = self.directory / name
            tmp = path.with_name(f".{name}.tmp")
            with open(tmp, "wb") as f:
                f.write(b"\xff" * self.layout.size)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            mm = self._map(path)
            self._maps.append(mm)
            self.banks.append(FlashBank(self.layout, mm))
        initialise(self.banks[0])
        persisted = Persisted(validated=[True] * self.bank_count)
        self.save(persisted)
        log.info("%s: new flash state in %s", self.ecu, self.directory)
        return persisted

    def _load(self) -> Persisted:
        source = str(self.meta_path)
        try:
            meta = json.loads(self.meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ConfigurationError(f"cannot read the simulator state: {e}", source=source) from e
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ConfigurationError(f"not a format {FORMAT} simulator state file", source=source)
        if meta.get("layout") != self._layout_record():
            raise ConfigurationError(
                f"was made for another memory map or bank count ({meta.get('layout')}, the config now "
                f"says {self._layout_record()}); remove the directory or use another --state-dir",
                source=source)
        try:
            programmed = [RangeSet((int(s), int(e)) for s, e in ranges) for ranges in meta["programmed"]]
            persisted = Persisted(
                active_bank=int(meta["active_bank"]),
                pending_bank=None if meta.get("pending_bank") is None else int(meta["pending_bank"]),
                fingerprint=bytes.fromhex(meta["fingerprint"]),
                config_dids={str(k): bytes.fromhex(v) for k, v in meta.get("config_dids", {}).items()},
                validated=[bool(v) for v in meta.get("validated", [True] * self.bank_count)],
                extra={k: v for k, v in meta.items() if k not in _KNOWN_KEYS},
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigurationError(f"corrupt simulator state: {e!r}", source=source) from e
        if (len(programmed) != self.bank_count or len(persisted.validated) != self.bank_count
                or persisted.active_bank not in range(self.bank_count)):
            raise ConfigurationError("corrupt simulator state: bank numbers do not match", source=source)
        for index, name in enumerate(BANK_FILES[:self.bank_count]):
            path = self.directory / name
            try:
                size = path.stat().st_size
            except OSError as e:
                raise ConfigurationError(f"bank file missing: {e.strerror}", source=str(path)) from e
            if size != self.layout.size:
                raise ConfigurationError(
                    f"bank file is {size} bytes, the memory map needs {self.layout.size}", source=str(path))
            mm = self._map(path)
            self._maps.append(mm)
            self.banks.append(FlashBank(self.layout, mm, programmed[index]))
        log.info("%s: flash state loaded from %s", self.ecu, self.directory)
        return persisted

    def close(self) -> None:
        for mm in self._maps:
            with contextlib.suppress(ValueError, OSError):
                mm.flush()
                mm.close()
        self._maps = []
        self.banks = []
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- saving ---------------------------------------------------------------
    def save(self, persisted: Persisted, *, in_progress: tuple[int, int, int] | None = None) -> None:
        """Flush the banks and commit the metadata.

        ``in_progress`` is ``(bank, start, end)`` of a download under way: it is
        stored as programmed, so after a crash the range needs an erase first,
        as real flash would after a power loss in the middle of programming.
        """
        for mm in self._maps:
            mm.flush()
        programmed = []
        for index, bank in enumerate(self.banks):
            ranges = bank.programmed.copy()
            if in_progress is not None and in_progress[0] == index:
                ranges.add(in_progress[1], in_progress[2])
            programmed.append(ranges.to_list())
        meta: dict[str, Any] = dict(persisted.extra)
        meta.update({
            "format": FORMAT,
            "ecu": self.ecu,
            "layout": self._layout_record(),
            "active_bank": persisted.active_bank,
            "pending_bank": persisted.pending_bank,
            "programmed": programmed,
            "fingerprint": persisted.fingerprint.hex(),
            "validated": persisted.validated,
            "config_dids": {k: v.hex() for k, v in persisted.config_dids.items()},
        })
        atomic_write(self.meta_path, json.dumps(meta, indent=1).encode())

    def write_status(self, status: dict[str, Any]) -> None:
        """Rewrite ``status.json`` if it changed (not fsynced: it is a view, not state)."""
        data = json.dumps(status, indent=1, sort_keys=True).encode()
        if data != self._last_status:
            atomic_write(self.status_path, data, durable=False)
            self._last_status = data


_KNOWN_KEYS = frozenset({"format", "ecu", "layout", "active_bank", "pending_bank", "programmed",
                         "fingerprint", "config_dids", "validated"})
