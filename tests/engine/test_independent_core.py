"""The campaign core with a Linux ECU that downloads its image itself (independent download)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.engine.campaign import CampaignCore, Policy, Snapshot, StepRow
from agent.runtime.config import load_config
from bench.independent import LinuxEcuSetup
from tests.engine.sim import NEW, OLD, TOPOLOGY

CORE = CampaignCore(TOPOLOGY)
POLICY = Policy(flash_attempts=2, rollback_attempts=2, loop_limit=3, consent=False)
IVI = {"ecu": "ivi", "target": "ivi/ivi-5.1.0.pkg", "length": 4096, "hashes": {"sha256": "a" * 64},
       "release_counter": 2, "software_version": "5.1.0", "independent": {"instance": 1, "install_script": "- x"}}
ENGINE = {"ecu": "engine", "target": "engine/engine-1.1.0.hex", "length": 1024, "hashes": {"sha256": "b" * 64},
          "release_counter": 2, "software_version": "1.1.0"}
CHECK: dict[str, Any] = {
    "status": "update", "vehicle_version": OLD, "ecu_versions": {"engine": "1.0.0", "ivi": "5.0.0"},
    "assignment": {"target_vehicle_version": NEW, "ecus": [ENGINE, IVI], "baseline": {"path": "/b.xml"}}}
DOWNLOAD = {"images": {"engine": {"path": "/cache/engine.hex"},
                       "ivi": {"path": None, "independent": IVI["independent"]}},
            "previous": {"engine": {"path": "/cache/engine-old.hex"}, "ivi": None}}


def snap(*rows: StepRow, cancel: bool = False) -> Snapshot:
    return Snapshot("c1", POLICY, rows, cancel)


def done(step: str, ecu: str | None = None, result: dict[str, Any] | None = None) -> StepRow:
    return StepRow(step, ecu, "done", {}, result or {})


BEFORE_FLASH = (done("check", None, CHECK), done("download", None, DOWNLOAD), done("preconditions"),
                done("ota_mode_on"))


def test_the_download_names_a_job_per_linux_ecu_and_a_new_one_per_attempt() -> None:
    first = CORE.decide(snap(done("check", None, CHECK)))
    (action,) = first.actions
    assert action.step == "download" and action.data["linux_jobs"] == {"ivi": "c1-download-ivi-1"}
    again = CORE.decide(snap(done("check", None, CHECK), StepRow("download", None, "started", action.data)))
    assert again.actions[0].data["linux_jobs"] == {"ivi": "c1-download-ivi-2"}  # the first was interrupted


def test_a_linux_ecu_flashes_beside_the_can_bus_and_needs_no_rollback_image() -> None:
    d = CORE.decide(snap(*BEFORE_FLASH))
    assert sorted((a.step, a.ecu) for a in d.actions) == [("flash", "engine"), ("flash", "ivi")]
    ivi = next(a for a in d.actions if a.ecu == "ivi")
    assert ivi.data["image"]["independent"] == IVI["independent"]


def test_a_failed_can_ecu_rolls_the_linux_ecu_back_with_its_own_rollback() -> None:
    fail = StepRow("flash", "engine", "failed", {}, {}, "wrong CRC")
    d = CORE.decide(snap(*BEFORE_FLASH, done("flash", "ivi"), fail, fail))
    rollbacks = {a.ecu: a.data for a in d.actions if a.step == "rollback"}
    assert rollbacks["ivi"]["method"] == "linux_rollback" and rollbacks["ivi"]["expected_version"] == "5.0.0"
    assert rollbacks["engine"]["method"] == "reflash"


def test_an_ecu_the_vehicle_has_on_can_cannot_download_independently() -> None:
    check = {**CHECK, "assignment": {**CHECK["assignment"], "ecus": [{**ENGINE, "independent": IVI["independent"]}]}}
    d = CORE.decide(snap(done("check", None, check)))
    assert d.actions[0].step == "report" and "vehicle config has it as a CAN ECU" in d.actions[0].data["detail"]


def test_every_bench_gives_all_its_someip_nodes_one_sd_port_of_its_own(tmp_path: Path) -> None:
    import yaml

    from bench.scenario import STACK_TEMPLATE, Scenario, ScenarioOptions, render_template
    from hmi_agent.config import HmiConfig

    ports = []
    for name in ("test-run", "demo"):  # two benches on one machine
        scenario = Scenario(ScenarioOptions(linux_ecu=True))
        scenario.dir = tmp_path / name
        doc = yaml.safe_load(render_template(STACK_TEMPLATE, scenario.variables()))
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({"hmi_agent": doc["hmi_agent"]}))
        # what otactl hmi --someip and bench/headunit read: the HMI service's SD settings
        hmi = load_config(HmiConfig, "hmi_agent", tmp_path / f"{name}.yaml").someip
        linux = LinuxEcuSetup(tmp_path / name, image_size=1, sd_port=scenario.someip_sd_port)
        assert hmi.sd.port == scenario.someip_sd_port == linux.sd()["port"] \
            == linux.stack_keys()["update_agent"]["someip"]["sd"]["port"]
        ports.append(hmi.sd.port)
    assert ports[0] != ports[1] and 30490 not in ports
