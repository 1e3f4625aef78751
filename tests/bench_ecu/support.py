"""Helpers for the bench ECU simulator tests: a small bench config, a fake clock, a UDS tester.

The tester here drives the pure core (:class:`bench.ecu.bootloader.Bootloader`)
directly with request bytes and a fake clock: no bus, no sleeps.
"""

from __future__ import annotations

import copy
import queue
import signal
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from bench.appimage import build_image
from bench.ecu.bootloader import Bootloader
from bench.ecu.codec import Response

ENGINE_APP = 0x10000
ENGINE_CAL = 0x30000
BRAKE_APP = 0x20000

BASE_CONFIG: dict[str, Any] = {
    "buses": {
        "powertrain": {"interface": "benchhub", "channel": "powertrain"},
        "body": {"interface": "benchhub", "channel": "body"},
    },
    "ecus": {
        "engine": {
            "bus": "powertrain", "banks": "single", "flash_script": "single_bank",
            "isotp": {"addressing": "normal_11bit", "tx_id": 0x7E0, "rx_id": 0x7E8, "functional_id": 0x7DF},
            "timing": {"p2": 0.05, "p2_star": 5.0, "request_timeout": 2.0},
            "security": {"level": 1, "algorithm": "update_agent.seedkey:xor_key", "params": {"mask": "5A3CC3A5"}},
            "memory": {"regions": [{"name": "application", "start": ENGINE_APP, "size": 0x8000},
                                   {"name": "calibration", "start": ENGINE_CAL, "size": 0x1000}]},
            "sim": {"part_number": "ENG-4711", "software_version": "1.0.0", "hardware_version": "H1.0",
                    "serial_number": "ENG0000001", "vin": "BENCHVIN000000001", "initial_image_size": 4096,
                    "erase_time": 2.0, "response_pending_interval": 0.5, "session_timeout": 5.0,
                    "max_block_length": 0x102,
                    "security": {"max_attempts": 3, "lockout_time": 10.0}},
        },
        "brake": {
            "bus": "powertrain", "banks": "ab", "flash_script": "ab_bank",
            "isotp": {"addressing": "normal_11bit", "tx_id": 0x7E1, "rx_id": 0x7E9, "functional_id": 0x7DF},
            "timing": {"p2": 0.05, "p2_star": 5.0, "request_timeout": 2.0},
            "security": {"level": 0x11, "algorithm": "update_agent.seedkey:aes_cmac_key",
                         "params": {"secret": "000102030405060708090a0b0c0d0e0f"}},
            "memory": {"regions": [{"name": "application", "start": BRAKE_APP, "size": 0x8000}]},
            "sim": {"part_number": "BRK-0815", "software_version": "3.4.0", "initial_image_size": 4096,
                    "erase_time": 0.0, "max_block_length": 0x102},
        },
        "body": {
            "bus": "body", "flash_script": "single_bank",
            "isotp": {"addressing": "normal_11bit", "tx_id": 0x740, "rx_id": 0x748, "functional_id": 0x7DF},
            "memory": {"regions": [{"name": "application", "start": 0x8000, "size": 0x4000}]},
            "sim": {"part_number": "BCM-2201", "software_version": "2.0.0", "initial_image_size": 2048,
                    "erase_time": 0.0},
        },
    },
}


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def dump_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def write_config(path: Path, **sims: dict[str, Any]) -> Path:
    """Write the test bench config with per-ECU ``sim:`` overrides (``engine={"faults": ...}``)."""
    data = copy.deepcopy(BASE_CONFIG)
    for ecu, sim in sims.items():
        data["ecus"][ecu]["sim"] = merge(data["ecus"][ecu]["sim"], sim)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> float:
        self.t += seconds
        return self.t


class Tester:
    """Sends requests to a core the way a tester would, on a fake clock."""

    __test__ = False  # not a pytest test class

    def __init__(self, core: Bootloader, clock: FakeClock) -> None:
        self.core = core
        self.clock = clock

    def send(self, request: bytes | str, *, functional: bool = False) -> list[Response]:
        data = bytes.fromhex(request) if isinstance(request, str) else request
        return self.core.handle(data, self.clock(), functional=functional)

    def one(self, request: bytes | str, *, functional: bool = False) -> bytes:
        responses = self.send(request, functional=functional)
        assert len(responses) == 1, f"expected one response, got {responses}"
        return responses[0].data

    def nrc(self, request: bytes | str) -> int | None:
        return Response(self.one(request)).nrc

    def poll(self, seconds: float) -> list[Response]:
        return self.core.poll(self.clock.advance(seconds))

    def read_did(self, did: int) -> bytes:
        data = self.one(bytes([0x22]) + did.to_bytes(2, "big"))
        assert data[:3] == bytes([0x62]) + did.to_bytes(2, "big"), data.hex()
        return data[3:]

    def version(self) -> str:
        return self.read_did(0xF189).decode()

    def unlock(self) -> None:
        """Extended, programming, then security access with the ECU's configured algorithm."""
        assert self.one("1003")[0] == 0x50
        assert self.one("1002")[0] == 0x50
        sec = self.core.ecu.security
        seed = self.one(bytes([0x27, sec.level]))[2:]
        key = sec.load()(seed, sec.level, sec.params)
        assert self.one(bytes([0x27, sec.level + 1]) + key) == bytes([0x67, sec.level + 1])

    def erase(self, address: int, size: int) -> bytes:
        """Start the erase routine and advance the clock until its final answer."""
        responses = self.send(bytes([0x31, 0x01, 0xFF, 0x00, 0x44]) + address.to_bytes(4, "big")
                              + size.to_bytes(4, "big"))
        while responses and responses[-1].is_pending:
            deadline = self.core.next_deadline()
            assert deadline is not None
            self.clock.t = deadline
            responses = self.core.poll(self.clock())
        assert len(responses) == 1, responses
        return responses[0].data

    def request_download(self, address: int, size: int) -> bytes:
        return self.one(bytes([0x34, 0x00, 0x44]) + address.to_bytes(4, "big") + size.to_bytes(4, "big"))

    def transfer(self, image: bytes, *, first_counter: int = 1) -> int:
        """TransferData blocks of maxNumberOfBlockLength; returns the number of blocks."""
        chunk = self.core.sim.max_block_length - 2
        counter = first_counter
        blocks = 0
        for offset in range(0, len(image), chunk):
            response = self.one(bytes([0x36, counter]) + image[offset:offset + chunk])
            assert response == bytes([0x76, counter]), response.hex()
            counter = (counter + 1) & 0xFF
            blocks += 1
        return blocks

    def check_memory(self, crc: int) -> bytes:
        return self.one(bytes([0x31, 0x01, 0x02, 0x02]) + crc.to_bytes(4, "big"))

    def flash(self, image: bytes, address: int, *, erase_size: int | None = None) -> None:
        """The whole programming sequence of one segment, asserting every step succeeds."""
        self.unlock()
        assert self.erase(address, erase_size or len(image)) == bytes.fromhex("7101ff0000")
        assert self.request_download(address, len(image))[0] == 0x74
        self.transfer(image)
        assert self.one("37") == b"\x77"
        assert self.check_memory(zlib.crc32(image)) == bytes.fromhex("7101020200")
        assert self.one("3101ff01") == bytes.fromhex("7101ff0100")


def counting_rng() -> Callable[[int], bytes]:
    state = {"n": 0}

    def rng(n: int) -> bytes:
        state["n"] += 1
        return bytes((state["n"] + i) & 0xFF for i in range(n))

    return rng


def app_image(version: str, part: str = "ENG-4711", size: int = 3000) -> bytes:
    return build_image(version, part, size)


class BenchProcess:
    """``otactl bench ...`` as a child process; waits for its ready line, stops it with SIGTERM."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.args = args
        self.env = env
        self.proc: subprocess.Popen[str] | None = None
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.ready_line = ""

    def start(self, ready_prefix: str, timeout: float = 60.0) -> str:
        self.proc = subprocess.Popen([sys.executable, "-m", "agent.cli.main", *self.args], env=self.env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()
        line = self.lines.get(timeout=timeout)
        if line is None or not line.startswith(ready_prefix):
            self.proc.kill()
            _, err = self.proc.communicate(timeout=10)
            raise AssertionError(f"no {ready_prefix!r} line (got {line!r}); stderr:\n{err}")
        self.ready_line = line.rstrip("\n")
        return self.ready_line

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.put(line)
        self.lines.put(None)

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise

    def stderr(self) -> str:
        assert self.proc is not None and self.proc.stderr is not None
        return self.proc.stderr.read()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
