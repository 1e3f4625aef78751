"""Rolling one ECU back: switch an A/B ECU to its other bank, or reflash the previous image.

* ``switch_bank`` (A/B ECUs): the bootloader's revertToPreviousBank routine
  (0x0211) makes the other bank - the one that ran before the update - active
  at the next reset (or cancels a pending activation), then a hard reset and
  a wait until the ECU answers again. The steps are a flash script built here
  (:data:`SWITCH_BANK`) and run by the same
  :class:`~update_agent.sequencer.FlashSequencer` that flashes, so timing,
  security access, NRC naming and the structured result are those of a flash.

  Whether to switch is decided by what the ECU runs, not assumed. A flash that
  failed before its new bank was activated never changed the active bank: the
  ECU still runs its old image, and the other bank holds an erased or
  half-written (unvalidated) image the bootloader rightly refuses to revert
  to - or, if the flash failed before its erase, an image *older* than the one
  running, which a blind revert would boot. So when the caller knows the
  software version the ECU ran before the campaign (``expected_version``), the
  job first reads it (F189). Already on it: a hard reset (:data:`CONFIRM_BANK`)
  lets any activation still pending from the failed flash take effect now rather
  than at some later power cycle, and a second read must still show the
  expected version - then the rollback is done without a switch
  (``bank_switch: not_needed``). Otherwise the revert script runs, and the
  version read back afterwards must be the expected one, else the job fails
  with a VerificationError. Running the job again (a resumed rollback) finds
  the ECU on the expected version and changes nothing: it is idempotent.
  Without ``expected_version`` the revert runs unconditionally (the old
  behaviour, for callers that do not know the previous version).
* ``reflash`` (any ECU): the previous image, kept by the caller (dmclient's
  cache), flashed with the ECU's own flash script through
  :func:`~update_agent.flashing.flash_ecu` - the same path as ``otactl flash``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config.vehicle import EcuConfig, VehicleConfig
from agent.errors import ConfigurationError, OtaError, VerificationError
from update_agent.flashing import flash_ecu
from update_agent.flashscript import (
    ROUTINES,
    SESSIONS,
    FlashScript,
    ResetStep,
    RoutineStep,
    SecurityAccessStep,
    SessionStep,
    TesterPresentStep,
    WaitForResetStep,
)
from update_agent.images import FlashImage
from update_agent.result import FlashResult
from update_agent.sequencer import FlashSequencer, ProgressCallback
from update_agent.uds.api import UdsSession
from update_agent.uds.links import VehicleLinks
from update_agent.uds.transport import StackFactory
from update_agent.versions import read_ecu_versions

log = logging.getLogger(__name__)

METHODS = ("switch_bank", "reflash")

SWITCH_BANK = FlashScript(
    family="switch_bank",
    source="update_agent.rollback",
    banks=("ab",),
    description="A/B rollback: revertToPreviousBank (0211) and reset",
    steps=(
        SessionStep(name="extended_session", session=SESSIONS["extended"]),
        TesterPresentStep(name="tester_present_on", enabled=True),
        SessionStep(name="programming_session", session=SESSIONS["programming"]),
        SecurityAccessStep(name="security_access"),
        RoutineStep(name="revert", routine="revert", routine_id=ROUTINES["revert"][0]),
        TesterPresentStep(name="tester_present_off", enabled=False),
        ResetStep(name="reset", reset_type=0x01),
        WaitForResetStep(name="wait_for_reset", timeout=10.0),
    ),
    on_failure=(
        TesterPresentStep(name="tester_present_off", enabled=False),
        ResetStep(name="reset", reset_type=0x01),
    ),
)


#: the ECU already runs the expected version: a reset makes a pending activation (if the failed
#: flash left one) take effect now, so the version read after it is what the ECU keeps running
CONFIRM_BANK = FlashScript(
    family="confirm_bank",
    source="update_agent.rollback",
    banks=("ab",),
    description="A/B rollback, no switch needed: reset to settle any pending activation",
    steps=(
        SessionStep(name="extended_session", session=SESSIONS["extended"]),
        ResetStep(name="reset", reset_type=0x01),
        WaitForResetStep(name="wait_for_reset", timeout=10.0),
    ),
    on_failure=(ResetStep(name="reset", reset_type=0x01),),
)

#: ``bank_switch`` in a switch_bank job's result
SWITCHED = "switched"
NOT_NEEDED = "not_needed"


@dataclass
class BankSwitch:
    """A switch_bank job's outcome: the script's result and whether the banks were switched."""

    result: FlashResult
    #: switched | not_needed (None: the job failed before it could tell)
    bank_switch: str | None
    #: the software version read before anything was done (None: not read)
    running_before: str | None = None
    expected_version: str | None = None

    def details(self) -> dict[str, Any]:
        return {"bank_switch": self.bank_switch, "running_before": self.running_before,
                "expected_version": self.expected_version}


def _software_version(session: UdsSession, ecu: EcuConfig) -> str | None:
    """The software version (F189 by default) the ECU reports now; None if it does not say."""
    found = read_ecu_versions(session, ecu, names=("software_version",))
    if not found.answering:
        return None
    return found.values.get("software_version")


def switch_bank(vehicle: VehicleConfig, ecu_name: str, *, expected_version: str | None = None,
                progress: ProgressCallback | None = None,
                stack_factory: StackFactory | None = None) -> BankSwitch:
    """Make the A/B ECU run the bank it ran before the update; see the module docstring."""
    ecu = vehicle.ecu(ecu_name)
    if ecu.banks != "ab":
        raise ConfigurationError(f"{ecu_name} is a single-bank ECU: it has no other bank to switch to; "
                                 "roll it back with method 'reflash' and the previous image",
                                 source=vehicle.source, key=f"ecus.{ecu_name}.banks")
    nothing = FlashImage(source="(bank switch)", format="bin", segments=())
    with VehicleLinks(vehicle, stack_factory=stack_factory) as links:
        session = links.session(ecu)
        before: str | None = None
        if expected_version is not None:
            try:
                before = _software_version(session, ecu)
            except OtaError as e:  # unreadable: decide by the revert script, verified below
                log.warning("%s: software version not read before the rollback: %s", ecu_name, e)
            if before == expected_version:
                confirm = FlashSequencer(ecu=ecu, script=CONFIRM_BANK, image=nothing, progress=progress).run(session)
                if not confirm.ok:
                    return BankSwitch(confirm, None, before, expected_version)
                after = _read_after(session, ecu, confirm)
                if after == expected_version:
                    log.info("%s: already runs %s (the version before the update): no bank switch needed",
                             ecu_name, expected_version)
                    return BankSwitch(confirm, NOT_NEEDED, before, expected_version)
                log.warning("%s: ran %s, but %s after a reset (an activation was pending): switching back",
                            ecu_name, expected_version, after)
        result = FlashSequencer(ecu=ecu, script=SWITCH_BANK, image=nothing, progress=progress).run(session)
        if not result.ok:
            return BankSwitch(result, None, before, expected_version)
        after = _read_after(session, ecu, result)
        if expected_version is not None and after != expected_version:
            result.error = VerificationError(
                f"{ecu_name} runs {after or 'an unreadable software version'} after the bank switch, "
                f"not {expected_version} (the version before the update)")
            result.failed_step = "verify_version"
            return BankSwitch(result, None, before, expected_version)
        return BankSwitch(result, SWITCHED, before, expected_version)


def _read_after(session: UdsSession, ecu: EcuConfig, result: FlashResult) -> str | None:
    """Read the versions back into ``result``; the software version, or None when not read."""
    try:
        result.versions_after = dict(read_ecu_versions(session, ecu).values)
    except OtaError as e:  # the script is done; a failed read-back only leaves this empty
        log.warning("%s: versions not read back after the rollback: %s", ecu.name, e)
    return result.versions_after.get("software_version")


def reflash(vehicle: VehicleConfig, ecu_name: str, image: FlashImage, *,
            progress: ProgressCallback | None = None, stack_factory: StackFactory | None = None) -> FlashResult:
    """Flash the previous image with the ECU's flash script (exactly as a forward flash)."""
    return flash_ecu(vehicle, ecu_name, image, progress=progress, stack_factory=stack_factory)


def require_image(method: str, image_path: str | None) -> Path:
    if image_path is None:
        raise ConfigurationError(f"rollback method {method!r} needs image_path: the previous image to flash")
    return Path(image_path)
