"""The engine's consent offer: install-time estimate from image sizes and bus bitrates, notes, restrictions."""

from __future__ import annotations

from typing import Any

from agent.engine.offer import FIXED_S, PER_ECU_S, WIRE_EFFICIENCY, consent_offer, estimate_install_s

BUSES = {"engine": ("powertrain", 500_000), "brake": ("powertrain", 500_000), "body": ("body", 125_000)}


def test_ecus_on_one_bus_add_up_buses_run_in_parallel() -> None:
    one = 450_000 * 8 / (500_000 * WIRE_EFFICIENCY) + PER_ECU_S  # 16 s on the wire + overhead
    assert estimate_install_s([("engine", 450_000)], BUSES) == round(one + FIXED_S, 1)
    assert estimate_install_s([("engine", 450_000), ("brake", 450_000)], BUSES) == round(2 * one + FIXED_S, 1)
    slow_body = 450_000 * 8 / (125_000 * WIRE_EFFICIENCY) + PER_ECU_S  # the slower bus decides
    assert estimate_install_s([("engine", 450_000), ("body", 450_000)], BUSES) == round(slow_body + FIXED_S, 1)


def test_offer_carries_notes_restrictions_and_a_mandatory_flag_from_the_assignment() -> None:
    assignment: dict[str, Any] = {
        "target_vehicle_version": "V2", "mandatory": True, "deadline": "2027-01-15T08:00:00Z",
        "ecus": [{"ecu": "engine", "length": 1000, "software_version": "ENG-2", "release": "r2"}]}
    check = {"vehicle_version": "V1", "assignment": assignment}
    offer = consent_offer(check, BUSES)
    assert (offer["from_version"], offer["to_version"], offer["ecus"], offer["size_bytes"]) == \
        ("V1", "V2", ["engine"], 1000)
    assert offer["release_notes"] == "engine: software ENG-2 (r2)"
    assert "engine functions are unavailable" in offer["restrictions"]
    assert offer["mandatory"] is True and offer["deadline"] == 1_800_000_000.0  # the signed ISO time, as epoch s
    assignment["mandatory"] = False  # a release that says "not mandatory" says so to the HMI agent
    del assignment["deadline"]
    assert consent_offer(check, BUSES)["mandatory"] is False and "deadline" not in consent_offer(check, BUSES)
    del assignment["mandatory"]
    assert "mandatory" not in consent_offer(check, BUSES)
