"""Fuzzing the YAML configuration loaders: the vehicle config (with each ECU's simulator section), the
stack config of a daemon, and the bench bus fault settings. A bad file must stop with file, key, reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from agent.config.vehicle import VehicleConfig, load_vehicle_config
from agent.runtime.config import load_config
from bench.canbus.faults import parse_channels
from bench.ecu.simconfig import parse_sim
from bench.scenario import VEHICLE_TEMPLATE
from update_agent.daemon_config import UpdateAgentConfig

from .fuzzkit import FUZZ, JSON, TIMEOUT, clear_outcome, edit_document, mutate

pytestmark = pytest.mark.timeout(TIMEOUT)


def _template() -> dict[str, Any]:
    """The bench vehicle config without its DBC-driven parts (cantools reads the DBC, a local file:
    not fuzzed here, and each load of it costs more than the rest of the file), with one ECU."""
    data: dict[str, Any] = yaml.safe_load(VEHICLE_TEMPLATE.read_text())
    data.pop("version_frames", None)
    data["ecus"] = {"engine": data["ecus"]["engine"]}  # one ECU: the others have the same keys
    for ecu in data["ecus"].values():
        for key in ("version_frames", "config_broadcast"):
            ecu.get("sim", {}).pop(key, None)
    return data


TEMPLATE = _template()
STACK = {"runtime": {"log_level": "info"},
         "update_agent": {"log_level": "debug", "shutdown_timeout": 5, "ipc": {"mode": "0660"},
                          "watchdog": {"worker_deadline": 30}}}


def _load_vehicle(path: Path) -> None:
    outcome = clear_outcome(load_vehicle_config, path)
    if isinstance(outcome, VehicleConfig):  # a valid vehicle: each simulator section is parsed too
        for ecu in outcome.ecus.values():
            if ecu.sim is not None:
                clear_outcome(parse_sim, ecu)


def test_the_bench_vehicle_config_loads(tmp_path: Path) -> None:
    path = tmp_path / "vehicle.yaml"
    path.write_text(yaml.safe_dump(TEMPLATE))
    vehicle = load_vehicle_config(path)
    assert {e: parse_sim(vehicle.ecus[e]).part_number for e in vehicle.ecus if vehicle.ecus[e].sim}


@FUZZ
@given(data=st.data())
def test_vehicle_config_with_wrong_values(tmp_path: Path, data: st.DataObject) -> None:
    path = tmp_path / "vehicle.yaml"
    path.write_text(yaml.safe_dump(edit_document(TEMPLATE, data.draw), allow_unicode=True))
    _load_vehicle(path)


@FUZZ
@given(data=st.data())
def test_vehicle_config_bytes_mutated(tmp_path: Path, data: st.DataObject) -> None:
    path = tmp_path / "vehicle.yaml"
    path.write_bytes(mutate(yaml.safe_dump(TEMPLATE).encode(), data.draw))
    _load_vehicle(path)


@FUZZ
@given(data=st.data())
def test_stack_config_with_wrong_values(tmp_path: Path, data: st.DataObject) -> None:
    path = tmp_path / "stack.yaml"
    path.write_text(yaml.safe_dump(edit_document(STACK, data.draw), allow_unicode=True))
    clear_outcome(load_config, UpdateAgentConfig, "update_agent", path, env={"OTA_RUNTIME_DIR": str(tmp_path)})


@FUZZ
@given(text=st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_any_text_as_a_config_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "any.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    _load_vehicle(path)
    clear_outcome(load_config, UpdateAgentConfig, "update_agent", path, env={"OTA_RUNTIME_DIR": str(tmp_path)})


@FUZZ
@given(doc=JSON)
def test_bus_fault_settings(doc: Any) -> None:
    clear_outcome(parse_channels, doc, source="fuzzed faults")
    clear_outcome(parse_channels, {"powertrain": doc}, source="fuzzed faults")
