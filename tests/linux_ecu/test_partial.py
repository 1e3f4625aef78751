"""Uptane partial verification on the Linux ECU: good metadata passes, each attack is refused by name."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from dmclient.uptane.errors import (
    ArbitrarySoftwareError,
    FreezeError,
    PartialBundleError,
    RollbackError,
    SignatureError,
    UnknownEcuError,
    WrongHardwareError,
)
from tests.linux_ecu.director_kit import ECU, HARDWARE, DirectorKit, Image
from update_agent.linux_ecu.partial import PartialVerifier

V2 = Image("ivi/ivi-2.0.tar", b"ivi image two " * 500, "2.0.0", 2)
OTHER = Image("adas/adas-2.0.tar", b"adas image " * 300, "2.0.0", 2, ecu="adas")


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> DirectorKit:
    return DirectorKit(tmp_path_factory.mktemp("director"))


def verifier(kit: DirectorKit, *, at: datetime | None = None, hardware_id: str | None = HARDWARE) -> PartialVerifier:
    now = at or datetime.now(timezone.utc)
    return PartialVerifier(kit.root, ecu=ECU, hardware_id=hardware_id, clock=lambda: now)


def check(v: PartialVerifier, targets: bytes, image: Image = V2, **more: Any) -> object:
    args: dict[str, Any] = {"ecu": ECU, "target": image.name, "length": len(image.data), "hashes": image.hashes,
                               "software_version": image.version}
    args.update(more)
    return v.verify(targets, **args)


def test_signed_current_metadata_naming_this_ecu_passes(kit: DirectorKit) -> None:
    targets = kit.publish(V2, OTHER)
    accepted = verifier(kit).verify(targets, ecu=ECU, target=V2.name, length=len(V2.data), hashes=V2.hashes,
                                    software_version="2.0.0")
    assert accepted.version == kit.repo.targets.signed.version
    assert accepted.image.release_counter == 2 and accepted.image.ecu == ECU


def test_metadata_signed_by_a_key_the_ecu_root_does_not_know_is_refused(kit: DirectorKit, tmp_path: Path) -> None:
    rogue = DirectorKit(tmp_path / "rogue")
    targets = rogue.publish(V2)
    with pytest.raises(SignatureError, match=r"not signed by 1 of the targets keys of this ECU's Director root"):
        check(verifier(kit), targets)


def test_a_tampered_target_breaks_the_signature(kit: DirectorKit) -> None:
    targets = kit.publish(V2)
    forged = targets.replace(V2.hashes["sha256"].encode(), b"0" * 64)
    with pytest.raises(SignatureError):
        check(verifier(kit), forged, hashes={"sha256": "0" * 64})


def test_expired_metadata_is_a_freeze_attack(kit: DirectorKit) -> None:
    targets = kit.publish(V2)
    later = kit.repo.targets.signed.expires + timedelta(seconds=1)
    with pytest.raises(FreezeError, match=r"expired at"):
        check(verifier(kit, at=later), targets)
    check(verifier(kit, at=later - timedelta(seconds=2)), targets)  # just before: fine


def test_an_older_version_than_the_last_accepted_is_a_rollback(kit: DirectorKit) -> None:
    old = kit.publish(V2)
    old_version = kit.repo.targets.signed.version
    kit.publish(V2)
    with pytest.raises(RollbackError, match=rf"v{old_version} is older than v{old_version + 1}"):
        check(verifier(kit), old, last_version=old_version + 1)
    check(verifier(kit), old, last_version=old_version)  # the same version again: fine


def test_a_release_counter_below_the_installed_one_is_a_rollback(kit: DirectorKit) -> None:
    targets = kit.publish(V2)
    with pytest.raises(RollbackError, match=r"release counter 2 is lower than 3"):
        check(verifier(kit), targets, last_counter=3)


@pytest.mark.parametrize(("change", "error", "reason"), [
    ({"length": len(V2.data) + 1}, ArbitrarySoftwareError, r"the order says 7001 bytes, the Director 7000"),
    ({"hashes": {**V2.hashes, "sha256": "ab" * 32}}, ArbitrarySoftwareError, r"sha256 of the order"),
    ({"hashes": {**V2.hashes, "sha512": "cd" * 64}}, ArbitrarySoftwareError, r"sha512 of the order"),
    ({"software_version": "2.0.1"}, ArbitrarySoftwareError, r"software version '2.0.1'"),
    ({"target": "ivi/ivi-9.tar"}, PartialBundleError, r"no target 'ivi/ivi-9.tar'"),
    ({"ecu": "adas"}, UnknownEcuError, r"the order is for ECU 'adas'; this ECU is 'ivi'"),
])
def test_an_order_that_differs_from_the_signed_target_is_refused(kit: DirectorKit, change: dict[str, Any],
                                                                  error: type[Exception], reason: str) -> None:
    targets = kit.publish(V2)
    with pytest.raises(error, match=reason):
        check(verifier(kit), targets, **change)


def test_a_target_for_another_ecu_is_refused(kit: DirectorKit) -> None:
    targets = kit.publish(V2, OTHER)
    with pytest.raises(UnknownEcuError, match=r"target adas/adas-2.0.tar is for ECU 'adas', not this ECU 'ivi'"):
        check(verifier(kit), targets, OTHER)


def test_a_target_for_other_hardware_is_refused(kit: DirectorKit) -> None:
    targets = kit.publish(V2)
    with pytest.raises(WrongHardwareError, match=r"hardware 'IVI-0001'; this ECU is 'IVI-0002'"):
        check(PartialVerifier(kit.root, ecu=ECU, hardware_id="IVI-0002"), targets)
