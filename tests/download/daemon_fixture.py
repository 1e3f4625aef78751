"""An ``ota-dmclient`` process for end-to-end tests: config, start, ready line, SIGKILL, IPC clients."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.ipc.sync import SyncClient, SyncSubscription
from bench.pki import BenchPki

from .conftest import REPO, Backend, LineReader

CHECKPOINT = 256 * 1024
#: the daemon's read size: progress moves in these steps
CHUNK = 16 * 1024
FINAL = ("done", "failed", "cancelled")


class DmclientProcess:
    """ota-dmclient run as ``python -m dmclient.daemon --config FILE`` with its own runtime dir."""

    def __init__(self, root: Path, pki: BenchPki, backend: Backend, *, concurrency: int = 2) -> None:
        self.root = root
        # a short runtime dir: a Unix socket path holds at most 107 bytes
        self.runtime = Path(tempfile.mkdtemp(prefix="dm-", dir="/tmp"))
        self.config = root / "agent.yaml"
        self.cache = root / "cache"
        self.config.write_text(f"""\
runtime: {{dir: {self.runtime}}}
dmclient:
  log_level: debug
  backend:
    url: {backend.url}/files/
    ca_file: {pki.ca_cert}
    cert_file: {pki.client_cert}
    key_file: {pki.client_key}
    connect_timeout: 5
    read_timeout: 20
  retries: {{attempts: 3, base_delay: 0.05, max_delay: 0.2, max_retry_after: 5}}
  downloads:
    concurrency: {concurrency}
    chunk_bytes: 16KiB
    checkpoint_bytes: {CHECKPOINT}
    min_free_bytes: 0
    progress_interval: 0.05
  cache: {{dir: {self.cache}, budget: 1GiB}}
  state_db: {root / "state" / "dmclient.db"}
  encryption_key: {pki.vehicle_enc_key}
""")
        self.env = {**os.environ, "OTA_RUNTIME_DIR": str(self.runtime)}
        self.proc: subprocess.Popen[str] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = open(self.root / f"dmclient-{self.starts}.log", "w")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen([sys.executable, "-m", "dmclient.daemon", "--config", str(self.config)],
                                     stdout=log, stderr=subprocess.PIPE, text=True, cwd=REPO, env=self.env)
        # the daemon logs to stderr: read it for the ready line, and keep a copy
        assert self.proc.stderr is not None
        self._reader = LineReader(_Tee(self.proc, log))  # type: ignore[arg-type]
        self._reader.wait_for_containing("dmclient: ready")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.terminate()
        return self.proc.wait(30)

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        shutil.rmtree(self.runtime, ignore_errors=True)

    @contextmanager
    def client(self) -> Iterator[SyncClient]:
        with SyncClient.for_daemon("dmclient", runtime_dir=self.runtime, call_timeout=30) as c:
            yield c

    def log_text(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.root.glob("dmclient-*.log")))


class _Tee:
    """The daemon's stderr lines, also written to its log file (as a ``proc`` for LineReader)."""

    def __init__(self, proc: subprocess.Popen[str], log: Any) -> None:
        self.stdout = _TeeStream(proc.stderr, log)


class _TeeStream:
    def __init__(self, stream: Any, log: Any) -> None:
        self.stream, self.log = stream, log

    def __iter__(self) -> Iterator[str]:
        for line in self.stream:
            self.log.write(line)
            self.log.flush()
            yield line


def wait_state(sub: SyncSubscription, target_id: str, states: tuple[str, ...] = FINAL,
               timeout: float = 60.0) -> dict[str, Any]:
    """The first state event of ``target_id`` in ``states`` (fails loudly after ``timeout``)."""
    while True:
        ev = sub.get(timeout=timeout)
        if ev.event == "dmclient.download.state" and ev.params["target"]["id"] == target_id \
                and ev.params["target"]["state"] in states:
            return dict(ev.params["target"])


def wait_bytes(sub: SyncSubscription, target_ids: str | list[str], at_least: int, *, committed: int = 0,
               timeout: float = 60.0) -> dict[str, Any]:
    """Wait until progress events show every target past ``at_least`` bytes received and ``committed``
    bytes durable; the last such progress record."""
    waiting = {target_ids} if isinstance(target_ids, str) else set(target_ids)
    last: dict[str, Any] = {}
    while waiting:
        ev = sub.get(timeout=timeout)
        if ev.event != "dmclient.download.progress":
            continue
        for t in ev.params["targets"]:
            if t["id"] in waiting and t["bytes"] >= at_least and t["committed"] >= committed:
                waiting.discard(t["id"])
                last = dict(t)
    return last
