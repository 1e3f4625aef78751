"""Fuzzing the baseline XML loaders: the software baseline comes with every update, from outside."""

from __future__ import annotations

import re
from xml.sax.saxutils import escape

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.scenario import HW_BASELINE, SW_BASELINE
from update_agent.baseline.loading import parse_hardware_baseline, parse_software_baseline

from .fuzzkit import FUZZ, TIMEOUT, clear_outcome, mutate

pytestmark = pytest.mark.timeout(TIMEOUT)

FILES = {"software": (SW_BASELINE.read_bytes(), parse_software_baseline),
         "hardware": (HW_BASELINE.read_bytes(), parse_hardware_baseline)}
#: attribute values and element texts: where a well-formed but wrong file differs from a good one
_VALUES = re.compile(rb'"[^"]*"|>[^<]+<')


@pytest.mark.parametrize("kind", sorted(FILES))
def test_the_shipped_files_parse(kind: str) -> None:
    data, parse = FILES[kind]
    assert not isinstance(clear_outcome(parse, data, source=kind), BaseException)


@FUZZ
@given(kind=st.sampled_from(sorted(FILES)), data=st.data())
def test_byte_mutations(kind: str, data: st.DataObject) -> None:
    good, parse = FILES[kind]
    clear_outcome(parse, mutate(good, data.draw), source=f"fuzzed {kind} baseline")


@FUZZ
@given(kind=st.sampled_from(sorted(FILES)), data=st.data(),
       values=st.lists(st.text(max_size=30) | st.sampled_from(["", "0", "-1", "1e9", "99999999999999999999",
                                                               "BV OS D 1.0.0", "engine", " ", "\u0000"]),
                       min_size=1, max_size=4))
def test_well_formed_files_with_wrong_values(kind: str, data: st.DataObject, values: list[str]) -> None:
    good, parse = FILES[kind]
    out = good
    for value in values:
        spans = [m.span() for m in _VALUES.finditer(out)]
        start, end = spans[data.draw(st.integers(0, len(spans) - 1))]
        quote = out[start:start + 1]
        text = escape(value, {'"': "&quot;"}).encode("utf-8", "surrogatepass")
        out = out[:start + 1] + text + out[end - 1:] if quote in (b'"', b">") else out
    clear_outcome(parse, out, source=f"fuzzed {kind} baseline")


@FUZZ
@given(kind=st.sampled_from(sorted(FILES)), junk=st.binary(max_size=300))
def test_random_bytes(kind: str, junk: bytes) -> None:
    clear_outcome(FILES[kind][1], junk, source="random bytes")
