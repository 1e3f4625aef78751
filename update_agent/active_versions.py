"""Active ECU version collection: UDS ReadDataByIdentifier, as readings.

The UDS work (sessions, DIDs F187/F189/F191/F18C or the ECU's configured
``version_dids``, per-ECU timeouts that mark an ECU not answering) is
:func:`update_agent.versions.read_versions`; this module only turns its
results into :class:`~update_agent.version_reading.VersionReading` objects
with source ``uds`` and the time of the read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from agent.config.vehicle import VehicleConfig
from update_agent.version_reading import VersionReading
from update_agent.versions import EcuVersions, read_versions


def reading_from_uds(result: EcuVersions, read_at: float) -> VersionReading:
    if not result.answering:
        return VersionReading.not_answering(result.ecu, "uds", read_at, result.error or "no answer")
    errors = "; ".join(f"{name}: {why}" for name, why in sorted(result.errors.items()))
    return VersionReading(
        ecu=result.ecu, source="uds", read_at=read_at, answered=True,
        hardware_version=result.values.get("hardware_version"),
        software_version=result.values.get("software_version"),
        part_number=result.values.get("part_number"),
        serial_number=result.values.get("serial_number"),
        detail=errors or None,
    )


def collect_active(vehicle: VehicleConfig, ecus: Iterable[str] | None = None, *,
                   timeout: float | None = None, clock: Callable[[], float] = time.time,
                   reader: Callable[..., list[EcuVersions]] = read_versions) -> dict[str, VersionReading]:
    """Read every (named) ECU over UDS; ECUs that do not answer get a not-answering reading."""
    results = reader(vehicle, list(ecus) if ecus is not None else None, timeout=timeout)
    stamp = clock()
    return {r.ecu: reading_from_uds(r, stamp) for r in results}
