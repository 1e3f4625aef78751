"""The bench scenario: everything up from one context manager, nothing left behind."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from agent.errors import ConfigurationError, TransportError
from agent.runtime.config import load_config
from bench.scenario import V1, Scenario, ScenarioOptions, failing_flash
from dmclient.config import DmclientConfig
from hmi_agent.config import HmiConfig
from system_agent.config import SystemConfig


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


@pytest.mark.e2e
def test_up_serves_and_down_leaves_no_process_and_no_directory() -> None:
    with Scenario(ScenarioOptions(faults={"brake": failing_flash(2)})) as s:
        pids = {name: proc.pid for name, proc in s.processes.items()}
        directory = s.dir
        assert set(pids) == {"backend", "bus", "ecus", "vehicle"}  # issue 7: the vehicle simulator
        assert all(pid is not None and pid_exists(pid) for pid in pids.values())
        assert s.backend_url.startswith("https://127.0.0.1:")
        # the stack config is rendered with absolute paths every daemon accepts
        text = s.stack_config.read_text()
        assert "${" not in text and str(s.dir) in text
        for cls, name in ((DmclientConfig, "dmclient"), (HmiConfig, "hmi_agent"), (SystemConfig, "system_agent")):
            cfg = load_config(cls, name, s.stack_config, env=s.env)
            assert cfg.runtime_dir == s.runtime_dir
        # the fault knob reached the simulated brake (the simulator validated it at start)
        vehicle = yaml.safe_load(s.vehicle_config.read_text())
        assert vehicle["ecus"]["brake"]["sim"]["faults"] == {"wrong_crc": {"times": 2}}
        assert "faults" not in vehicle["ecus"]["engine"]["sim"]
        # end of line: trust anchors, signing key, factory images in the cache
        for name in ("image-root.json", "director-root.json", "vehicle-sign.key", "uptane/uptane.db"):
            assert (s.dir / "vehicle" / name).is_file()
        assert yaml.safe_load(s.state_file.read_text())["gear"] == "P"
        # ECUs restart with other knobs while the bus stays
        bus_pid = pids["bus"]
        s.restart_ecus(faults={})
        assert s.processes["ecus"].pid != pids["ecus"] and s.processes["bus"].pid == bus_pid
        pids["ecus2"] = s.processes["ecus"].pid
    assert not directory.exists()
    assert not any(pid is not None and pid_exists(pid) for pid in pids.values())


def test_bad_options_are_refused_before_anything_starts() -> None:
    with pytest.raises(ConfigurationError, match="unknown ECU 'gearbox'"):
        ScenarioOptions(faults={"gearbox": failing_flash()})
    with pytest.raises(ConfigurationError, match="start_version"):
        ScenarioOptions(start_version="BV OS D 9.9.9")
    assert ScenarioOptions().start_version == V1


@pytest.mark.e2e
def test_failed_start_cleans_up() -> None:
    """A process that cannot start (a bad fault knob): the error names it, and nothing is left."""
    parent = Path(tempfile.mkdtemp(prefix="ota-sc-test-"))
    try:
        with pytest.raises(TransportError, match="ecus exited") as info:
            Scenario(ScenarioOptions(faults={"engine": {"wrong_crc": {"times": "sometimes"}}}),
                     parent=parent).up()
        assert "times" in str(info.value)  # the simulator's log names the bad knob
        assert list(parent.iterdir()) == []
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.mark.e2e
def test_bench_stack_command_holds_the_bench_until_sigterm() -> None:
    from bench.readyproc import ReadyProcess

    parent = Path(tempfile.mkdtemp(prefix="ota-st-test-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTA_")}
    env["TMPDIR"] = str(parent)
    proc = ReadyProcess("bench-stack", [sys.executable, "-m", "agent.cli.main", "bench", "stack"],
                        prefix="bench stack ready:", log=parent / "stack.log", env=env)
    try:
        stack = Path(proc.start(timeout=120))
        assert stack.is_file() and stack.parent.parent == parent
        assert load_config(SystemConfig, "system_agent", stack).state_file.is_file()
        assert proc.stop(grace=60) == 0
        assert [p.name for p in parent.iterdir()] == ["stack.log"]  # the bench directory is gone
    finally:
        proc.stop()
        shutil.rmtree(parent, ignore_errors=True)
