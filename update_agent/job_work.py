"""What a job does, blocking (the daemon runs it in a worker thread): flash or roll back one ECU.

A flash job takes the very path ``otactl flash`` takes (:func:`update_agent.flashing.flash_ecu`:
image checked against the memory map before any bus I/O, the ECU's flash script,
versions read back), so the daemon and the CLI flash identically. The outcome is
always an :class:`Outcome` - a failed flash, a bad image or a bus that cannot be
opened are job failures with the error's class, message, step and NRC, never
exceptions out of here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config.vehicle import VehicleConfig
from agent.errors import NegativeResponseError, OtaError, VerificationError
from dmclient.digests import Hashes, hash_file
from update_agent.flashing import flash_ecu
from update_agent.images import load_image
from update_agent.jobs import FAILED, SUCCEEDED
from update_agent.result import FlashResult
from update_agent.rollback import reflash, require_image, switch_bank
from update_agent.sequencer import ProgressCallback

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    state: str  # succeeded | failed
    result: dict[str, Any] | None
    error: dict[str, Any] | None


def error_record(error: BaseException, step: str | None = None) -> dict[str, Any]:
    """The wire form of an error: class, message, and step / NRC / service when known."""
    record: dict[str, Any] = {"class": type(error).__name__, "message": str(error), "step": step}
    if isinstance(error, NegativeResponseError):
        record["nrc"] = f"{error.nrc:#04x}"
        record["service"] = f"{error.service:#04x}"
    return record


def _outcome(result: FlashResult, method: str | None = None, extra: Mapping[str, Any] | None = None) -> Outcome:
    data = result.to_dict()
    if method is not None:
        data["method"] = method
    data.update(extra or {})
    if result.error is None:
        return Outcome(SUCCEEDED, data, None)
    return Outcome(FAILED, data, error_record(result.error, result.failed_step))


def check_digests(path: str | Path, request: Mapping[str, Any]) -> None:
    """The image file against the ``length`` and ``hashes`` of its verified target, when the request has them.

    dmclient verified the file when it downloaded it; the flash may come hours later (consent, a
    rollback), and the file sits on the board's storage in between. A file changed since (bit rot,
    tampering) fails the job here, before it is parsed or a byte goes on the bus: a bad checksum
    would not catch it, as the checkMemory CRC is computed from the very same bytes.
    """
    if "length" not in request and "hashes" not in request:
        return
    p = Path(path)
    what = f"image {p} (changed since it was verified?)"
    try:
        size = p.stat().st_size
        if "length" in request and size != request["length"]:
            raise VerificationError(f"{what}: {size} bytes, its target has {request['length']}")
        if "hashes" in request:
            hasher = hash_file(p, sha512="sha512" in request["hashes"])
            hasher.verify(Hashes.parse(request["hashes"], "hashes"), what)
    except OSError as e:
        raise VerificationError(f"image {p}: cannot be read to check its digests: {e}") from e


def run_job(vehicle: VehicleConfig, kind: str, ecu: str, request: Mapping[str, Any],
            progress: ProgressCallback | None = None) -> Outcome:
    """Run one flash / rollback job to its end."""
    try:
        if kind == "flash":
            check_digests(request["image_path"], request)
            image = load_image(request["image_path"], fmt=request.get("format"),
                               base_address=request.get("base_address"))
            return _outcome(flash_ecu(vehicle, ecu, image, progress=progress,
                                      target_version=request.get("software_version")))
        method = request["method"]
        if method == "switch_bank":
            switch = switch_bank(vehicle, ecu, expected_version=request.get("expected_version"), progress=progress)
            return _outcome(switch.result, method, switch.details())
        path = require_image(method, request.get("image_path"))
        check_digests(path, request)
        image = load_image(path, fmt=request.get("format"), base_address=request.get("base_address"))
        return _outcome(reflash(vehicle, ecu, image, progress=progress), method)
    except OtaError as e:  # refused before the first step: bad image, unknown ECU, bus not opened
        log.warning("%s job on %s failed before it started: %s", kind, ecu, e)
        return Outcome(FAILED, None, error_record(e))
    except Exception as e:  # a bug: the job fails with its class named, the daemon stays up
        log.exception("%s job on %s crashed", kind, ecu)
        return Outcome(FAILED, None, error_record(e))
