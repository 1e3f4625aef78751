"""Helpers for the baseline end-to-end tests: bench configs, the simulator process, otactl runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.errors import OtaError
from bench.readyproc import ReadyProcess

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
BENCH_CONFIG = CONFIGS / "bench-vehicle.yaml"
READY_TIMEOUT = 60.0


def write_config(path: Path, edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """The bench vehicle config with fast timings, edited, written to ``path``."""
    data = yaml.safe_load(BENCH_CONFIG.read_text())
    frames = data.get("version_frames")
    if isinstance(frames, dict):
        frames["dbc"] = str(CONFIGS / frames["dbc"])
        frames["listen"] = 5.0  # an upper bound: collection ends as soon as every ECU was heard
    for ecu in data["ecus"].values():
        ecu["timing"] = {"p2": 0.05, "p2_star": 2.0, "request_timeout": 0.5, "tester_present_interval": 0.5,
                         "transfer_retries": 2, "response_pending_limit": 30}
        sim = ecu.setdefault("sim", {})
        sim.setdefault("erase_time", 0.1)
        sim.setdefault("response_pending_interval", 0.05)
        sim.setdefault("initial_image_size", 16 * 1024)
    if edit is not None:
        edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def otactl(*args: str) -> list[str]:
    return [sys.executable, "-m", "agent.cli.main", *args]


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.stdout))
        except json.JSONDecodeError:
            pytest.fail(f"no JSON on stdout (exit {self.code}):\n{self.stdout}\n{self.stderr}")


def run(env: dict[str, str], *args: str, timeout: float = 120) -> Run:
    done = subprocess.run(otactl(*args), capture_output=True, text=True, env=env, timeout=timeout)
    return Run(done.returncode, done.stdout, done.stderr)


class Bench:
    """``otactl bench ecus`` in its own process, from its ready line until :meth:`stop`."""

    def __init__(self, config: Path, state_dir: Path, env: dict[str, str], log: Path) -> None:
        self.config, self.state_dir, self.env, self.log = config, state_dir, env, log
        self.process: ReadyProcess | None = None

    def start(self, *extra: str) -> Bench:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.process = ReadyProcess(
            "bench", otactl("bench", "ecus", "--config", str(self.config), "--state-dir", str(self.state_dir),
                            *extra), prefix="bench ready:", log=self.log, env=self.env)
        try:
            self.process.start(READY_TIMEOUT)
        except OtaError as e:
            pytest.fail(f"{e}\n{self.log.read_text()}")
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace=15)


def bench_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["OTA_BENCH_HUB_DIR"] = str(tmp_path / "hub")
    env["OTA_UPDATE_AGENT_STATE_DIR"] = str(tmp_path / "agent-state")
    (tmp_path / "hub").mkdir(exist_ok=True)
    for var in ("OTA_VEHICLE_CONFIG", "OTA_HW_BASELINE", "OTA_SW_BASELINE", "STATE_DIRECTORY"):
        env.pop(var, None)
    return env
