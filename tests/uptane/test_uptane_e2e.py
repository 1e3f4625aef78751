"""End to end: the release builder's CLI, the real bench backend process, two vehicles on the route.

Two releases are built with ``otactl release build`` (real processes); the bench backend
runs as ``python -m bench.backend`` over mutual TLS (bench PKI generated here); the
vehicles use dmclient's Uptane client and its downloader. Vehicle A walks the paper's
three-node route: each check returns the next release, the images download (a delta,
an encrypted image) and verify, the install is simulated, and on the last node the
check returns nothing. Vehicle B is outside the test group of the second edge: it gets
nothing there until the edge is published.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from agent.ipc.sync import SyncClient
from bench.pki import BenchPki
from dmclient.encryption import load_vehicle_key
from dmclient.job import JobSettings, TargetJob
from dmclient.order import Order
from dmclient.retry import RetryPolicy
from dmclient.uptane.assignment import CheckResult
from dmclient.uptane.manifest import InstalledImage
from dmclient.uptane.state import UptaneState

from .world import (
    FACTORY,
    HARDWARE,
    REPO,
    V1,
    V2,
    V3,
    VEHICLE_CONFIG,
    VIN_A,
    VIN_B,
    Vehicle,
    build_world,
    hashes_of,
    issue_client_cert,
    register_vehicle,
    route_yaml,
)

READY_TIMEOUT = 30.0


class BackendProcess:
    """``python -m bench.backend --config FILE``; waits for its ready line (no sleeps)."""

    def __init__(self, config: Path, log: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.backend", "--config", str(config)],
                                     stdout=subprocess.PIPE, stderr=open(log, "w"), text=True,  # noqa: SIM115
                                     cwd=REPO)
        lines: queue.Queue[str | None] = queue.Queue()
        stream = self.proc.stdout
        assert stream is not None

        def pump() -> None:
            for line in stream:
                lines.put(line.rstrip("\n"))
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        seen: list[str] = []
        while True:
            try:
                line = lines.get(timeout=READY_TIMEOUT)
            except queue.Empty:
                raise AssertionError(f"backend not ready within {READY_TIMEOUT} s: {seen}; {log.read_text()}") from None
            if line is None:
                raise AssertionError(f"backend exited: {seen}; {log.read_text()}")
            seen.append(line)
            if line.startswith("bench backend ready: "):
                self.url = line.split(": ", 1)[1]
                return

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def otactl(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "agent.cli.main", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def world(tmp_path: Path, pki: BenchPki) -> Path:
    world = tmp_path / "world"
    build_world(world, pki, releases=False)
    for spec in ("r1.yaml", "r2.yaml"):
        out = otactl("release", "build", str(world / spec), "--out", str(world / "image-repo"))
        assert "trust anchor to provision" in out
    register_vehicle(world, VIN_B, pki)
    (world / "route.yaml").write_text(route_yaml(stage2="test", group2=(VIN_A,)))
    return world


@pytest.fixture
def backend(world: Path) -> Iterator[BackendProcess]:
    be = BackendProcess(world / "backend.yaml", world / "backend.log")
    yield be
    be.stop()


def download(vehicle: Vehicle, result: CheckResult, pki: BenchPki) -> dict[str, tuple[str, bytes]]:
    """Every assigned image through dmclient's downloader: ``{ecu: (source, bytes)}``."""
    assert result.assignment is not None
    order = Order.parse(result.assignment.download_order(pin="campaign:test"))
    settings = JobSettings(policy=RetryPolicy(max_attempts=2, base_delay=0, max_delay=0, max_retry_after=0),
                           checkpoint_bytes=1 << 16, delta_max_bytes=1 << 20, min_free_bytes=0,
                           vehicle_key=load_vehicle_key(pki.vehicle_enc_key))
    out = {}
    for ecu, spec in zip(result.assignment.ecus, order.targets, strict=True):
        job = TargetJob(spec, cache=vehicle.cache, db=vehicle.db, fetcher=vehicle.fetcher, settings=settings)
        done = job.run()
        out[ecu.ecu] = (done.source, done.path.read_bytes())
    return out


@pytest.mark.e2e
def test_three_node_route_and_test_device_group(tmp_path: Path, world: Path, pki: BenchPki,
                                               backend: BackendProcess) -> None:
    a = Vehicle(tmp_path / "vehicle-a", world, pki, backend.url)
    b = Vehicle(tmp_path / "vehicle-b", world, pki, backend.url, vin=VIN_B,
                cert=issue_client_cert(pki, VIN_B, tmp_path))
    try:
        # the factory images are kept in the cache (rollback images): deltas can be applied to them
        for ecu, version in FACTORY.items():
            path = world / "images" / f"{ecu}-{version}.hex"
            rec = a.state.installed(ecu)
            assert rec is not None
            tmp = a.cache.temp_path(f"factory-{ecu}")
            tmp.write_bytes(path.read_bytes())
            a.cache.admit(tmp, rec.image.hashes, rec.image.length)

        # node 1 -> 2: engine calibration, delivered as a bsdiff4 delta against the factory image
        step1 = a.check()
        assert step1.assignment is not None and step1.assignment.target_vehicle_version == V2
        assert [e.ecu for e in step1.assignment.ecus] == ["engine"]
        got = download(a, step1, pki)
        assert got["engine"] == ("delta", (world / "images" / "engine-1.1.0.hex").read_bytes())
        a.install(step1)

        # node 2 -> 3 (vehicle A is in the test group): brake, and body encrypted to this vehicle's key
        step2 = a.check()
        assert step2.assignment is not None and step2.assignment.target_vehicle_version == V3
        assert [e.ecu for e in step2.assignment.ecus] == ["body", "brake"]
        got = download(a, step2, pki)
        assert got["brake"] == ("full", (world / "images" / "brake-3.5.0.hex").read_bytes())
        assert got["body"] == ("full", (world / "images" / "body-2.1.0.hex").read_bytes())
        baseline = step2.assignment.baseline.path.read_bytes()
        assert b'version="BV OS D 1.2.0"' in baseline
        a.install(step2)

        # last node: nothing to do
        last = a.check()
        assert last.assignment is None and last.vehicle_version == V3

        # vehicle B: node 1 -> 2 is published for all; node 2 -> 3 is still in test
        first = b.check()
        assert first.assignment is not None and first.assignment.target_vehicle_version == V2
        b.install(first)
        assert b.check().assignment is None
        (world / "route.yaml").write_text(route_yaml(stage2="published"))  # test passed: publish to all
        published = b.check()
        assert published.assignment is not None and published.assignment.target_vehicle_version == V3
        assert b.version == V2 and a.version == V3
        assert step1.vehicle_version == V1
    finally:
        a.close()
        b.close()


class DaemonProcess:
    """``python -m dmclient.daemon --config FILE``; waits for its ``dmclient: ready`` log line."""

    def __init__(self, config: Path, runtime: Path, log: Path) -> None:
        self.log = log
        env = {**os.environ, "OTA_RUNTIME_DIR": str(runtime)}
        self.proc = subprocess.Popen([sys.executable, "-m", "dmclient.daemon", "--config", str(config)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
        lines: queue.Queue[str | None] = queue.Queue()
        stream = self.proc.stderr
        assert stream is not None

        def pump() -> None:
            with open(log, "w") as f:
                for line in stream:
                    f.write(line)
                    f.flush()
                    lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        while True:
            try:
                line = lines.get(timeout=READY_TIMEOUT)
            except queue.Empty:
                raise AssertionError(f"dmclient not ready within {READY_TIMEOUT} s: {log.read_text()}") from None
            if line is None:
                raise AssertionError(f"dmclient exited: {log.read_text()}")
            if "dmclient: ready" in line:
                return

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.mark.e2e
def test_ota_dmclient_serves_the_check_and_downloads_the_assignment(tmp_path: Path, world: Path, pki: BenchPki,
                                                                   backend: BackendProcess) -> None:
    """The engine's view: ``dmclient.check`` then ``dmclient.download.start`` with its order, over IPC."""
    home = tmp_path / "dm"
    home.mkdir()
    shutil.copy(world / "image-repo" / "metadata" / "1.root.json", home / "image-root.json")
    shutil.copy(world / "director" / "roots" / "1.root.json", home / "director-root.json")
    shutil.copy(world / "keys" / f"{VIN_A}-sign.key", home / "vehicle-sign.key")
    state = UptaneState(home / "uptane" / "uptane.db")  # end of line: the factory images
    for ecu, version in FACTORY.items():
        data = (world / "images" / f"{ecu}-{version}.hex").read_bytes()
        state.record_installed(ecu, InstalledImage(f"{ecu}/{ecu}-{version}.hex", len(data), hashes_of(data)), 1)
    state.close()
    runtime = Path(tempfile.mkdtemp(prefix="upt-", dir="/tmp"))  # a Unix socket path holds at most 107 bytes
    (home / "agent.yaml").write_text(yaml.safe_dump({"runtime": {"dir": str(runtime)}, "dmclient": {
        "backend": {"url": f"{backend.url}/", "ca_file": str(pki.ca_cert), "cert_file": str(pki.client_cert),
                    "key_file": str(pki.client_key), "connect_timeout": 5, "read_timeout": 20},
        "downloads": {"min_free_bytes": 0, "progress_interval": 0.05},
        "cache": {"dir": "cache", "budget": "1GiB"}, "state_db": "dmclient.db",
        "encryption_key": str(pki.vehicle_enc_key),
        "uptane": {"vin": VIN_A, "primary_id": "tbox-0001", "vehicle_config": str(VEHICLE_CONFIG),
                   "signing_key": "vehicle-sign.key", "state_dir": "uptane",
                   "director": {"url": f"director/{VIN_A}", "root": "director-root.json"},
                   "image": {"metadata_url": "image/metadata", "targets_url": "image/targets",
                             "root": "image-root.json"},
                   "ecus": {e: {"hardware_id": hw} for e, hw in HARDWARE.items()}}}}, sort_keys=False))
    daemon = DaemonProcess(home / "agent.yaml", runtime, home / "dmclient.log")
    try:
        with SyncClient.for_daemon("dmclient", runtime_dir=runtime, call_timeout=60) as c, \
                c.subscribe("dmclient.download.state") as sub:
            result = c.call("dmclient.check", {"vehicle_version": V1})
            assert result["status"] == "update" and result["assignment"]["target_vehicle_version"] == V2
            (engine,) = result["assignment"]["ecus"]
            delta = engine["delta"]  # offered; its base is not cached here, so dmclient falls back to the full image
            targets = [{"name": "engine", "url": engine["url"], "length": engine["length"], "hashes": engine["hashes"],
                        "delta": {"base": delta["base"], "url": delta["url"], "length": delta["length"],
                                  "hashes": delta["hashes"]}}]
            started = c.call("dmclient.download.start", {"targets": targets, "pin": "campaign:1"})
            tid = started["targets"][0]["id"]
            while True:
                ev = sub.get(timeout=60)
                target = ev.params["target"]
                if target["id"] == tid and target["state"] in ("done", "failed"):
                    break
            assert target["state"] == "done", target
            assert Path(target["path"]).read_bytes() == (world / "images" / "engine-1.1.0.hex").read_bytes()
            nothing = c.call("dmclient.check", {"vehicle_version": V3})
            assert nothing["status"] == "nothing"
    finally:
        daemon.stop()
        shutil.rmtree(runtime, ignore_errors=True)
