"""Flash one ECU of a vehicle: config, flash script, image and bus put together.

Everything that can be refused without the bus is refused first (unknown ECU,
script for the wrong bank layout, image outside the memory map), so a bad
input never puts a byte on the bus.

An A/B ECU that already runs the image's software version is not flashed again
(``target_version``): it got there through an earlier attempt whose activation
and reset went through although its end was lost (the update agent killed after
the reset, a reset answer lost). Its inactive bank then holds the previous image,
the one a rollback switches back to; running the script again would erase it and
leave both banks on the new version, so the rollback could no longer reach the old.
"""

from __future__ import annotations

import logging
from pathlib import Path

from agent.config.vehicle import VehicleConfig
from agent.errors import OtaError
from update_agent.flashscript import cached_flash_script
from update_agent.images import FlashImage
from update_agent.result import FlashResult
from update_agent.sequencer import FlashSequencer, ProgressCallback
from update_agent.uds.api import UdsSession
from update_agent.uds.links import VehicleLinks
from update_agent.uds.transport import StackFactory
from update_agent.versions import read_ecu_versions

log = logging.getLogger(__name__)


def prepare(vehicle: VehicleConfig, ecu_name: str, image: FlashImage, *,
            progress: ProgressCallback | None = None) -> FlashSequencer:
    """The sequencer for ``ecu_name`` and ``image``, checked against the config before any bus I/O."""
    ecu = vehicle.ecu(ecu_name)
    script = cached_flash_script(ecu.flash_script, Path(vehicle.source).parent)
    return FlashSequencer(ecu=ecu, script=script, image=image, progress=progress)


def parse_flash_scripts(vehicle: VehicleConfig) -> None:
    """Parse every ECU's flash script ahead of its first job (:func:`cached_flash_script`), best effort:
    a script that cannot be read is only logged here; the flash job that needs it fails naming it."""
    for ecu in vehicle.ecus.values():
        try:
            cached_flash_script(ecu.flash_script, Path(vehicle.source).parent)
        except OtaError as e:
            log.warning("%s: flash script %s not readable: %s", ecu.name, ecu.flash_script, e)


def flash_ecu(vehicle: VehicleConfig, ecu_name: str, image: FlashImage, *,
              progress: ProgressCallback | None = None,
              stack_factory: StackFactory | None = None, target_version: str | None = None) -> FlashResult:
    """Run the ECU's flash script; the result says what happened (``result.error`` on failure).

    Raises only for what stops the flash before it starts: bad input
    (ConfigurationError) or a bus that cannot be opened (TransportError).
    After a successful flash the version DIDs are read back into
    ``result.versions_after`` (the software version inside the new image).
    """
    sequencer = prepare(vehicle, ecu_name, image, progress=progress)
    with VehicleLinks(vehicle, stack_factory=stack_factory) as links:
        session = links.session(sequencer.ecu)
        if target_version is not None and sequencer.ecu.banks == "ab":
            active = _already_active(session, sequencer, target_version)
            if active is not None:
                return active
        result = sequencer.run(session)
        if result.ok:
            try:
                found = read_ecu_versions(session, sequencer.ecu)
            except OtaError as e:  # the flash is done; a failed read-back only leaves this empty
                log.warning("%s: versions not read back after the flash: %s", ecu_name, e)
            else:
                result.versions_after = dict(found.values)
        return result


def _already_active(session: UdsSession, sequencer: FlashSequencer, target_version: str) -> FlashResult | None:
    """A result with nothing flashed when the A/B ECU runs ``target_version`` already (see the module
    docstring); None when it runs another version or does not say (then the script runs)."""
    try:
        found = read_ecu_versions(session, sequencer.ecu, names=("software_version",))
    except OtaError as e:
        log.warning("%s: software version not read before the flash: %s", sequencer.ecu.name, e)
        return None
    if found.values.get("software_version") != target_version:
        return None
    log.info("%s: already runs %s (an earlier attempt activated it): not flashed again, so its other bank "
             "keeps the previous image", sequencer.ecu.name, target_version)
    result = sequencer.new_result()
    result.versions_after = dict(found.values)  # what was read: the software version
    result.already_active = True
    return result
