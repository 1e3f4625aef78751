"""ota-dmclient end to end: real daemon processes, real IPC, real HTTPS backend, real SQLite.

The resume test SIGKILLs the daemon mid-download at an exact byte count (the backend
stalls after N bytes, the test waits for a progress event showing N) and checks that the
restarted daemon finishes, verifies, and re-fetches at most one checkpoint interval.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.errors import ConfigurationError
from agent.ipc.error_codes import SchemaError
from bench.pki import BenchPki

from .conftest import REPO, Backend, payload
from .daemon_fixture import CHECKPOINT, CHUNK, DmclientProcess, wait_bytes, wait_state

pytestmark = pytest.mark.e2e


@pytest.fixture
def dmclient(tmp_path: Path, pki: BenchPki, backend: Backend) -> Iterator[DmclientProcess]:
    d = DmclientProcess(tmp_path, pki, backend)
    d.start()
    yield d
    backend.release()
    d.cleanup()


def start(d: DmclientProcess, *targets: dict[str, Any], **more: Any) -> dict[str, Any]:
    with d.client() as c:
        result: dict[str, Any] = c.call("dmclient.download.start", {"targets": list(targets), **more})
    return result


def test_resume_after_sigkill_refetches_at_most_one_checkpoint(dmclient: DmclientProcess, backend: Backend) -> None:
    f = backend.put("e2e-kill.bin", payload(3 * 1024 * 1024, 71))
    # a whole number of read chunks (16 KiB), but not of checkpoints: what came after the last
    # checkpoint is lost with the process
    n = 92 * CHUNK
    backend.faults({"path": f.name, "stall_after": n, "times": 1})
    with dmclient.client() as c, c.subscribe("dmclient.download.progress", "dmclient.download.state") as sub:
        tid = c.call("dmclient.download.start", {"targets": [f.target()]})["targets"][0]["id"]
        # received all the backend sent before stalling, and the checkpoints below it are durable
        seen = wait_bytes(sub, tid, n, committed=n // CHECKPOINT * CHECKPOINT)
    assert seen["bytes"] == n and seen["committed"] == n // CHECKPOINT * CHECKPOINT
    dmclient.kill()
    dmclient.start()  # finds the target in its database and resumes it without being asked
    with dmclient.client() as c, c.subscribe("dmclient.download.state") as sub:
        status = c.call("dmclient.download.status", {"ids": [tid]})["targets"][0]
        if status["state"] not in ("done", "failed"):
            status = wait_state(sub, tid)
    assert status["state"] == "done", status
    assert Path(status["path"]).read_bytes() == f.data
    first, second = backend.stats(f.name)["requests"]
    assert first["sent"] == n and second["status"] == 206
    assert second["start"] == seen["committed"]  # resumed exactly at the last durable checkpoint
    refetched = first["sent"] - second["start"]  # bytes received before the kill and asked for again
    assert 0 <= refetched <= CHECKPOINT, (first, second)
    assert not any((dmclient.cache / "parts").iterdir())


def test_pause_resume_and_cancel(dmclient: DmclientProcess, backend: Backend) -> None:
    f = backend.put("e2e-pause.bin", payload(1024 * 1024, 72))
    g = backend.put("e2e-cancel.bin", payload(1024 * 1024, 73))
    backend.faults({"path": f.name, "stall_after": 36 * CHUNK, "times": 1},
                   {"path": g.name, "stall_after": 18 * CHUNK, "times": 1})
    with dmclient.client() as c, c.subscribe("dmclient.download.progress", "dmclient.download.state") as sub:
        result = c.call("dmclient.download.start", {"targets": [f.target(), g.target()]})
        fid, gid = (t["id"] for t in result["targets"])
        wait_bytes(sub, fid, 36 * CHUNK)
        c.call("dmclient.download.pause", {"ids": [fid]})
        backend.release()  # the stalled response moves again; the pause stops it at the next chunk
        paused = wait_state(sub, fid, ("paused",))
        assert 36 * CHUNK <= paused["bytes"] < f.length
        c.call("dmclient.download.cancel", {"ids": [gid]})
        assert wait_state(sub, gid)["state"] == "cancelled"
        c.call("dmclient.download.resume", {"ids": [fid]})
        done = wait_state(sub, fid)
    assert done["state"] == "done" and Path(done["path"]).read_bytes() == f.data
    resumed = backend.stats(f.name)["requests"][-1]
    assert resumed["status"] == 206 and resumed["start"] > 0
    assert list((dmclient.cache / "parts").iterdir()) == []  # the cancelled partial file is gone


def test_concurrency_limit_is_honoured(dmclient: DmclientProcess, backend: Backend) -> None:
    files = [backend.put(f"e2e-conc-{i}.bin", payload(500_000, 80 + i)) for i in range(3)]
    backend.faults(*({"path": f.name, "stall_after": 6 * CHUNK, "times": 1} for f in files))
    with dmclient.client() as c, c.subscribe("dmclient.download.progress", "dmclient.download.state") as sub:
        ids = [t["id"] for t in c.call("dmclient.download.start",
                                        {"targets": [f.target() for f in files]})["targets"]]
        wait_bytes(sub, ids[:2], 6 * CHUNK)
        states = [t["state"] for t in c.call("dmclient.download.status", {"ids": ids})["targets"]]
        assert states == ["downloading", "downloading", "queued"]  # concurrency: 2
        backend.release()
        finals: dict[str, str] = {}
        third_released = False
        while len(finals) < 3:  # the third starts when a slot frees, and stalls in its turn
            ev = sub.get(timeout=60)
            if ev.event == "dmclient.download.state" and ev.params["target"]["state"] in ("done", "failed"):
                finals[ev.params["target"]["id"]] = ev.params["target"]["state"]
            elif ev.event == "dmclient.download.progress" and not third_released and \
                    any(t["id"] == ids[2] and t["bytes"] >= 6 * CHUNK for t in ev.params["targets"]):
                assert len(finals) >= 1  # it only started once one of the first two had finished
                backend.release()
                third_released = True
    assert set(finals.values()) == {"done"}


def test_failures_are_target_states_with_clear_errors(dmclient: DmclientProcess, backend: Backend) -> None:
    f = backend.put("e2e-tampered.bin", payload(200_000, 74))
    backend.faults({"path": f.name, "corrupt_at": 1000})
    with dmclient.client() as c, c.subscribe("dmclient.download.state") as sub:
        tid = c.call("dmclient.download.start", {"targets": [f.target()]})["targets"][0]["id"]
        failed = wait_state(sub, tid)
        cache = c.call("dmclient.cache.list")
    assert failed["state"] == "failed" and failed["error"].startswith("VerificationError: ")
    assert "SHA-256 mismatch" in failed["error"]
    assert cache["entries"] == []


def test_pins_protect_cache_entries(dmclient: DmclientProcess, backend: Backend) -> None:
    f = backend.put("e2e-pin.bin", payload(10_000, 75))
    with dmclient.client() as c, c.subscribe("dmclient.download.state") as sub:
        tid = c.call("dmclient.download.start", {"targets": [f.target()], "pin": "campaign:7"})["targets"][0]["id"]
        assert wait_state(sub, tid)["state"] == "done"
        (entry,) = c.call("dmclient.cache.list")["entries"]
        assert entry["pins"] == ["campaign:7"]
        c.call("dmclient.cache.pin", {"sha256": f.hashes.sha256, "owner": "rollback:engine"})
        assert c.call("dmclient.cache.unpin", {"owner": "campaign:7"}) == {"removed": 1}
        assert c.call("dmclient.cache.list")["entries"][0]["pins"] == ["rollback:engine"]


# -- IPC validation on both ends ---------------------------------------------------------------

def test_client_refuses_invalid_params_before_sending(dmclient: DmclientProcess) -> None:
    with dmclient.client() as c:
        with pytest.raises(SchemaError, match=r"params\.targets\[0\]: missing required field 'length'"):
            c.call("dmclient.download.start", {"targets": [{"url": "x.bin", "hashes": {"sha256": "a" * 64}}]})
        with pytest.raises(SchemaError, match=r"params\.targets\[0\]\.hashes\.sha256"):
            c.call("dmclient.download.start", {"targets": [{"url": "x.bin", "length": 1,
                                                            "hashes": {"sha256": "XYZ"}}]})
        assert c.call("dmclient.download.status", {}) == {"targets": []}
    assert "dmclient.download.start" not in dmclient.log_text()  # nothing reached the daemon


class RawConnection:
    """A hand-written JSON-RPC peer on the daemon's socket, to send what a correct client never would."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rb")
        hello = json.loads(self.file.readline())
        assert hello["method"] == "daemon.hello"

    def send(self, raw: bytes) -> dict[str, Any]:
        self.sock.sendall(raw + b"\n")
        reply: dict[str, Any] = json.loads(self.file.readline())
        return reply

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def test_daemon_refuses_invalid_messages_and_keeps_serving(dmclient: DmclientProcess) -> None:
    raw = RawConnection(dmclient.runtime / "dmclient.sock")
    try:
        assert raw.send(b"{not json")["error"]["code"] == -32700
        assert raw.send(b'{"jsonrpc": "1.0", "id": 1, "method": "x"}')["error"]["code"] == -32600
        bad_shape = raw.send(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "dmclient.download.start",
                                         "params": {"targets": [{"length": "big"}]}}).encode())
        assert bad_shape["error"]["code"] == -32602 and "targets[0]" in bad_shape["error"]["message"]
        bad_meaning = raw.send(json.dumps({"jsonrpc": "2.0", "id": 3, "method": "dmclient.download.start",
                                           "params": {"targets": [{"url": "http://plain.example/x", "length": 5,
                                                                   "hashes": {"sha256": "a" * 64}}]}}).encode())
        assert bad_meaning["error"]["code"] == -32602
        assert "targets[0].url: expected an https:// URL" in bad_meaning["error"]["message"]
        unknown = raw.send(json.dumps({"jsonrpc": "2.0", "id": 4, "method": "dmclient.download.pause",
                                       "params": {"ids": ["0123456789ab"]}}).encode())
        assert unknown["error"]["code"] == -32602 and "unknown target or order id" in unknown["error"]["message"]
        ok = raw.send(b'{"jsonrpc": "2.0", "id": 5, "method": "daemon.ping"}')
        assert ok["result"]["daemon"] == "dmclient"
    finally:
        raw.close()
    with dmclient.client() as c:  # and for everybody else
        assert c.call("dmclient.download.status", {}) == {"targets": []}


# -- otactl -------------------------------------------------------------------------------------

def otactl(d: DmclientProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.cli.main", *args], capture_output=True, text=True,
                          cwd=REPO, env=d.env, timeout=120)


def test_otactl_download_and_downloads(dmclient: DmclientProcess, backend: Backend) -> None:
    f = backend.put("e2e-cli.bin", payload(300_000, 76))
    r = otactl(dmclient, "download", f.url, "--sha256", f.hashes.sha256, "--sha512", f.hashes.sha512 or "",
               "--length", str(f.length), "--json")
    assert r.returncode == 0, r.stderr
    status = json.loads(r.stdout)
    assert status["state"] == "done" and Path(status["path"]).read_bytes() == f.data
    r = otactl(dmclient, "download", "e2e-cli.bin", "--sha256", f.hashes.sha256, "--length", str(f.length))
    assert r.returncode == 0 and status["path"] in r.stdout and "already in the cache" in r.stdout
    listed = json.loads(otactl(dmclient, "downloads", "--json").stdout)["targets"]
    assert [t["state"] for t in listed] == ["done", "done"]
    cache = json.loads(otactl(dmclient, "downloads", "--cache", "--json").stdout)
    assert [e["sha256"] for e in cache["entries"]] == [f.hashes.sha256]


def test_otactl_download_failure_exits_with_the_branch_code(dmclient: DmclientProcess, backend: Backend) -> None:
    f = backend.put("e2e-cli-bad.bin", payload(1000, 77))
    r = otactl(dmclient, "download", f.url, "--sha256", "0" * 64, "--length", str(f.length))
    assert r.returncode == 5  # VerificationError
    assert r.stderr.startswith("error: ") and "SHA-256 mismatch" in r.stderr


def test_otactl_without_a_running_daemon_says_so(dmclient: DmclientProcess) -> None:
    dmclient.stop()
    r = otactl(dmclient, "downloads")
    assert r.returncode == 3
    assert "ota-dmclient is not running" in r.stderr and "ota-dmclient --config" in r.stderr


def test_update_check_methods_need_the_uptane_section(dmclient: DmclientProcess) -> None:
    with dmclient.client() as c:
        with pytest.raises(ConfigurationError, match="needs the 'uptane' section"):
            c.call("dmclient.check", {"vehicle_version": "BV OS D 1.1.0"})
        with pytest.raises(ConfigurationError, match="needs the 'uptane' section"):
            c.call("dmclient.installed.list")
        assert c.call("dmclient.download.status", {}) == {"targets": []}  # the daemon serves on
