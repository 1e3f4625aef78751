"""A/B directory slots: the Linux ECU's installer on the bench (a stand-in for A/B rootfs partitions).

Layout under ``root``::

    slot_a/image        the installed package of slot a (slot_b/image likewise)
    slots.json          {"current": "a", "next": "a", "slots": {"a": {"version", "sha256", "complete"}, ...}}

``slots.json`` is the one switch: it is replaced atomically (temp file, fsync, rename, fsync
the directory), so a crash at any point leaves either the old or the new state. ``current``
is the slot the ECU runs ("booted"), ``next`` the one it boots at the next activation.

* :meth:`SlotStore.install` writes a package into the INACTIVE slot: first the state marks
  that slot incomplete (so a crash half way never leaves a slot that looks installed), then
  the bytes go to ``image.tmp`` and are fsynced, their SHA-256 is checked against the
  expected one, the file is renamed to ``image``, and the state records the slot complete
  with its version and ``next`` = that slot. Repeating it once done is a no-op (unless ``reuse=False``).
* :meth:`SlotStore.activate` makes ``next`` the running slot ("reboot into it"); it refuses
  an incomplete slot. Repeating it is a no-op.
* :meth:`SlotStore.rollback` runs ``slot`` again (the one running before the campaign) and
  boots it next; a no-op when it already runs it.

``crash`` (tests and the bench's failure knob) is called with the name of each step boundary
(``install:marked``, ``install:written``, ``install:renamed``, ``activate:before``) and may
raise there to stand for a crash or a failure at that point.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from agent.errors import OtaError
from dmclient.digests import hash_file
from dmclient.durable import fsync_dir, publish

SLOTS = ("a", "b")
IMAGE = "image"
STATE = "slots.json"


class SlotError(OtaError):
    """A slot operation cannot be done (incomplete slot, hash mismatch, unknown slot)."""


@dataclass(frozen=True)
class Slot:
    version: str = ""
    sha256: str = ""
    complete: bool = False


@dataclass(frozen=True)
class SlotState:
    current: str
    next: str
    slots: dict[str, Slot]

    @property
    def inactive(self) -> str:
        return other(self.current)

    @property
    def running_version(self) -> str:
        return self.slots[self.current].version

    def to_json(self) -> dict[str, Any]:
        return {"current": self.current, "next": self.next, "slots": {k: asdict(v) for k, v in self.slots.items()}}

    @classmethod
    def from_json(cls, data: Any, where: str) -> SlotState:
        try:
            current, nxt = data["current"], data["next"]
            slots = {k: Slot(str(v["version"]), str(v["sha256"]), bool(v["complete"]))
                     for k, v in data["slots"].items()}
        except (KeyError, TypeError, AttributeError) as e:
            raise SlotError(f"{where}: malformed slot state ({e!r})") from None
        if current not in SLOTS or nxt not in SLOTS or set(slots) != set(SLOTS):
            raise SlotError(f"{where}: malformed slot state (slots {sorted(slots)}, current {current!r})")
        return cls(current, nxt, slots)


def other(slot: str) -> str:
    return "b" if slot == "a" else "a"


def _no_crash(_step: str) -> None:
    return None


class SlotStore:
    def __init__(self, root: Path, *, initial_version: str = "", crash: Callable[[str], None] = _no_crash) -> None:
        self.root = root
        self.crash = crash
        root.mkdir(parents=True, exist_ok=True)
        for slot in SLOTS:
            self.slot_dir(slot).mkdir(exist_ok=True)
        if not (root / STATE).exists():
            self._save(SlotState("a", "a", {"a": Slot(initial_version, "", True), "b": Slot()}))

    def slot_dir(self, slot: str) -> Path:
        return self.root / f"slot_{slot}"

    def image(self, slot: str) -> Path:
        return self.slot_dir(slot) / IMAGE

    def state(self) -> SlotState:
        path = self.root / STATE
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise SlotError(f"{path}: cannot read the slot state: {e}") from e
        return SlotState.from_json(data, str(path))

    def _save(self, state: SlotState) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".slots-", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(state.to_json(), f, indent=1, sort_keys=True)
        publish(Path(tmp), self.root / STATE, mode=0o644)

    # -- operations --------------------------------------------------------------------------
    def install(self, package: Path, *, version: str, sha256: str, boot_next: bool = True,
                reuse: bool = True) -> SlotState:
        """Write ``package`` into the inactive slot, check its hash, (``boot_next``) make it boot next.

        ``reuse``: an inactive slot already holding this very image completely is kept as it is (not
        rewritten); without it the slot is always written again (a failure knob must meet the write).
        """
        state = self.state()
        slot = state.inactive
        have = state.slots[slot]
        if reuse and have.complete and have.sha256 == sha256 and have.version == version \
                and self.image(slot).is_file():
            return self.set_next(slot) if boot_next else state
        state = replace(state, next=state.current, slots={**state.slots, slot: Slot(version, sha256, False)})
        self._save(state)
        self.crash("install:marked")
        tmp = self.slot_dir(slot) / f"{IMAGE}.tmp"
        with open(package, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
            dst.flush()
            os.fsync(dst.fileno())
        self.crash("install:written")
        got = hash_file(tmp, sha512=False).result().sha256
        if got != sha256:
            tmp.unlink()
            raise SlotError(f"slot {slot}: the written package hashes {got[:16]}..., expected {sha256[:16]}...")
        os.replace(tmp, self.image(slot))
        fsync_dir(self.slot_dir(slot))
        self.crash("install:renamed")
        state = replace(state, next=slot if boot_next else state.next,
                        slots={**state.slots, slot: Slot(version, sha256, True)})
        self._save(state)
        return state

    def check(self, slot: str) -> None:
        """Re-hash the slot's image against the recorded SHA-256 (SlotError if it differs or is incomplete)."""
        state = self.state()
        info = state.slots[slot]
        if not info.complete or not self.image(slot).is_file():
            raise SlotError(f"slot {slot} is not completely installed")
        got = hash_file(self.image(slot), sha512=False).result().sha256
        if got != info.sha256:
            raise SlotError(f"slot {slot}: the image hashes {got[:16]}..., recorded {info.sha256[:16]}...")

    def set_next(self, slot: str) -> SlotState:
        """Boot ``slot`` at the next activation (it must be complete)."""
        state = self.state()
        if not state.slots[slot].complete:
            raise SlotError(f"slot {slot} is not completely installed")
        if state.next != slot:
            state = replace(state, next=slot)
            self._save(state)
        return state

    def activate(self) -> SlotState:
        """Run the ``next`` slot (the "reboot" into it); a no-op when it already runs."""
        state = self.state()
        if state.next == state.current:
            return state
        if not state.slots[state.next].complete:
            raise SlotError(f"slot {state.next} is not completely installed")
        self.crash("activate:before")
        state = replace(state, current=state.next)
        self._save(state)
        return state

    def rollback(self, slot: str) -> SlotState:
        """Run ``slot`` (the one running before) and boot it next; a no-op when it already runs it."""
        if slot not in SLOTS:
            raise SlotError(f"unknown slot {slot!r}")
        state = self.state()
        if state.current == slot and state.next == slot:
            return state
        if not state.slots[slot].complete:
            raise SlotError(f"slot {slot} is not completely installed: nothing to roll back to")
        state = replace(state, current=slot, next=slot)
        self._save(state)
        return state
