"""Helpers for the flasher tests: an in-memory UDS session for the pure sequencer, and the
bench simulator as a real separate process (``otactl bench ecus``) for the end-to-end tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.errors import NegativeResponseError, OtaError
from bench.readyproc import ReadyProcess
from update_agent.uds.api import ServerTiming, SessionObserver
from update_agent.uds.nrc import describe_nrc

REPO = Path(__file__).resolve().parents[2]
BENCH_CONFIG = REPO / "configs" / "bench-vehicle.yaml"
READY_TIMEOUT = 60.0


# -- in-memory session for the pure sequencer ------------------------------------------
@dataclass
class Call:
    method: str
    args: tuple[Any, ...]


@dataclass
class MemorySession:
    """A UdsSession that records every request and answers as told (no bus, no clock)."""

    ecu: str = "engine"
    calls: list[Call] = field(default_factory=list)
    #: (method, first argument or None) -> exception to raise or routine status record to return
    answers: dict[tuple[str, Any], Any] = field(default_factory=dict)
    seed: bytes = b"\x11\x22\x33\x44"
    max_block_length: int = 0x0802
    #: wait_for_reset: how many tester_present calls time out before the ECU answers
    deaf_pings: int = 0
    keep_alive_on: bool = False
    observer: SessionObserver | None = None
    written: dict[int, bytearray] = field(default_factory=dict)
    _download_at: int = 0

    def _record(self, method: str, *args: Any) -> Any:
        self.calls.append(Call(method, args))
        for key in ((method, args[0] if args else None), (method, None)):
            if key in self.answers:
                answer = self.answers[key]
                if isinstance(answer, OtaError):
                    if isinstance(answer, NegativeResponseError) and self.observer is not None:
                        self.observer.on_nrc(answer.service, answer.nrc)
                    raise answer
                return answer
        return None

    def set_observer(self, observer: SessionObserver | None) -> None:
        self.observer = observer

    def change_session(self, session: int) -> ServerTiming:
        self._record("change_session", session)
        return ServerTiming(0.05, 5.0)

    def request_seed(self, level: int) -> bytes:
        self._record("request_seed", level)
        return self.seed

    def send_key(self, level: int, key: bytes) -> None:
        self._record("send_key", level, key)

    def read_did(self, did: int) -> bytes:
        answer = self._record("read_did", did)
        return answer if isinstance(answer, bytes) else b"1.0.0"

    def write_did(self, did: int, data: bytes) -> None:
        self._record("write_did", did, data)

    def start_routine(self, routine_id: int, option: bytes) -> bytes:
        answer = self._record("start_routine", routine_id, option)
        return b"\x00" if answer is None else bytes(answer)

    def request_download(self, address: int, size: int, *, address_bytes: int, length_bytes: int,
                         data_format: int) -> int:
        self._record("request_download", address, size, address_bytes, length_bytes, data_format)
        self._download_at = address
        self.written[address] = bytearray()
        return self.max_block_length

    def transfer_data(self, counter: int, data: bytes) -> None:
        self._record("transfer_data", counter, len(data))
        self.written[self._download_at] += data

    def request_transfer_exit(self) -> None:
        self._record("request_transfer_exit")

    def ecu_reset(self, reset_type: int) -> None:
        self.keep_alive_on = False
        self._record("ecu_reset", reset_type)

    def control_dtc_setting(self, enabled: bool) -> None:
        self._record("control_dtc_setting", enabled)

    def communication_control(self, control: int, communication_type: int) -> None:
        self._record("communication_control", control, communication_type)

    def tester_present(self) -> None:
        self._record("tester_present")
        if self.deaf_pings > 0:
            from agent.errors import OtaTimeoutError

            self.deaf_pings -= 1
            raise OtaTimeoutError("TesterPresent: no response within 0.5 s (ECU not answering)")

    def keep_alive(self, enabled: bool) -> None:
        self._record("keep_alive", enabled)
        self.keep_alive_on = enabled

    def methods(self) -> list[str]:
        return [c.method for c in self.calls]

    def of(self, method: str) -> list[tuple[Any, ...]]:
        return [c.args for c in self.calls if c.method == method]


def nrc_error(service: int, nrc: int) -> NegativeResponseError:
    return NegativeResponseError(describe_nrc(nrc), service=service, nrc=nrc)


class FakeClock:
    """A clock tests advance by hand; ``sleep`` advances it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


# -- configs written for a test ----------------------------------------------------------
def write_config(tmp_path: Path, edit: Callable[[dict[str, Any]], None] | None = None,
                 name: str = "vehicle.yaml") -> Path:
    """The bench vehicle config, edited, written to ``tmp_path`` (relative data paths made absolute)."""
    data = yaml.safe_load(BENCH_CONFIG.read_text())
    frames = data.get("version_frames")
    if isinstance(frames, dict) and "dbc" in frames and not os.path.isabs(frames["dbc"]):
        frames["dbc"] = str(BENCH_CONFIG.parent / frames["dbc"])
    for ecu in data["ecus"].values():
        script = ecu.get("flash_script", "")
        if "/" in script and not os.path.isabs(script):
            ecu["flash_script"] = str(BENCH_CONFIG.parent / script)
    if edit is not None:
        edit(data)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def fast_bench(data: dict[str, Any]) -> None:
    """Bench timings that keep tests quick: short timeouts, a short erase, small initial images."""
    for ecu in data["ecus"].values():
        ecu["timing"] = {"p2": 0.05, "p2_star": 2.0, "request_timeout": 1.0, "tester_present_interval": 0.5,
                         "transfer_retries": 2, "response_pending_limit": 30}
        sim = ecu.setdefault("sim", {})
        sim.setdefault("erase_time", 0.1)
        sim.setdefault("response_pending_interval", 0.05)
        sim.setdefault("initial_image_size", 16 * 1024)


# -- the simulator as a separate process ------------------------------------------------
def otactl(*args: str) -> list[str]:
    """The command line of ``otactl`` in this interpreter (same as the console script)."""
    return [sys.executable, "-m", "agent.cli.main", *args]


class Bench:
    """``otactl bench ecus`` running in its own process until :meth:`stop`."""

    def __init__(self, config: Path, state_dir: Path, env: dict[str, str], log: Path) -> None:
        self.config = config
        self.state_dir = state_dir
        self.env = env
        self.log = log
        self.process: ReadyProcess | None = None
        self.ready_line = ""

    def start(self, *extra: str) -> Bench:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.process = ReadyProcess(
            "bench", otactl("bench", "ecus", "--config", str(self.config), "--state-dir", str(self.state_dir),
                            *extra), prefix="bench ready:", log=self.log, env=self.env)
        try:
            self.ready_line = f"bench ready: {self.process.start(READY_TIMEOUT)}"
        except OtaError as e:
            pytest.fail(f"{e}\n{self.log_text()}")
        return self

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace=15)

    def restart(self, config: Path | None = None) -> Bench:
        self.stop()
        if config is not None:
            self.config = config
        return self.start()


@dataclass
class Cli:
    """Runs ``otactl`` commands as separate processes against one bench."""

    config: Path
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(otactl(*args), capture_output=True, text=True, env=self.env, timeout=timeout)

    def flash(self, ecu: str, image: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.run("flash", "--ecu", ecu, str(image), "--config", str(self.config), *extra)

    def flash_json(self, ecu: str, image: Path, *extra: str) -> tuple[int, dict[str, Any], str]:
        done = self.flash(ecu, image, "--json", *extra)
        try:
            data = json.loads(done.stdout)
        except json.JSONDecodeError:
            pytest.fail(f"otactl flash printed no JSON (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done.returncode, data, done.stderr

    def versions(self, *ecus: str) -> tuple[int, dict[str, dict[str, Any]], str]:
        args = [a for e in ecus for a in ("--ecu", e)]
        done = self.run("versions", "--config", str(self.config), "--json", *args)
        try:
            data = json.loads(done.stdout)
        except json.JSONDecodeError:
            pytest.fail(f"otactl versions printed no JSON (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done.returncode, {e["ecu"]: e for e in data["ecus"]}, done.stderr


