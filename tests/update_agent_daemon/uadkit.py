"""Helpers for the ``ota-update-agent`` end-to-end tests: the bench ECUs (``otactl bench ecus``) and the
daemon (``python -m update_agent.daemon``) as real processes, IPC clients, images, waiting on events."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agent.ipc.subscription import EventMessage
from agent.ipc.sync import SyncClient, SyncSubscription
from bench.appimage import build_image, to_hex
from bench.readyproc import ReadyProcess

REPO = Path(__file__).resolve().parents[2]
BENCH_CONFIG = REPO / "configs" / "bench-vehicle.yaml"
READY_TIMEOUT = 60.0
JOB_TIMEOUT = 90.0
BASE = {"engine": 0x10000, "brake": 0x20000, "body": 0x8000}
PART = {"engine": "ENG-4711", "brake": "BRK-0815", "body": "BCM-2201"}
FINAL = ("succeeded", "failed")


def vehicle_config(root: Path, faults: dict[str, dict[str, Any]] | None = None) -> Path:
    """The bench vehicle with bench-fast timings and the given fault knobs per ECU."""
    data = yaml.safe_load(BENCH_CONFIG.read_text())
    frames = data.get("version_frames")
    if isinstance(frames, dict) and not os.path.isabs(frames["dbc"]):
        frames["dbc"] = str(BENCH_CONFIG.parent / frames["dbc"])
        frames["listen"] = 0.3
    for name, ecu in data["ecus"].items():
        ecu["timing"] = {"p2": 0.05, "p2_star": 2.0, "request_timeout": 1.0, "tester_present_interval": 0.5,
                         "transfer_retries": 2, "response_pending_limit": 30}
        sim = ecu.setdefault("sim", {})
        sim.update(erase_time=0.1, response_pending_interval=0.05, initial_image_size=16 * 1024)
        if faults and name in faults:
            sim["faults"] = faults[name]
    path = root / "vehicle.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def make_image(root: Path, ecu: str, version: str, size: int = 32 * 1024) -> Path:
    path = root / f"{ecu}-{version}-{size}.hex"
    path.write_text(to_hex(build_image(version, PART[ecu], size, seed=ecu), BASE[ecu]))
    return path


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait for a condition that no event announces (a file another process rewrites)."""
    deadline = time.monotonic() + timeout
    tick = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        tick.wait(0.02)


class Bench:
    """The simulated ECUs of a vehicle config, on a private hub, in their own process."""

    def __init__(self, root: Path, config: Path, env: dict[str, str]) -> None:
        self.root = root
        self.config = config
        self.state_dir = root / "ecus"
        self.proc = ReadyProcess("bench ecus", [sys.executable, "-m", "agent.cli.main", "bench", "ecus",
                                                "--config", str(config), "--state-dir", str(self.state_dir)],
                                 prefix="bench ready:", log=root / "bench.log", env=env, cwd=REPO)

    def start(self) -> None:
        self.proc.start(READY_TIMEOUT)

    def stop(self) -> None:
        self.proc.stop()

    def status(self, ecu: str) -> dict[str, Any]:
        return dict(json.loads((self.state_dir / ecu / "status.json").read_text()))


class UpdateAgent:
    """``python -m update_agent.daemon --config FILE`` with its own runtime and state directories."""

    def __init__(self, root: Path, vehicle: Path, env: dict[str, str], extra: str = "") -> None:
        self.root = root
        # a short runtime dir: a Unix socket path holds at most 107 bytes
        self.runtime = Path(tempfile.mkdtemp(prefix="ua-", dir="/tmp"))
        self.state = root / "ua-state"
        self.config = root / "stack.yaml"
        self.config.write_text(f"""\
runtime: {{dir: {self.runtime}}}
update_agent:
  log_level: debug
  vehicle_config: {vehicle}
  state_dir: {self.state}
  baselines:
    hardware: {REPO / "configs" / "bench-hw-baseline.xml"}
  jobs: {{history_limit: 50, progress_rate: 10}}
{extra}""")
        self.env = {**env, "OTA_RUNTIME_DIR": str(self.runtime)}
        self.proc: subprocess.Popen[str] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = self.root / f"update-agent-{self.starts}.log"
        self.proc = subprocess.Popen([sys.executable, "-m", "update_agent.daemon", "--config", str(self.config)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, cwd=REPO, env=self.env)
        lines: queue.Queue[str | None] = queue.Queue()
        stream = self.proc.stderr
        assert stream is not None

        def pump() -> None:  # tee the daemon's log to a file for the whole life of the process
            with log.open("w") as out:
                for line in stream:
                    out.write(line)
                    out.flush()
                    lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        while True:
            try:
                line = lines.get(timeout=READY_TIMEOUT)
            except queue.Empty:
                raise AssertionError(f"update agent not ready within {READY_TIMEOUT} s:\n{self.log_text()}") \
                    from None
            if line is None:
                code = self.proc.wait()
                raise AssertionError(f"update agent exited with {code} before it was ready:\n{self.log_text()}")
            if "update_agent: ready" in line:
                return

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.terminate()
        return self.proc.wait(60)

    @contextmanager
    def client(self) -> Iterator[SyncClient]:
        with SyncClient.for_daemon("update_agent", runtime_dir=self.runtime, call_timeout=60) as c:
            yield c

    def log_text(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.root.glob("update-agent-*.log")))


@dataclass
class Rig:
    root: Path
    bench: Bench
    agent: UpdateAgent


def flash_params(job_id: str, ecu: str, image: Path) -> dict[str, Any]:
    return {"job_id": job_id, "ecu": ecu, "image_path": str(image), "format": "ihex"}


def wait_done(sub: SyncSubscription, job_ids: set[str], timeout: float = JOB_TIMEOUT,
              seen: list[EventMessage] | None = None) -> dict[str, dict[str, Any]]:
    """Collect events until every job in ``job_ids`` sent ``update_agent.job.done``; returns them by id."""
    done: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while job_ids - done.keys():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"jobs {sorted(job_ids - done.keys())} not done within {timeout} s")
        event = sub.get(timeout=remaining)
        if seen is not None:
            seen.append(event)
        if event.event == "update_agent.job.done" and event.params["job_id"] in job_ids:
            done[event.params["job_id"]] = event.params
    return done
