"""The consent offer the engine puts to the driver (``hmi_agent.consent.request``). Pure.

From the check result (assignment: ECUs, image sizes, releases) and the vehicle's
buses: versions, ECUs, the bytes to flash, release notes (per ECU its software version
and release; each value of a configuration change), what the driver cannot do meanwhile,
``mandatory``/``deadline`` when
the assignment carries them (the release's policy, signed by the Director; the
deadline goes from ISO 8601 UTC to seconds since the epoch), and the estimated install time:

    per bus: sum over its ECUs of (image bytes * 8 / (bitrate * WIRE_EFFICIENCY) + PER_ECU_S)
    install: the slowest bus (buses flash in parallel) + FIXED_S

``WIRE_EFFICIENCY`` is the share of a classic CAN bus's bitrate that carries ISO-TP
payload (7 of 8 data bytes in a ~125-bit frame with stuffing: about 0.45); FD buses
use their data bitrate. ``PER_ECU_S`` covers session change, security access,
erase, checksum check and reset; ``FIXED_S`` the preconditions, OTA mode and the
final version check. A conservative estimate for the driver, not a promise.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

WIRE_EFFICIENCY = 0.45
PER_ECU_S = 20.0
FIXED_S = 15.0
RESTRICTIONS = ("the vehicle cannot be started or driven until the update ends",
                "charging and remote functions are paused")


def estimate_install_s(ecus: list[tuple[str, int]], buses: Mapping[str, tuple[str, int]]) -> float:
    """``ecus``: (name, image bytes); ``buses``: per ECU (bus, bitrate). Seconds, see the module docstring."""
    per_bus: dict[str, float] = {}
    for name, size in ecus:
        bus, bitrate = buses.get(name, (f"?{name}", 500_000))
        per_bus[bus] = per_bus.get(bus, 0.0) + size * 8 / (bitrate * WIRE_EFFICIENCY) + PER_ECU_S
    return round(max(per_bus.values(), default=0.0) + FIXED_S, 1)


def consent_offer(check: Mapping[str, Any], buses: Mapping[str, tuple[str, int]]) -> dict[str, Any]:
    """The offer of a campaign whose check result is ``check``."""
    assignment = check["assignment"]
    ecus = list(assignment["ecus"])
    notes = [f"{e['ecu']}: software {e.get('software_version', '?')} ({e.get('release', 'release')})" for e in ecus]
    # a configuration change (alone: a configuration campaign, the version stays) says what it switches
    notes += [f"configuration: {item} = {value}"
              for item, value in sorted(((assignment.get("config") or {}).get("values") or {}).items())]
    offer: dict[str, Any] = {
        "from_version": str(check["vehicle_version"]), "to_version": str(assignment["target_vehicle_version"]),
        "ecus": [str(e["ecu"]) for e in ecus], "size_bytes": sum(int(e["length"]) for e in ecus),
        # a Linux ECU (independent download) installs from its own storage: no bytes cross a CAN bus
        "est_install_s": estimate_install_s([(str(e["ecu"]), 0 if e.get("independent") else int(e["length"]))
                                             for e in ecus], buses),
        "release_notes": "\n".join(notes)[:16384],
        "restrictions": [*RESTRICTIONS, *(f"{e['ecu']} functions are unavailable" for e in ecus)][:32],
    }
    if assignment.get("mandatory") is not None:
        offer["mandatory"] = bool(assignment["mandatory"])
    if assignment.get("deadline") is not None:
        offer["deadline"] = datetime.fromisoformat(str(assignment["deadline"])).timestamp()
    return offer
