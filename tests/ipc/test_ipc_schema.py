"""The declaration language: what it accepts, what it says when it refuses, and agreement with jsonschema."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.ipc.error_codes import MethodNotFoundError, SchemaError
from agent.ipc.protocol import PROTOCOL
from agent.ipc.registry import Event, Group, Method, Protocol
from agent.ipc.schema import (
    AbsPath,
    AnyOf,
    AnyValue,
    Bool,
    Enum,
    Hex,
    Int,
    ListOf,
    MapOf,
    Null,
    Nullable,
    Num,
    Opt,
    Record,
    Schema,
    Str,
)

TARGET = Record(
    name=Str(min_len=1, max_len=16),
    url=Str(pattern=r"https://\S+"),
    length=Int(minimum=0, maximum=1 << 40),
    sha256=Hex(32),
    delta=Opt(Record(base_sha256=Hex(32), url=Str())),
    mode=Opt(Enum("full", "delta")),
    path=Opt(AbsPath()),
)
ORDER = Record(targets=ListOf(TARGET, min_items=1, max_items=3), priority=Opt(Num(minimum=0, maximum=1)))
GOOD = {"targets": [{"name": "engine", "url": "https://b/e.bin", "length": 10, "sha256": "ab" * 32}]}


def error(schema: Schema, value: object) -> str:
    with pytest.raises(SchemaError) as info:
        schema.validate(value, "params")
    return str(info.value)


def test_a_valid_order_passes() -> None:
    ORDER.validate(GOOD, "params")
    ORDER.validate({**GOOD, "priority": 1}, "params")


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda o: o["targets"][0].pop("url"), "params.targets[0]: missing required field 'url'"),
    (lambda o: o["targets"][0].update(sha256="AB" * 32),
     "params.targets[0].sha256: expected 32 bytes as 64 hex digits"),
    (lambda o: o["targets"][0].update(length=1.0), "params.targets[0].length: expected an integer in [0, "),
    (lambda o: o["targets"][0].update(length=True), "expected an integer in [0, 1099511627776], got a boolean"),
    (lambda o: o["targets"][0].update(length=-1), "got an integer -1"),
    (lambda o: o["targets"][0].update(mode="patch"), "params.targets[0].mode: expected one of 'full', 'delta'"),
    (lambda o: o["targets"][0].update(colour="red"), "params.targets[0]: unknown field 'colour' (known: name,"),
    (lambda o: o["targets"][0].update(name=""), "params.targets[0].name: expected a string of 1 to 16 characters"),
    (lambda o: o["targets"][0].update(delta={"url": "x"}), "params.targets[0].delta: missing required field"),
    (lambda o: o["targets"][0].update(path="relative/p"), "params.targets[0].path: expected an absolute path"),
    (lambda o: o.update(targets=[]), "params.targets: expected a list of 1 to 3 items, got a list of 0 items"),
    (lambda o: o.update(priority=float("inf")), "params.priority: expected a number in [0, 1], got a number inf"),
    (lambda o: o.update(priority=2), "params.priority: expected a number in [0, 1], got an integer 2"),
])
def test_refusals_name_the_field_what_was_expected_and_what_came(mutate: Any, message: str) -> None:
    import copy
    order = copy.deepcopy(GOOD)
    mutate(order)
    assert message in error(ORDER, order)


def test_long_values_are_cut_in_messages() -> None:
    message = error(Record(x=Int()), {"x": "y" * 10_000})
    assert len(message) < 150


def test_other_constructors() -> None:
    Nullable(Int()).validate(None)
    Nullable(Int()).validate(3)
    assert "expected null or an integer" in error(Nullable(Int()), "3")
    assert "got a string" in error(AnyOf(Int(), Bool()), "x")
    assert "params.a[0]" in error(AnyOf(Int(), Record(a=ListOf(Int()))), {"a": ["x"]})
    MapOf(Int(), key=Str(pattern="[a-z]+")).validate({"ab": 1})
    assert "params key 'A1'" in error(MapOf(Int(), key=Str(pattern="[a-z]+")), {"A1": 1})
    assert "params.ab" in error(MapOf(Int()), {"ab": "1"})
    AnyValue().validate({"any": [1, None]})
    assert "expected null" in error(Null(), 0)
    Record({"from": Str()}, to=Str()).validate({"from": "a", "to": "b"})


def test_declarations_are_checked_when_written() -> None:
    with pytest.raises(ValueError, match=r"must start with 'dm.'"):
        Group("dm", Method("other.x"))
    with pytest.raises(ValueError, match=r"declared twice"):
        Group("dm", Method("dm.x"), Method("dm.x"))
    with pytest.raises(ValueError, match=r"declared in two groups"):
        Protocol(Group("dm", Method("dm.x")), Group("dm", Method("dm.x")))
    with pytest.raises(TypeError, match=r"params must be a Record"):
        Method("dm.x", params=ListOf(Int()))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"bad method/event name"):
        Method("rpc.discover")
    with pytest.raises(ValueError):
        Int(minimum=3, maximum=1)


def test_protocol_lookups_say_what_exists() -> None:
    dm = PROTOCOL.for_daemon("dmclient")
    with pytest.raises(MethodNotFoundError, match=r"unknown method 'dmclient.nope'"):
        dm.check_params("dmclient.nope", {})
    with pytest.raises(SchemaError, match=r"unknown event 'nope'; dmclient publishes: daemon.state"):
        dm.check_event("nope", {})
    with pytest.raises(KeyError, match=r"no protocol group for daemon 'ghost'"):
        PROTOCOL.for_daemon("ghost")
    assert dm.check_params("daemon.ping", None) == {}
    with pytest.raises(SchemaError, match=r"daemon.ping: params: expected an object, got a list"):
        dm.check_params("daemon.ping", [1])


def test_every_daemon_serves_the_common_methods() -> None:
    for daemon in PROTOCOL.daemons:
        served = PROTOCOL.for_daemon(daemon)
        assert {"daemon.ping", "daemon.status", "subscribe", "unsubscribe"} <= set(served.methods)


def test_the_whole_protocol_exports_as_valid_json_schema() -> None:
    doc = PROTOCOL.json_schema()
    for group in doc["groups"]:
        for entry in [*group["methods"].values(), *group["events"].values()]:
            jsonschema.Draft202012Validator.check_schema(entry["params"])
    assert len(PROTOCOL.fingerprint) == 16
    changed = PROTOCOL.with_groups(Group("zz", Event("zz.e")))
    assert changed.fingerprint != PROTOCOL.fingerprint


# -- differential: our validator against the jsonschema reference implementation -------------

def _strict_validator(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    # our Int refuses 1.0; teach jsonschema the same so the two can be compared
    checker = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _c, v: isinstance(v, int) and not isinstance(v, bool))
    cls = jsonschema.validators.extend(jsonschema.Draft202012Validator, type_checker=checker)
    return cls(schema)


SAMPLES: list[Schema] = [
    ORDER,
    TARGET,
    Record(a=Int(minimum=-5, maximum=5), b=Opt(Nullable(Enum("x", "y")))),
    ListOf(AnyOf(Int(maximum=0), Str(max_len=2)), max_items=4),
    MapOf(ListOf(Bool()), key=Str(pattern="[a-c]{1,2}")),
    Num(minimum=-1.5, maximum=2),
    Hex(2),
]

leaf = (st.none() | st.booleans() | st.integers(-10, 10) | st.sampled_from([1.0, 0.5, -1.5, 2.0, 1e300])
        | st.sampled_from(["", "x", "y", "ab", "abc", "ab" * 32, "https://h/p", "/abs", "a1"]))
json_values = st.recursive(
    leaf,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(
        st.sampled_from(["a", "b", "c", "ab", "name", "url", "length", "sha256", "targets", "mode", "z"]),
        c, max_size=5),
    max_leaves=20,
)


@settings(max_examples=300)
@given(index=st.integers(0, len(SAMPLES) - 1), value=json_values)
def test_validator_agrees_with_jsonschema_on_its_own_export(index: int, value: object) -> None:
    schema = SAMPLES[index]
    try:
        schema.validate(value)
        ours = True
    except SchemaError:
        ours = False
    theirs = _strict_validator(schema.json_schema()).is_valid(value)
    assert ours == theirs, f"{schema.json_schema()} on {value!r}: ours={ours} jsonschema={theirs}"


def test_differential_corpus_includes_valid_values() -> None:
    # the random corpus is mostly invalid; make sure both also accept the same valid ones
    for schema, value in [(ORDER, GOOD), (SAMPLES[2], {"a": 5, "b": None}), (SAMPLES[3], [0, "ab", -3]),
                          (SAMPLES[4], {"ab": [True]}), (SAMPLES[5], 2), (SAMPLES[6], "0a1b")]:
        schema.validate(value)
        assert _strict_validator(schema.json_schema()).is_valid(value)


def test_records_extend_keeping_optional_fields_optional() -> None:
    base = Record(a=Int(), b=Opt(Str()))
    wider = base.extend(c=Bool())
    wider.validate({"a": 1, "c": True})
    assert "missing required field 'c'" in error(wider, {"a": 1})
    with pytest.raises(ValueError, match=r"field 'a' is already in the record"):
        base.extend(a=Str())
