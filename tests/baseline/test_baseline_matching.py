"""The matching engine against the bench baselines: what a user sees for each vehicle state."""

from __future__ import annotations

import json

from update_agent.baseline import HardwareBaseline, SoftwareBaseline, match, parse_software_baseline
from update_agent.version_reading import VersionReading

T = 1_700_000_000.0
HW = {"engine": "H1.0", "brake": "H2.1", "body": "H1.2"}


def readings(software: dict[str, str], hardware: dict[str, str] | None = None,
             silent: tuple[str, ...] = (), absent: tuple[str, ...] = ()) -> dict[str, VersionReading]:
    hw = {**HW, **(hardware or {})}
    out: dict[str, VersionReading] = {}
    for ecu, sw in software.items():
        if ecu in absent:
            continue
        if ecu in silent:
            out[ecu] = VersionReading.not_answering(ecu, "uds", T, "no response within 0.2 s")
        else:
            out[ecu] = VersionReading(ecu, "uds", T, True, hardware_version=hw[ecu], software_version=sw)
    return out


SEQ1 = {"engine": "1.0.0", "brake": "3.4.0", "body": "2.0.0"}
SEQ2 = {"engine": "1.1.0", "brake": "3.4.0", "body": "2.0.0"}
SEQ3 = {"engine": "1.1.0", "brake": "3.5.0", "body": "2.1.0"}


def test_exact_match_at_the_top_stops_after_one_entry(hw_baseline: HardwareBaseline,
                                                      sw_baseline: SoftwareBaseline) -> None:
    report = match(hw_baseline, sw_baseline, readings(SEQ3))
    assert report.ok and report.reasons() == []
    assert report.hardware_version == "BV-HW-A"
    assert report.vehicle_version == "BV OS D 1.2.0"
    assert report.software.matched is not None and report.software.matched.sequence == 3
    assert report.software.compared == 1


def test_match_at_a_lower_sequence(hw_baseline: HardwareBaseline, sw_baseline: SoftwareBaseline) -> None:
    report = match(hw_baseline, sw_baseline, readings(SEQ1))
    assert report.ok and report.vehicle_version == "BV OS D 1.0.0"
    assert report.software.compared == 3
    report = match(hw_baseline, sw_baseline, readings(SEQ2))
    assert report.vehicle_version == "BV OS D 1.1.0" and report.software.compared == 2


def test_no_match_names_the_nearest_entry_and_the_ecus_that_differ(hw_baseline: HardwareBaseline,
                                                                   sw_baseline: SoftwareBaseline) -> None:
    # brake flashed to its sequence-3 version while the rest is on sequence 1: sequence 1
    # differs in brake only, 2 in engine and brake, 3 in engine and body
    report = match(hw_baseline, sw_baseline, readings({**SEQ1, "brake": "3.5.0"}))
    assert not report.ok and report.software.status == "no-match" and report.vehicle_version is None
    assert report.software.nearest is not None and report.software.nearest.sequence == 1
    [finding] = report.software.findings
    assert (finding.ecu, finding.problem, finding.found, set(finding.expected)) == (
        "brake", "software-mismatch", "3.5.0", {"3.4.0"})
    assert report.reasons() == [
        "no vehicle software version matches (nearest: BV OS D 1.0.0, sequence 1)",
        "brake: software version 3.5.0 (expected 3.4.0)",
    ]


def test_nearest_ties_go_to_the_higher_sequence(hw_baseline: HardwareBaseline,
                                                sw_baseline: SoftwareBaseline) -> None:
    # engine 1.1.0, brake 3.4.0, body 2.1.0 differs from sequence 3 in brake only and from
    # sequence 2 in body only (sequence 1: engine and body): a tie, the higher sequence wins
    report = match(hw_baseline, sw_baseline, readings({**SEQ2, "body": "2.1.0"}))
    assert report.software.nearest is not None and report.software.nearest.sequence == 3
    assert [(f.ecu, f.found) for f in report.software.findings] == [("brake", "3.4.0")]


def test_nearest_is_the_entry_with_fewest_differences(hw_baseline: HardwareBaseline,
                                                      sw_baseline: SoftwareBaseline) -> None:
    # differs from sequence 1 in body only, from 2 and 3 in two ECUs each
    report = match(hw_baseline, sw_baseline, readings({**SEQ1, "body": "2.1.0"}))
    assert report.software.nearest is not None and report.software.nearest.sequence == 1
    assert [f.ecu for f in report.software.findings] == ["body"]


def test_missing_ecu_fails_the_hardware_check(hw_baseline: HardwareBaseline,
                                              sw_baseline: SoftwareBaseline) -> None:
    report = match(hw_baseline, sw_baseline, readings(SEQ2, absent=("body",)))
    assert not report.ok and not report.hardware.ok
    assert report.hardware.nearest is not None and report.hardware.nearest.version == "BV-HW-A"
    [finding] = report.hardware.findings
    assert (finding.ecu, finding.problem) == ("body", "missing")
    assert report.software.status == "not-checked"
    assert report.reasons() == [
        "hardware baseline not matched (nearest: BV-HW-A)",
        "body: missing (no reading; expected H1.2 or H1.3)",
        "software baseline not-checked: the hardware baseline did not match",
    ]


def test_wrong_hardware_version_is_reported(hw_baseline: HardwareBaseline,
                                            sw_baseline: SoftwareBaseline) -> None:
    report = match(hw_baseline, sw_baseline, readings(SEQ2, hardware={"engine": "H9.9"}))
    assert not report.hardware.ok
    [finding] = report.hardware.findings
    assert (finding.ecu, finding.problem, finding.found) == ("engine", "hardware-mismatch", "H9.9")
    assert "engine: hardware version H9.9 (expected H1.0)" in report.reasons()


def test_second_vehicle_hardware_version_matches(hw_baseline: HardwareBaseline,
                                                 sw_baseline: SoftwareBaseline) -> None:
    report = match(hw_baseline, sw_baseline, readings(SEQ2, hardware={"brake": "H3.0", "body": "H1.3"}))
    assert report.ok and report.hardware_version == "BV-HW-B" and report.vehicle_version == "BV OS D 1.1.0"


def test_non_answering_ecu_is_reported_as_such(hw_baseline: HardwareBaseline,
                                               sw_baseline: SoftwareBaseline) -> None:
    report = match(hw_baseline, sw_baseline, readings(SEQ2, silent=("brake",)))
    assert not report.ok
    [finding] = report.hardware.findings
    assert (finding.ecu, finding.problem, finding.detail) == ("brake", "not-answering", "no response within 0.2 s")
    assert "brake: not answering (no response within 0.2 s); expected H2.1" in report.reasons()
    rows = {row.ecu: row for row in report.rows()}
    assert rows["brake"].reading is not None and not rows["brake"].reading.answered


def test_answered_without_the_version_is_unreadable(hw_baseline: HardwareBaseline,
                                                    sw_baseline: SoftwareBaseline) -> None:
    r = readings(SEQ2)
    r["body"] = VersionReading("body", "uds", T, True, hardware_version="H1.2", software_version=None,
                               detail="software_version: DID F189: NRC 0x31 requestOutOfRange")
    report = match(hw_baseline, sw_baseline, r)
    assert report.hardware.ok and report.software.status == "no-match"
    [finding] = report.software.findings
    assert finding.problem == "unreadable" and "NRC 0x31" in (finding.detail or "")


def test_software_baseline_for_other_hardware_is_not_applicable(hw_baseline: HardwareBaseline,
                                                                sw_baseline: SoftwareBaseline) -> None:
    only_b = parse_software_baseline(
        b'<softwareBaseline xmlns="urn:ota-agent-stack:software-baseline:1" format="1" vehicleModel="BV" '
        b'platform="OS"><hardwareVersion>BV-HW-B</hardwareVersion>'
        b'<vehicleVersion sequence="1" version="BV OS D 1.0.0"><ecu id="engine" name="E">'
        b'<softwareVersion>1.0.0</softwareVersion></ecu></vehicleVersion></softwareBaseline>', source="b.xml")
    report = match(hw_baseline, only_b, readings(SEQ1))
    assert report.hardware_version == "BV-HW-A" and report.software.status == "not-applicable"
    assert not report.ok and "not BV-HW-A" in report.reasons()[0]


def test_extra_ecu_is_listed_but_does_not_block(hw_baseline: HardwareBaseline,
                                                sw_baseline: SoftwareBaseline) -> None:
    r = readings(SEQ2)
    r["gateway"] = VersionReading("gateway", "uds", T, True, hardware_version="G1", software_version="5.0")
    report = match(hw_baseline, sw_baseline, r)
    assert report.ok
    rows = {row.ecu: row for row in report.rows()}
    assert not rows["gateway"].in_baseline
    as_json = report.as_dict(now=T + 2.5)
    by_ecu = {e["ecu"]: e for e in as_json["ecus"]}
    assert by_ecu["gateway"]["problems"] == ["not-in-baseline"]
    assert by_ecu["engine"]["age_s"] == 2.5 and by_ecu["engine"]["source"] == "uds"
    json.dumps(as_json)  # serialisable
