"""Rolling one ECU back: switch an A/B ECU to its other bank, or reflash the previous image.

* ``switch_bank`` (A/B ECUs): the bootloader's revertToPreviousBank routine
  (0x0211) makes the other bank - the one that ran before the update - active
  at the next reset (or cancels a pending activation), then a hard reset and
  a wait until the ECU answers again. The steps are a flash script built here
  (:data:`SWITCH_BANK`) and run by the same
  :class:`~update_agent.sequencer.FlashSequencer` that flashes, so timing,
  security access, NRC naming and the structured result are those of a flash.
* ``reflash`` (any ECU): the previous image, kept by the caller (dmclient's
  cache), flashed with the ECU's own flash script through
  :func:`~update_agent.flashing.flash_ecu` - the same path as ``otactl flash``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from agent.config.vehicle import VehicleConfig
from agent.errors import ConfigurationError, OtaError
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


def switch_bank(vehicle: VehicleConfig, ecu_name: str, *, progress: ProgressCallback | None = None,
                stack_factory: StackFactory | None = None) -> FlashResult:
    """Make the A/B ECU run its other bank again; the result reads like a flash result (no bytes)."""
    ecu = vehicle.ecu(ecu_name)
    if ecu.banks != "ab":
        raise ConfigurationError(f"{ecu_name} is a single-bank ECU: it has no other bank to switch to; "
                                 "roll it back with method 'reflash' and the previous image",
                                 source=vehicle.source, key=f"ecus.{ecu_name}.banks")
    nothing = FlashImage(source="(bank switch)", format="bin", segments=())
    sequencer = FlashSequencer(ecu=ecu, script=SWITCH_BANK, image=nothing, progress=progress)
    with VehicleLinks(vehicle, stack_factory=stack_factory) as links:
        session = links.session(ecu)
        result = sequencer.run(session)
        if result.ok:
            try:
                result.versions_after = dict(read_ecu_versions(session, ecu).values)
            except OtaError as e:  # the switch is done; a failed read-back only leaves this empty
                log.warning("%s: versions not read back after the bank switch: %s", ecu_name, e)
        return result


def reflash(vehicle: VehicleConfig, ecu_name: str, image: FlashImage, *,
            progress: ProgressCallback | None = None, stack_factory: StackFactory | None = None) -> FlashResult:
    """Flash the previous image with the ECU's flash script (exactly as a forward flash)."""
    return flash_ecu(vehicle, ecu_name, image, progress=progress, stack_factory=stack_factory)


def require_image(method: str, image_path: str | None) -> Path:
    if image_path is None:
        raise ConfigurationError(f"rollback method {method!r} needs image_path: the previous image to flash")
    return Path(image_path)
