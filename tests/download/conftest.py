"""Fixtures for the download manager tests: bench PKI, a real bench backend process, clients.

The backend runs as a real process (``python -m bench.backend``) over mutual TLS on
loopback for the whole session; every test resets its faults and statistics through the
admin port and uses file names of its own. Nothing waits on time: the ready line is read
with a timeout that fails loudly.
"""

from __future__ import annotations

import hashlib
import os
import queue
import random
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from bench.pki import BenchPki, generate
from dmclient.cache import PackageCache
from dmclient.digests import Hashes
from dmclient.fetcher import RequestsFetcher
from dmclient.retry import RetryPolicy
from dmclient.state import StateDb
from dmclient.tls import TlsFiles, build_session

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 30.0


class LineReader:
    """Lines of a child's stdout, read by a thread, waited for with a timeout."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        assert proc.stdout is not None
        stream = proc.stdout

        def pump() -> None:
            for line in stream:
                self.lines.put(line.rstrip("\n"))
            self.lines.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def wait_for(self, prefix: str, timeout: float = READY_TIMEOUT) -> str:
        return self._wait(lambda line: line.startswith(prefix), repr(prefix), timeout)

    def wait_for_containing(self, text: str, timeout: float = READY_TIMEOUT) -> str:
        return self._wait(lambda line: text in line, f"containing {text!r}", timeout)

    def _wait(self, match: Callable[[str], bool], what: str, timeout: float) -> str:
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no line {what} within {timeout} s; saw: {self.seen[-20:]}") from None
            if line is None:
                raise AssertionError(f"process ended before printing a line {what}; saw: {self.seen[-20:]}")
            self.seen.append(line)
            if match(line):
                return line


@dataclass
class FileInfo:
    name: str
    url: str
    path: Path
    data: bytes
    hashes: Hashes

    @property
    def length(self) -> int:
        return len(self.data)

    def target(self, **more: Any) -> dict[str, Any]:
        return {"name": self.name.replace("/", "_"), "url": self.url, "length": self.length,
                "hashes": self.hashes.to_dict(), **more}


def digests(data: bytes) -> Hashes:
    return Hashes(hashlib.sha256(data).hexdigest(), hashlib.sha512(data).hexdigest())


def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


class Backend:
    """A running bench backend process and its admin port."""

    def __init__(self, root: Path, pki: BenchPki, *, cert: Path | None = None, key: Path | None = None) -> None:
        self.files = root / "files"
        self.files.mkdir(parents=True, exist_ok=True)
        self.config = root / "backend.yaml"
        self.config.write_text(
            "listen: {host: 127.0.0.1, port: 0}\n"
            f"files: {self.files}\n"
            f"tls: {{cert_file: {cert or pki.server_cert}, key_file: {key or pki.server_key}, "
            f"client_ca_file: {pki.ca_cert}}}\n"
            "admin: {host: 127.0.0.1, port: 0}\n")
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.backend", "--config", str(self.config)],
                                     stdout=subprocess.PIPE, stderr=open(root / "backend.log", "w"),  # noqa: SIM115
                                     text=True, cwd=REPO)
        self.reader = LineReader(self.proc)
        self.admin_url = self.reader.wait_for("bench backend admin: ").split(": ", 1)[1]
        self.url = self.reader.wait_for("bench backend ready: ").split(": ", 1)[1]
        self.admin = requests.Session()
        self.admin.trust_env = False

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    # -- files ----------------------------------------------------------------------
    def put(self, name: str, data: bytes) -> FileInfo:
        path = self.files / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return FileInfo(name, f"{self.url}/files/{name}", path, data, digests(data))

    # -- admin ----------------------------------------------------------------------
    def faults(self, *faults: dict[str, Any]) -> None:
        r = self.admin.put(f"{self.admin_url}/faults", json=list(faults), timeout=10)
        assert r.status_code == 200, r.text

    def stats(self, name: str) -> dict[str, Any]:
        r = self.admin.get(f"{self.admin_url}/stats", params={"path": name}, timeout=10)
        r.raise_for_status()
        result: dict[str, Any] = r.json()
        return result

    def release(self) -> None:
        self.admin.post(f"{self.admin_url}/release", timeout=10).raise_for_status()

    def reset(self) -> None:
        self.admin.post(f"{self.admin_url}/reset", timeout=10).raise_for_status()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> BenchPki:
    return generate(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def backend_session(tmp_path_factory: pytest.TempPathFactory, pki: BenchPki) -> Iterator[Backend]:
    be = Backend(tmp_path_factory.mktemp("backend"), pki)
    yield be
    be.stop()


@pytest.fixture
def backend(backend_session: Backend) -> Iterator[Backend]:
    backend_session.reset()
    yield backend_session
    backend_session.reset()


@pytest.fixture
def tls(pki: BenchPki) -> TlsFiles:
    return TlsFiles(pki.ca_cert, pki.client_cert, pki.client_key)


@dataclass
class Client:
    """The download client's parts wired as the daemon wires them, in a tmp dir."""

    db: StateDb
    cache: PackageCache
    fetcher: RequestsFetcher
    sleeps: list[float]

    def policy(self, attempts: int = 4) -> RetryPolicy:
        return RetryPolicy(max_attempts=attempts, base_delay=0.01, max_delay=0.05, max_retry_after=120,
                           random=lambda: 1.0)

    def sleep(self, seconds: float) -> None:
        """Injected back-off sleep: records, does not wait."""
        self.sleeps.append(seconds)


@pytest.fixture
def client(tmp_path: Path, tls: TlsFiles) -> Iterator[Client]:
    db = StateDb(tmp_path / "state" / "dmclient.db")
    cache = PackageCache(tmp_path / "cache", db, budget=1 << 30)
    fetcher = RequestsFetcher(build_session(tls, pool_size=4), connect_timeout=5, read_timeout=5,
                              chunk_size=16 * 1024)
    yield Client(db, cache, fetcher, [])
    fetcher.session.close()
    db.close()


def rot(path: Path, *, at: int = 0, truncate: bool = False) -> None:
    """Change a cached (read-only) file at rest, as bit rot or tampering on the flash would: flip
    the bits of the byte at ``at`` (same length), or cut the file there."""
    path.chmod(0o644)
    data = path.read_bytes()
    path.write_bytes(data[:at] if truncate else data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:])
    path.chmod(0o444)
