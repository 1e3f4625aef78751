"""A child process that announces readiness on stdout, and its orderly end.

The bench tools (``python -m bench.backend``, ``otactl bench ecus``) print one
line when they serve (``bench backend ready: URL``, ``bench ready: ECUS``).
:class:`ReadyProcess` starts such a tool, waits for that line (never a sleep: a
queue fed by a reader thread, with a timeout that fails loudly and quotes the
tool's log) and stops it with SIGTERM, then SIGKILL after a grace period.
Hand-written because ``subprocess`` has no "wait for a line" and the bench
needs the tools' own ready protocol, nothing more.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from agent.errors import OtaTimeoutError, TransportError

TAIL_BYTES = 2000


def tail(path: Path, limit: int = TAIL_BYTES) -> str:
    """The last ``limit`` bytes of a log file (for error messages)."""
    try:
        data = path.read_bytes()
    except OSError:
        return "(no log)"
    text = data[-limit:].decode("utf-8", "replace").strip()
    return text or "(empty log)"


class ReadyProcess:
    """``argv`` as a child process, ready once it printed a line starting with ``prefix``."""

    def __init__(self, name: str, argv: Sequence[str], *, prefix: str, log: Path,
                 env: Mapping[str, str] | None = None, cwd: Path | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.prefix = prefix
        self.log = log
        self.env = dict(env) if env is not None else dict(os.environ)
        self.cwd = cwd
        self.proc: subprocess.Popen[str] | None = None
        #: the rest of the ready line after the prefix (e.g. the backend URL)
        self.ready_value = ""
        #: the stdout lines printed before the ready line (e.g. the backend's admin URL)
        self.early_lines: list[str] = []

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self, timeout: float) -> str:
        """Start and wait for the ready line; returns what follows the prefix."""
        with self.log.open("ab") as stderr:
            self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL,
                                         text=True, env=self.env, cwd=self.cwd)
        lines: queue.Queue[str | None] = queue.Queue()
        out = self.proc.stdout
        assert out is not None

        def pump() -> None:  # keeps draining stdout for the process's whole life
            for line in out:
                lines.put(line.rstrip("\n"))
            lines.put(None)

        threading.Thread(target=pump, name=f"{self.name}-stdout", daemon=True).start()
        seen: list[str] = []
        while True:
            try:
                line = lines.get(timeout=timeout)
            except queue.Empty:
                self.stop()
                raise OtaTimeoutError(f"{self.name} printed no '{self.prefix}' line within {timeout:g} s; "
                                      f"stdout {seen[-5:]}; log {self.log}: {tail(self.log)}") from None
            if line is None:
                code = self.proc.wait()
                raise TransportError(f"{self.name} exited with {code} before it was ready; "
                                     f"log {self.log}: {tail(self.log)}")
            seen.append(line)
            if line.startswith(self.prefix):
                self.early_lines = seen[:-1]
                self.ready_value = line[len(self.prefix):].strip()
                return self.ready_value

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, wait ``grace`` s, then SIGKILL; returns the exit code (None if never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode
