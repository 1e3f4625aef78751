"""Test helpers shared by the IPC tests (imported by name: ``conftest`` is not unique in this repo)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
ECHO_SCRIPT = HERE / "ipc_echo_daemon.py"
READY_TIMEOUT = 30.0


class NotifyListener:
    """A bound datagram socket receiving sd_notify messages, each parsed into a dict."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.received: list[dict[str, str]] = []

    def recv(self, timeout: float) -> dict[str, str]:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            raise AssertionError(f"no sd_notify message within {timeout} s; so far: {self.received}") from None
        fields = dict(line.split("=", 1) for line in data.decode().split("\n") if line)
        self.received.append(fields)
        return fields

    def expect(self, key: str, value: str | None = None, timeout: float = READY_TIMEOUT,
               contains: str | None = None) -> tuple[dict[str, str], list[dict[str, str]]]:
        """Read until a message has ``key`` (= ``value``, or containing ``contains``).

        Returns the match and every message read before it.
        """
        deadline = time.monotonic() + timeout
        skipped: list[dict[str, str]] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {key}={value or contains or '*'} within {timeout} s; "
                                     f"got: {skipped}")
            fields = self.recv(left)
            if key in fields and (value is None or fields[key] == value) and \
                    (contains is None or contains in fields[key]):
                return fields, skipped
            skipped.append(fields)

    def close(self) -> None:
        self.sock.close()


class DaemonProcess:
    """The echo daemon as a real child process."""

    def __init__(self, rundir: Path, notify: NotifyListener, config: dict[str, Any] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.rundir = rundir
        self.notify = notify
        self.config_path = rundir / "agent.yaml"
        self.log_path = rundir / "echo.log"
        self.socket = rundir / "echo.sock"
        self.extra_env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.write_config(config or {})

    def write_config(self, echo_section: dict[str, Any]) -> None:
        self.config_path.write_text(yaml.safe_dump({"echo": echo_section}))

    def start(self, wait_ready: bool = True) -> None:
        env = {**os.environ, "OTA_RUNTIME_DIR": str(self.rundir), "NOTIFY_SOCKET": str(self.notify.path),
               "PYTHONUNBUFFERED": "1", **self.extra_env}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, str(ECHO_SCRIPT), "--config", str(self.config_path)],
                                         env=env, stdout=log, stderr=subprocess.STDOUT)
        if wait_ready:
            try:
                self.notify.expect("READY", "1")
            except AssertionError as e:
                raise AssertionError(f"{e}\n--- daemon log ---\n{self.log()}") from None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = READY_TIMEOUT) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"daemon did not exit within {timeout} s\n{self.log()}") from None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
