"""A/B directory slots: install into the inactive slot, activate, roll back; crashes and repeats."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from update_agent.linux_ecu.slots import SlotError, SlotStore


class Crash(Exception):
    """Stands for the process dying at a step boundary."""


def package(tmp_path: Path, data: bytes) -> tuple[Path, str]:
    path = tmp_path / f"pkg-{hashlib.sha256(data).hexdigest()[:8]}"
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def crashing_at(step: str) -> Callable[[str], None]:
    def crash(at: str) -> None:
        if at == step:
            raise Crash(at)
    return crash


def test_install_activate_rollback(tmp_path: Path) -> None:
    store = SlotStore(tmp_path / "slots", initial_version="1.0.0")
    pkg, sha = package(tmp_path, b"v2" * 1000)
    state = store.install(pkg, version="2.0.0", sha256=sha)
    assert (state.current, state.next, state.running_version) == ("a", "b", "1.0.0")
    assert store.image("b").read_bytes() == b"v2" * 1000
    state = store.activate()
    assert (state.current, state.running_version) == ("b", "2.0.0")
    assert store.state() == state  # persisted
    state = store.rollback("a")
    assert (state.current, state.next, state.running_version) == ("a", "a", "1.0.0")
    assert state.slots["b"].version == "2.0.0"  # kept: the slot still holds it


def test_every_operation_repeated_is_a_no_op(tmp_path: Path) -> None:
    store = SlotStore(tmp_path / "slots", initial_version="1.0.0")
    pkg, sha = package(tmp_path, b"v2" * 1000)
    first = store.install(pkg, version="2.0.0", sha256=sha)
    written = store.image("b").stat().st_mtime_ns
    assert store.install(pkg, version="2.0.0", sha256=sha) == first
    assert store.image("b").stat().st_mtime_ns == written  # not written again
    active = store.activate()
    assert store.activate() == active
    back = store.rollback("a")
    assert store.rollback("a") == back


def test_the_next_install_goes_to_the_slot_not_running(tmp_path: Path) -> None:
    store = SlotStore(tmp_path / "slots", initial_version="1.0.0")
    for version, slot in (("2.0.0", "b"), ("3.0.0", "a"), ("4.0.0", "b")):
        pkg, sha = package(tmp_path, version.encode() * 100)
        assert store.install(pkg, version=version, sha256=sha).next == slot
        assert store.activate().current == slot
    assert {k: v.version for k, v in store.state().slots.items()} == {"a": "3.0.0", "b": "4.0.0"}


def test_a_package_that_does_not_hash_as_ordered_never_becomes_bootable(tmp_path: Path) -> None:
    store = SlotStore(tmp_path / "slots", initial_version="1.0.0")
    pkg, _ = package(tmp_path, b"tampered")
    with pytest.raises(SlotError, match=r"slot b: the written package hashes"):
        store.install(pkg, version="2.0.0", sha256="00" * 32)
    state = store.state()
    assert (state.current, state.next, state.slots["b"].complete) == ("a", "a", False)
    with pytest.raises(SlotError, match=r"slot b is not completely installed"):
        store.set_next("b")


@pytest.mark.parametrize("step", ["install:marked", "install:written", "install:renamed"])
def test_a_crash_during_install_leaves_the_running_slot_and_a_repeat_completes_it(tmp_path: Path, step: str) -> None:
    pkg, sha = package(tmp_path, b"v2" * 5000)
    store = SlotStore(tmp_path / "slots", initial_version="1.0.0", crash=crashing_at(step))
    with pytest.raises(Crash):
        store.install(pkg, version="2.0.0", sha256=sha)
    after = SlotStore(tmp_path / "slots")  # the restarted ECU reads what is on disk
    state = after.state()
    assert (state.current, state.next, state.running_version) == ("a", "a", "1.0.0")
    assert not state.slots["b"].complete
    assert after.activate().current == "a"  # nothing to boot: still the old slot
    state = after.install(pkg, version="2.0.0", sha256=sha)
    assert (state.next, state.slots["b"].complete) == ("b", True)
    assert after.activate().running_version == "2.0.0"


def test_a_crash_before_the_switch_keeps_the_old_slot_running(tmp_path: Path) -> None:
    pkg, sha = package(tmp_path, b"v2" * 100)
    store = SlotStore(tmp_path / "slots", initial_version="1.0.0", crash=crashing_at("activate:before"))
    store.install(pkg, version="2.0.0", sha256=sha)
    with pytest.raises(Crash):
        store.activate()
    after = SlotStore(tmp_path / "slots")
    assert after.state().running_version == "1.0.0"
    assert after.activate().running_version == "2.0.0"


def test_check_finds_a_slot_image_changed_on_disk(tmp_path: Path) -> None:
    store = SlotStore(tmp_path / "slots", initial_version="1.0.0")
    pkg, sha = package(tmp_path, b"v2" * 100)
    store.install(pkg, version="2.0.0", sha256=sha, boot_next=False)
    store.check("b")
    store.image("b").write_bytes(b"rot")
    with pytest.raises(SlotError, match=r"slot b: the image hashes"):
        store.check("b")


def test_no_temp_files_are_left_behind(tmp_path: Path) -> None:
    store = SlotStore(tmp_path / "slots", initial_version="1.0.0")
    pkg, sha = package(tmp_path, b"v2" * 100)
    store.install(pkg, version="2.0.0", sha256=sha)
    store.activate()
    names = sorted(p.relative_to(tmp_path / "slots").as_posix() for p in (tmp_path / "slots").rglob("*"))
    assert names == ["slot_a", "slot_b", "slot_b/image", "slots.json"]
