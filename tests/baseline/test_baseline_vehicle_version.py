"""The vehicle software version grammar ``AA OS P S.X.Y<.Z><-T>``."""

from __future__ import annotations

import re
from importlib import resources

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from agent.errors import ConfigurationError, VehicleVersionError
from update_agent import vehicle_version
from update_agent.baseline import xmlfile
from update_agent.vehicle_version import VehicleVersion, parse

UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
DIGITS = "0123456789"


@pytest.mark.parametrize(("text", "fields"), [
    ("BV OS D 1.0.0", ("BV", "OS", "D", 1, 0, 0, None, None)),
    ("E1 V2 P 3.0.1.17-RC2", ("E1", "V2", "P", 3, 0, 1, 17, "RC2")),
    ("HQ OS 7 0.0.0-hotfix2", ("HQ", "OS", "7", 0, 0, 0, None, "hotfix2")),
    ("AA OS T 99999.99999.99999.99999", ("AA", "OS", "T", 99999, 99999, 99999, 99999, None)),
])
def test_examples_parse_into_their_fields_and_print_back(text: str, fields: tuple[object, ...]) -> None:
    v = parse(text)
    assert (v.model, v.platform, v.phase, v.major, v.minor, v.patch, v.build, v.tag) == fields
    assert str(v) == text


@pytest.mark.parametrize(("text", "position", "expected"), [
    ("", 0, "vehicle model code AA"),
    ("e1 OS D 1.2.3", 0, "upper-case letter"),
    ("1E OS D 1.2.3", 0, "upper-case letter (vehicle model code AA"),
    ("E OS D 1.2.3", 1, "vehicle model code AA"),
    ("E1  OS D 1.2.3", 3, "software platform code OS"),
    ("E1 OS D1.2.3", 7, "one space after the project phase"),
    ("E1 OS DD 1.2.3", 7, "one space after the project phase"),
    ("E1 OS D 1.2", 11, "'.' then the patch number Y"),
    ("E1 OS D 1..3", 10, "minor number X"),
    ("E1 OS D 01.2.3", 8, "without a leading zero"),
    ("E1 OS D 1.2.03", 12, "patch number Y without a leading zero"),
    ("E1 OS D 100000.2.3", 8, "at most 99999"),
    ("E1 OS D 1.2.3.", 14, "build number Z"),
    ("E1 OS D 1.2.3-", 14, "tag T"),
    ("E1 OS D 1.2.3-RC_1", 16, "end of string"),
    ("E1 OS D 1.2.3 ", 13, "end of string"),
    (" E1 OS D 1.2.3", 0, "vehicle model code AA"),
    ("E1 OS D 1.2.3.4.5", 15, "'-' then a tag"),
    ("E1 OS D 1.2.3-ABCDEFGHIJKLMNOPQ", 30, "at most 16 characters"),
    ("E1 OS D \uff11.2.3", 8, "a digit (major number S)"),  # full-width digit
    ("E1 OS D 1.2.3\n", 13, "end of string"),
])
def test_malformed_strings_name_the_position_and_what_was_expected(text: str, position: int,
                                                                   expected: str) -> None:
    with pytest.raises(VehicleVersionError) as info:
        parse(text)
    err = info.value
    assert err.position == position
    assert expected in err.expected
    assert f"at index {position}" in str(err) and expected in str(err)
    assert isinstance(err, ConfigurationError) and err.exit_code == 2


def test_error_names_the_file_and_key_when_given() -> None:
    with pytest.raises(VehicleVersionError) as info:
        parse("E1 OS D 1.2", source="baseline.xml", key="vehicleVersion[3]")
    assert str(info.value).startswith("baseline.xml: vehicleVersion[3]: invalid vehicle version")


def test_direct_construction_is_held_to_the_grammar() -> None:
    with pytest.raises(VehicleVersionError):
        VehicleVersion("e1", "OS", "D", 1, 2, 3)
    with pytest.raises(VehicleVersionError):
        VehicleVersion("E1", "OS", "D", -1, 2, 3)
    with pytest.raises(VehicleVersionError):
        VehicleVersion("E1", "OS", "D", 1, 2, 3, tag="")
    with pytest.raises(VehicleVersionError):
        VehicleVersion("E1", "OS", "D", True, 2, 3)  # type: ignore[arg-type]


def test_ordering_examples() -> None:
    ordered = [
        "BV OS D 1.2.3-RC2", "BV OS D 1.2.3-RC10", "BV OS D 1.2.3", "BV OS D 1.2.3.0-b",
        "BV OS D 1.2.3.0", "BV OS D 1.2.3.7", "BV OS D 1.2.4", "BV OS D 1.10.0", "BV OS D 2.0.0",
    ]
    versions = [parse(t) for t in ordered]
    assert sorted(reversed(versions)) == versions
    assert parse("BV OS D 1.0.0").same_line(parse("BV OS P 2.0.0"))
    assert not parse("BV OS D 1.0.0").same_line(parse("BW OS D 1.0.0"))


# -- properties ---------------------------------------------------------------

codes2 = st.builds(lambda a, b: a + b, st.sampled_from(UPPER), st.sampled_from(UPPER + DIGITS))
numbers = st.integers(min_value=0, max_value=vehicle_version.MAX_NUMBER)
tags = st.text(alphabet=UPPER + UPPER.lower() + DIGITS, min_size=1, max_size=vehicle_version.MAX_TAG)
versions = st.builds(VehicleVersion, codes2, codes2, st.sampled_from(UPPER + DIGITS), numbers, numbers,
                     numbers, st.none() | numbers, st.none() | tags)


@given(versions)
def test_round_trip(v: VehicleVersion) -> None:
    assert parse(str(v)) == v
    assert str(parse(str(v))) == str(v)
    assert vehicle_version.is_valid(str(v))


@given(versions, versions)
def test_order_is_consistent_with_the_key_and_with_equality(a: VehicleVersion, b: VehicleVersion) -> None:
    assert (a < b) == (a.sort_key() < b.sort_key())
    assert (a == b) == (a.sort_key() == b.sort_key()) == (str(a) == str(b))
    # trichotomy: exactly one of <, ==, >
    assert [a < b, a == b, a > b].count(True) == 1
    assert (a <= b) == (not a > b)
    if a == b:
        assert hash(a) == hash(b)


@given(versions, versions, versions)
def test_order_is_transitive(a: VehicleVersion, b: VehicleVersion, c: VehicleVersion) -> None:
    x, y, z = sorted([a, b, c])
    assert x <= y <= z and x <= z


@given(versions, st.sampled_from(["build", "tag"]))
def test_prerelease_and_build_rules(v: VehicleVersion, part: str) -> None:
    base = VehicleVersion(v.model, v.platform, v.phase, v.major, v.minor, v.patch)
    if part == "tag":
        assert VehicleVersion(base.model, base.platform, base.phase, base.major, base.minor, base.patch,
                              tag="RC1") < base
    else:
        assert base < VehicleVersion(base.model, base.platform, base.phase, base.major, base.minor,
                                     base.patch, build=0)


_near_grammar = st.text(alphabet="AB1 0.-Zz9", max_size=24) | versions.map(str).flatmap(
    lambda s: st.integers(0, len(s)).flatmap(
        lambda i: st.sampled_from(["", " ", ".", "0", "-", "x", "A"]).map(lambda c: s[:i] + c + s[i + 1:])))


@given(_near_grammar)
def test_parser_xsd_pattern_and_regex_agree(text: str) -> None:
    accepted = True
    try:
        v = parse(text)
    except VehicleVersionError as e:
        accepted = False
        assert 0 <= e.position <= len(text)
    else:
        assert str(v) == text  # one spelling per version
    assert vehicle_version.is_valid(text) == accepted
    assert _xsd_accepts(text) == accepted


def _xsd_accepts(text: str) -> bool:
    schema = xmlfile.schema(xmlfile.SOFTWARE_SCHEMA)
    ns = "urn:ota-agent-stack:software-baseline:1"
    root = etree.Element(f"{{{ns}}}softwareBaseline", format="1", vehicleModel="BV", platform="OS")
    vv = etree.SubElement(root, f"{{{ns}}}vehicleVersion", sequence="1", version=text)
    ecu = etree.SubElement(vv, f"{{{ns}}}ecu", id="e", name="e")
    etree.SubElement(ecu, f"{{{ns}}}softwareVersion").text = "1"
    return bool(schema.validate(root))


def test_xsd_pattern_is_the_module_pattern() -> None:
    xsd = (resources.files("configs") / xmlfile.SOFTWARE_SCHEMA).read_text(encoding="utf-8")
    patterns = re.findall(r'<xs:pattern value="([^"]+)"/>', xsd)
    assert vehicle_version.PATTERN in patterns
