"""Baseline XML files: the bench instances load; invalid and hostile files are refused clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import BaselineFileError, ConfigurationError
from update_agent.baseline import (
    HardwareBaseline,
    SoftwareBaseline,
    check_pair,
    load_hardware_baseline,
    load_software_baseline,
    parse_hardware_baseline,
    parse_software_baseline,
    xmlfile,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
BENCH_SW = CONFIGS / "bench-sw-baseline.xml"
BENCH_VEHICLE = CONFIGS / "bench-vehicle.yaml"

SW_HEAD = ('<softwareBaseline xmlns="urn:ota-agent-stack:software-baseline:1" format="1" '
           'vehicleModel="BV" platform="OS">')
HW_HEAD = '<hardwareBaseline xmlns="urn:ota-agent-stack:hardware-baseline:1" format="1" vehicleModel="BV">'


def _entry(seq: int, version: str, engine: str = "1.0.0") -> str:
    return (f'<vehicleVersion sequence="{seq}" version="{version}">'
            f'<ecu id="engine" name="Engine"><softwareVersion>{engine}</softwareVersion></ecu>'
            '</vehicleVersion>')


def _sw(*body: str) -> bytes:
    return ("\n".join([SW_HEAD, *body, "</softwareBaseline>"])).encode()


def test_bench_files_load_into_the_route(hw_baseline: HardwareBaseline, sw_baseline: SoftwareBaseline) -> None:
    assert [v.version for v in hw_baseline.variants] == ["BV-HW-A", "BV-HW-B"]
    a = hw_baseline.variants[0]
    assert list(a.ecus) == ["engine", "brake", "body"]
    assert a.ecus["body"].versions == {"H1.2", "H1.3"}
    assert [e.sequence for e in sw_baseline.entries] == [3, 2, 1]  # highest first: matching order
    assert [str(e.version) for e in sw_baseline.entries] == ["BV OS D 1.2.0", "BV OS D 1.1.0", "BV OS D 1.0.0"]
    assert sw_baseline.entry(1) is not None
    first = sw_baseline.entry(1)
    assert first is not None and {k: set(v.versions) for k, v in first.ecus.items()} == {
        "engine": {"1.0.0"}, "brake": {"3.4.0"}, "body": {"2.0.0"}}
    check_pair(hw_baseline, sw_baseline)


def test_bench_route_starts_at_the_simulators_initial_versions(sw_baseline: SoftwareBaseline) -> None:
    from agent.config.vehicle import load_vehicle_config

    vehicle = load_vehicle_config(BENCH_VEHICLE)
    first = sw_baseline.entry(1)
    assert first is not None
    for name, ecu in vehicle.ecus.items():
        assert ecu.sim is not None
        assert {ecu.sim.data["software_version"]} == set(first.ecus[name].versions)


@pytest.mark.parametrize(("body", "line", "element", "reason"), [
    ([_entry(1, "BV OS D 1.0.0"), _entry(1, "BV OS D 1.1.0")], 3, "vehicleVersion", "Duplicate key-sequence"),
    ([_entry(1, "BV OS D 1.0.0"), _entry(2, "BV OS D 1.0.0")], 3, "vehicleVersion", "Duplicate key-sequence"),
    ([_entry(1, "BV OS D 1.0")], 2, "vehicleVersion", "at index 11 (end of string): expected '.' then the patch"),
    ([_entry(1, "BV OS D 1.0.0").replace('id="engine"', 'id="bad id"')], 2, "ecu", "not accepted by the pattern"),
    ([_entry(1, "BV OS D 1.0.0").replace("<softwareVersion>1.0.0</softwareVersion>", "")], 2, "ecu",
     "Missing child element"),
    ([_entry(1, "BV OS D 1.0.0"), "<bogus/>"], 3, "bogus", "This element is not expected"),
    ([], 1, "softwareBaseline", "Missing child element"),
    ([_entry(1, "BV OS D 1.0.0", engine=" 1.0.0")], 2, "softwareVersion", "not accepted by the pattern"),
])
def test_schema_errors_name_line_element_and_reason(body: list[str], line: int, element: str,
                                                    reason: str) -> None:
    with pytest.raises(BaselineFileError) as info:
        parse_software_baseline(_sw(*body), source="sw.xml")
    err = info.value
    assert (err.line, err.element) == (line, element)
    assert reason in str(err)
    assert str(err).startswith(f"sw.xml: line {line}, element <{element}>: ")
    assert isinstance(err, ConfigurationError)


def test_a_higher_sequence_must_carry_a_newer_version() -> None:
    with pytest.raises(BaselineFileError) as info:
        parse_software_baseline(_sw(_entry(1, "BV OS D 1.1.0"), _entry(2, "BV OS D 1.0.0")), source="sw.xml")
    assert info.value.line == 3 and info.value.element == "vehicleVersion"
    assert "sequence 2 carries vehicle version 'BV OS D 1.0.0', which is not newer" in str(info.value)


def test_versions_must_be_of_the_files_model_and_platform() -> None:
    with pytest.raises(BaselineFileError) as info:
        parse_software_baseline(_sw(_entry(1, "XX OS D 1.0.0")), source="sw.xml")
    assert "not of this file's vehicle model 'BV'" in str(info.value) and info.value.line == 2


def test_wrong_root_and_not_xml() -> None:
    with pytest.raises(BaselineFileError, match="No matching global declaration"):
        parse_software_baseline(HW_HEAD.encode() + b"</hardwareBaseline>", source="x.xml")
    with pytest.raises(BaselineFileError, match=r"x.xml: line 2: not well-formed XML"):
        parse_hardware_baseline(b"<a>\n<b></a>", source="x.xml")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BaselineFileError, match=r"nope.xml: cannot read"):
        load_hardware_baseline(tmp_path / "nope.xml")


def test_oversized_file_is_refused_before_parsing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xmlfile, "MAX_BYTES", 1000)
    big = tmp_path / "big.xml"
    big.write_bytes(b" " * 1001)
    with pytest.raises(BaselineFileError, match="more than the 1000 allowed"):
        load_software_baseline(big)


def test_pair_check_refuses_other_model_and_unknown_hardware(hw_baseline: HardwareBaseline) -> None:
    other = parse_software_baseline(_sw(_entry(1, "BV OS D 1.0.0")).replace(b'vehicleModel="BV"',
                                    b'vehicleModel="ZZ"').replace(b"BV OS", b"ZZ OS"), source="sw.xml")
    with pytest.raises(BaselineFileError, match="vehicle model 'ZZ'"):
        check_pair(hw_baseline, other)
    unknown = parse_software_baseline(_sw("<hardwareVersion>BV-HW-X</hardwareVersion>",
                                          _entry(1, "BV OS D 1.0.0")), source="sw.xml")
    with pytest.raises(BaselineFileError, match="BV-HW-X that the hardware baseline"):
        check_pair(hw_baseline, unknown)


# -- hostile documents -------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE softwareBaseline [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<softwareBaseline xmlns="urn:ota-agent-stack:software-baseline:1" format="1" vehicleModel="BV" platform="OS">
<vehicleVersion sequence="1" version="BV OS D 1.0.0"><description>&lol9;</description>
<ecu id="engine" name="Engine"><softwareVersion>1.0.0</softwareVersion></ecu></vehicleVersion>
</softwareBaseline>
"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE softwareBaseline [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<softwareBaseline xmlns="urn:ota-agent-stack:software-baseline:1" format="1" vehicleModel="BV" platform="OS">
<vehicleVersion sequence="1" version="BV OS D 1.0.0"><description>&xxe;</description>
<ecu id="engine" name="Engine"><softwareVersion>1.0.0</softwareVersion></ecu></vehicleVersion>
</softwareBaseline>
"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE softwareBaseline SYSTEM "http://127.0.0.1:9/evil.dtd">
<softwareBaseline xmlns="urn:ota-agent-stack:software-baseline:1" format="1" vehicleModel="BV" platform="OS">
<vehicleVersion sequence="1" version="BV OS D 1.0.0">
<ecu id="engine" name="Engine"><softwareVersion>1.0.0</softwareVersion></ecu></vehicleVersion>
</softwareBaseline>
"""

PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE softwareBaseline [<!ENTITY % ext SYSTEM "file:///etc/passwd"> %ext;]>
<softwareBaseline xmlns="urn:ota-agent-stack:software-baseline:1" format="1" vehicleModel="BV" platform="OS">
<vehicleVersion sequence="1" version="BV OS D 1.0.0">
<ecu id="engine" name="Engine"><softwareVersion>1.0.0</softwareVersion></ecu></vehicleVersion>
</softwareBaseline>
"""

ENTITY_IN_ATTRIBUTE = b"""<?xml version="1.0"?>
<!DOCTYPE softwareBaseline [<!ENTITY v "BV OS D 1.0.0">]>
<softwareBaseline xmlns="urn:ota-agent-stack:software-baseline:1" format="1" vehicleModel="BV" platform="OS">
<vehicleVersion sequence="1" version="&v;">
<ecu id="engine" name="Engine"><softwareVersion>1.0.0</softwareVersion></ecu></vehicleVersion>
</softwareBaseline>
"""


@pytest.mark.parametrize("doc", [BILLION_LAUGHS, XXE, EXTERNAL_DTD, PARAMETER_ENTITY, ENTITY_IN_ATTRIBUTE],
                         ids=["billion-laughs", "xxe-file", "external-dtd", "parameter-entity",
                              "entity-in-attribute"])
def test_hostile_documents_are_refused_without_expansion(doc: bytes, tmp_path: Path) -> None:
    path = tmp_path / "hostile.xml"
    path.write_bytes(doc)
    with pytest.raises(BaselineFileError) as info:
        load_software_baseline(path)
    err = info.value
    assert err.element == "!DOCTYPE" and err.line == 2
    assert str(err).startswith(f"{path}: line 2, element <!DOCTYPE>: a DOCTYPE / DTD is not allowed")
    # nothing of /etc/passwd (or the expansion) leaks into the error
    assert "root:" not in str(err) and "lollol" not in str(err)


def test_parser_settings_never_resolve_or_fetch() -> None:
    # Belt and braces: even where a DOCTYPE got through, the parser substitutes nothing.
    from lxml import etree
    root = etree.fromstring(XXE, xmlfile.safe_parser())
    desc = root.find(".//{urn:ota-agent-stack:software-baseline:1}description")
    assert desc is not None and "root:" not in etree.tostring(desc).decode()


def test_the_shipped_file_still_loads_from_a_copy(tmp_path: Path) -> None:
    copy = tmp_path / "sw.xml"
    copy.write_bytes(BENCH_SW.read_bytes())
    assert len(load_software_baseline(copy).entries) == 3
