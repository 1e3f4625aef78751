"""Preconditions: configured rules over the vehicle state, evaluated to a verdict that names what failed.

A rule compares one signal with an expectation, or needs any one of several rules
(``any_of``: "battery >= 12.2 V or SoC >= 40 %")::

    - {name: parked, signal: vehicle_speed, op: "==", value: 0}
    - {name: gear, signal: gear, op: in, value: [P]}
    - {name: battery, any_of: [{signal: battery_voltage, op: ">=", value: 12.2},
                               {signal: state_of_charge, op: ">=", value: 40}]}

Operators: ``== != < <= > >= in not_in``. A signal with no value (absent, ``None``)
is *unknown* and fails its rule; so does a value of the wrong type (a string where a
number is compared): a precondition is never passed by default. Each failure names the
rule, the value seen and what was expected. Pure: the state is a mapping given in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent.config.node import Node

OPERATORS = ("==", "!=", "<", "<=", ">", ">=", "in", "not_in")
PHASES = ("download", "install")


@dataclass(frozen=True)
class Failure:
    rule: str
    value: Any
    expected: str

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "value": self.value, "expected": self.expected}


@dataclass(frozen=True)
class Verdict:
    ok: bool
    failed: tuple[Failure, ...]


@dataclass(frozen=True)
class Comparison:
    """``signal op value``."""

    name: str
    signal: str
    op: str
    value: Any

    @property
    def expected(self) -> str:
        return f"{self.signal} {self.op.replace('_', ' ')} {self.value!r}"

    def holds(self, state: Mapping[str, Any]) -> bool:
        seen = state.get(self.signal)
        if seen is None:
            return False
        if self.op in ("in", "not_in"):
            return (seen in self.value) == (self.op == "in")
        if self.op in ("==", "!="):
            return _same_kind(seen, self.value) and ((seen == self.value) == (self.op == "=="))
        if not (_number(seen) and _number(self.value)):
            return False
        a, b = float(seen), float(self.value)
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[self.op]

    def evaluate(self, state: Mapping[str, Any]) -> list[Failure]:
        if self.holds(state):
            return []
        return [Failure(self.name, state.get(self.signal), self.expected)]


@dataclass(frozen=True)
class AnyOf:
    """Holds when one of ``rules`` holds."""

    name: str
    rules: tuple[Comparison, ...]

    @property
    def expected(self) -> str:
        return " or ".join(r.expected for r in self.rules)

    def evaluate(self, state: Mapping[str, Any]) -> list[Failure]:
        if any(r.holds(state) for r in self.rules):
            return []
        return [Failure(self.name, {r.signal: state.get(r.signal) for r in self.rules}, self.expected)]


Rule = Comparison | AnyOf


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))


def _same_kind(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    return (_number(a) and _number(b)) or type(a) is type(b)


def evaluate(rules: Sequence[Rule], state: Mapping[str, Any]) -> Verdict:
    """Every rule against ``state``; ok only if none failed."""
    failed = tuple(f for rule in rules for f in rule.evaluate(state))
    return Verdict(not failed, failed)


# -- configuration ------------------------------------------------------------------------------
def parse_rules(node: Node) -> dict[str, tuple[Rule, ...]]:
    """The ``rules:`` section: a list of rules per phase (a phase left out has no rules)."""
    out: dict[str, tuple[Rule, ...]] = {}
    for phase in PHASES:
        out[phase] = tuple(node.items(phase, _rule, []))
    node.done()
    return out


def _rule(node: Node) -> Rule:
    if node.has("any_of"):
        name = node.get("name", str)
        rules = tuple(node.items("any_of", lambda n: _comparison(n, default_name=name)))
        if not rules:
            raise node.error("needs at least one rule", "any_of")
        node.done()
        return AnyOf(name, rules)
    return _comparison(node)


def _comparison(node: Node, default_name: str | None = None) -> Comparison:
    signal = node.get("signal", str)
    op = node.choice("op", OPERATORS)
    value = node.raw("value")
    name = node.get("name", str, default_name or signal)
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            raise node.error(f"operator {op!r} needs a non-empty list, got {value!r}", "value")
        value = tuple(value)
    elif op in ("<", "<=", ">", ">=") and not _number(value):
        raise node.error(f"operator {op!r} needs a number, got {value!r}", "value")
    elif value is None:
        raise node.error("needs a value (an unknown signal already fails every rule)", "value")
    node.done()
    return Comparison(name, signal, op, value)
