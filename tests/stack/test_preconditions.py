"""Preconditions: rules over the vehicle state; unknown never passes; each failure says rule, value, expected."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.config.node import Node
from agent.errors import ConfigurationError
from system_agent.preconditions import evaluate, parse_rules
from system_agent.vehicle_state import StateFileSource

RULES = {
    "install": [
        {"name": "parked", "signal": "vehicle_speed", "op": "==", "value": 0},
        {"name": "gear", "signal": "gear", "op": "in", "value": ["P"]},
        {"name": "battery", "any_of": [{"signal": "battery_voltage", "op": ">=", "value": 12.2},
                                       {"signal": "state_of_charge", "op": ">=", "value": 40}]},
    ],
}
PARKED = {"vehicle_speed": 0, "gear": "P", "battery_voltage": 12.6, "state_of_charge": 80}


def rules(data: dict[str, Any] | None = None) -> Any:
    return parse_rules(Node(data if data is not None else RULES, source="stack.yaml", path="system_agent.rules"))


def test_parked_car_passes() -> None:
    verdict = evaluate(rules()["install"], PARKED)
    assert verdict.ok and verdict.failed == ()


@pytest.mark.parametrize(("signal", "value", "rule", "expected"), [
    ("vehicle_speed", 12.5, "parked", "vehicle_speed == 0"),
    ("gear", "D", "gear", "gear in ('P',)"),
])
def test_each_failure_names_rule_value_and_expectation(signal: str, value: Any, rule: str, expected: str) -> None:
    verdict = evaluate(rules()["install"], {**PARKED, signal: value})
    assert not verdict.ok
    assert [(f.rule, f.value, f.expected) for f in verdict.failed] == [(rule, value, expected)]


def test_unknown_signal_fails_never_passes() -> None:
    state = {k: v for k, v in PARKED.items() if k != "vehicle_speed"}
    verdict = evaluate(rules()["install"], state)
    assert [(f.rule, f.value) for f in verdict.failed] == [("parked", None)]
    # every rule fails on an empty state, including both branches of any_of
    assert {f.rule for f in evaluate(rules()["install"], {}).failed} == {"parked", "gear", "battery"}


def test_any_of_needs_one_branch_and_reports_both_values() -> None:
    assert evaluate(rules()["install"], {**PARKED, "battery_voltage": 11.0}).ok  # SoC 80 % is enough
    verdict = evaluate(rules()["install"], {**PARKED, "battery_voltage": 11.0, "state_of_charge": 20})
    (failure,) = verdict.failed
    assert failure.rule == "battery"
    assert failure.value == {"battery_voltage": 11.0, "state_of_charge": 20}
    assert "battery_voltage >= 12.2" in failure.expected and "state_of_charge >= 40" in failure.expected


def test_wrong_type_fails_instead_of_comparing() -> None:
    verdict = evaluate(rules()["install"], {**PARKED, "vehicle_speed": "0", "battery_voltage": "13",
                                            "state_of_charge": None})
    assert {f.rule for f in verdict.failed} == {"parked", "battery"}
    # a boolean is not the number 0
    assert not evaluate(rules()["install"], {**PARKED, "vehicle_speed": False}).ok


def test_bad_rule_config_names_key() -> None:
    with pytest.raises(ConfigurationError, match=r"system_agent.rules.install\[0\].op"):
        rules({"install": [{"signal": "speed", "op": "=~", "value": 0}]})
    with pytest.raises(ConfigurationError, match="needs a number"):
        rules({"install": [{"signal": "speed", "op": "<", "value": "fast"}]})
    with pytest.raises(ConfigurationError, match="unknown"):
        rules({"install": [{"signal": "speed", "op": "==", "value": 0, "tolerance": 1}]})


def test_state_file_problems_make_every_signal_unknown(tmp_path: Path) -> None:
    path = tmp_path / "state.yaml"
    source = StateFileSource(path)
    missing = source.snapshot()
    assert missing.values == {} and missing.problem is not None and "cannot read" in missing.problem
    path.write_text("[not, a, mapping]")
    assert source.snapshot().values == {}
    path.write_text(yaml.safe_dump(PARKED))
    state = source.snapshot()
    assert state.problem is None and evaluate(rules()["install"], state.values).ok
    path.write_text(yaml.safe_dump({**PARKED, "gear": "R"}))  # read afresh at every snapshot
    assert not evaluate(rules()["install"], source.snapshot().values).ok
