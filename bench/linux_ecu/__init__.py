"""The bench Linux ECU: its own ``ota-dmclient`` and ``ota-ecu-agent`` as processes on loopback.

A Linux ECU in the car (IVI, ADAS, T-BOX) downloads its own packages (independent download,
issue 8). On the bench it is two processes with everything of their own under ``dir``::

    dir/pki/client.pem|key         its TLS client certificate, issued by the bench PKI's CA (CN <VIN>:<name>)
    dir/pki/enc.key|enc.pub.pem    its own encryption key pair (P-256): the Director wraps the content keys of
                                   its encrypted packages to enc.pub.pem; its dmclient unwraps with enc.key
    dir/director-root.json         its own copy of the Director root (partial verification)
    dir/dmclient.yaml              its dmclient: backend URL + its certificate, cache, state DB
    dir/ecu_agent.yaml             its update agent: ECU name, slots, SOME/IP address / instance / SD
    dir/cache/                     the dmclient's cache: where the ECU's downloaded bytes land
    dir/state/                     dmclient.db, the agent's state.json, slots/slot_a|slot_b + slots.json

The two runtime dirs (sockets, logs, supervisor records) are short ones under /tmp (a Unix
socket path holds at most 107 bytes). Both daemons are started and awaited by
:class:`agent.runtime.supervisor.Supervisor` (``daemon.ping``), one per config file (the
dmclient's section and the agent's cannot share a file: each daemon refuses sections it does
not know).

    ecu = LinuxEcuBench(dir, "ivi", backend_url, pki, director_root, address="127.0.0.30", sd=sd)
    ecu.start()                      # both; only those not running
    ecu.kill("dmclient")             # SIGKILL (a crash); start() brings it back
    ecu.forget(sha256)               # its dmclient loses a cached image (the next order downloads it)
    ecu.running_version(); ecu.slots()
    ecu.set_fail("install")          # none | download | install | activate (SIGHUP: no restart)
    ecu.stop(); ecu.cleanup()
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from agent.errors import OtaTimeoutError
from agent.ipc.sync import SyncClient
from agent.runtime.supervisor import DaemonSpec, Supervisor, select_daemons
from agent.someip.discovery import SdConfig
from bench.pki import BenchPki, _key, _leaf, _write_cert, _write_key
from bench.readyproc import tail
from update_agent.linux_ecu.daemon import FAILS
from update_agent.linux_ecu.service import INSTANCE_ID
from update_agent.linux_ecu.slots import STATE, SlotState

ECU_AGENT = DaemonSpec("ecu_agent", "ota-ecu-agent", ("update_agent.linux_ecu.daemon",))
WHICH = ("dmclient", "ecu_agent")


def issue_client_cert(pki: BenchPki, directory: Path, cn: str, *, days: int = 30) -> tuple[Path, Path]:
    """A TLS client certificate (EKU clientAuth) for ``cn``, issued by the bench PKI's root CA: (cert, key)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca_cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    key, cert = _leaf(ca_key, ca_cert, cn, server=False, hosts=(), days=days)
    cert_path, key_path = directory / "client.pem", directory / "client.key"
    _write_key(key_path, key)
    _write_cert(cert_path, cert)
    return cert_path, key_path


def encryption_key_pair(directory: Path) -> tuple[Path, Path]:
    """The ECU's own encryption key pair in ``directory`` (generated once, at run time): (private, public PEM)."""
    directory.mkdir(parents=True, exist_ok=True)
    private, public = directory / "enc.key", directory / "enc.pub.pem"
    if not private.exists():
        key = _key()
        _write_key(private, key)
        public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


class LinuxEcuBench:
    """One bench Linux ECU (see the module docstring)."""

    def __init__(self, dir: Path, name: str, backend_url: str, pki: BenchPki, director_root: Path, *,
                 address: str, sd: SdConfig, instance_id: int = INSTANCE_ID, initial_version: str = "1.0.0",
                 hardware_id: str | None = None, fail: str = "none", log_level: str = "info",
                 progress_interval: float = 0.2, ready_timeout: float = 30.0,
                 dmclient_overrides: dict[str, Any] | None = None) -> None:
        if fail not in FAILS:
            raise ValueError(f"fail must be one of {', '.join(FAILS)}, got {fail!r}")
        self.dir = dir.resolve()
        self.name = name
        self.address = address
        self.sd = sd
        self.instance_id = instance_id
        self.dir.mkdir(parents=True, exist_ok=True)
        self.run_root = Path(tempfile.mkdtemp(prefix=f"le-{name}-", dir="/tmp"))
        self.runtime = {"dmclient": self.run_root / "dm", "ecu_agent": self.run_root / "agent"}
        self.cache_dir = self.dir / "cache"
        self.state_dir = self.dir / "state"
        self.director_root = self.dir / "director-root.json"
        shutil.copy(director_root, self.director_root)
        cert, key = issue_client_cert(pki, self.dir / "pki", f"{pki.vin}:{name}")
        self.encryption_key, self.encryption_pub = encryption_key_pair(self.dir / "pki")
        self.configs = {"dmclient": self.dir / "dmclient.yaml", "ecu_agent": self.dir / "ecu_agent.yaml"}
        dm: dict[str, Any] = {
            "log_level": log_level, "shutdown_timeout": 5,
            "backend": {"url": backend_url.rstrip("/") + "/", "ca_file": str(pki.ca_cert), "cert_file": str(cert),
                        "key_file": str(key), "connect_timeout": 5, "read_timeout": 30},
            "retries": {"attempts": 3, "base_delay": 0.05, "max_delay": 0.5, "max_retry_after": 5},
            "downloads": {"concurrency": 1, "chunk_bytes": "16KiB", "checkpoint_bytes": "64KiB",
                          "min_free_bytes": 0, "progress_interval": 0.05},
            "cache": {"dir": str(self.cache_dir), "budget": "1GiB"},
            "state_db": str(self.state_dir / "dmclient.db"),
            "encryption_key": str(self.encryption_key),
            **(dmclient_overrides or {})}
        self._write("dmclient", dm)
        self._agent: dict[str, Any] = {
            "log_level": log_level, "shutdown_timeout": 5,
            "ecu": name, "director_root": str(self.director_root), "state_dir": str(self.state_dir),
            "initial_version": initial_version,
            "dmclient_socket": str(self.runtime["dmclient"] / "dmclient.sock"),
            "progress_interval": progress_interval, "fail": fail,
            "someip": {"address": address, "instance_id": instance_id,
                       "sd": {"group": sd.group, "port": sd.port, "multicast_interface": sd.multicast_interface,
                              "cyclic_offer_delay": sd.timing.cyclic_offer_delay, "ttl": sd.timing.ttl}}}
        if hardware_id is not None:
            self._agent["hardware_id"] = hardware_id
        self._write("ecu_agent", self._agent)
        self.supervisors = {
            which: Supervisor(self.configs[which], env=self._env(which), ready_timeout=ready_timeout, grace=10.0,
                              daemons=select_daemons("dmclient") if which == "dmclient" else (ECU_AGENT,))
            for which in WHICH}

    def _write(self, which: str, section: dict[str, Any]) -> None:
        doc = {"runtime": {"dir": str(self.runtime[which])}, which: section}
        tmp = self.configs[which].with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
        os.replace(tmp, self.configs[which])

    def _env(self, which: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "STATE_DIRECTORY")}
        env["OTA_RUNTIME_DIR"] = str(self.runtime[which])
        return env

    # -- processes ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the dmclient, then the agent (each only if not running); returns once both answer."""
        for which in WHICH:
            self.supervisors[which].up()

    def stop(self) -> None:
        """SIGTERM the agent, then the dmclient."""
        for which in reversed(WHICH):
            self.supervisors[which].down()

    def kill(self, which: str = "all") -> None:
        """SIGKILL ``dmclient``, ``ecu_agent`` or ``all`` (a crash), and wait until it is gone."""
        for name in (WHICH if which == "all" else (which,)):
            pid = self.supervisors[name].running_pid(name)
            if pid is None:
                continue
            fd = os.pidfd_open(pid)
            try:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
                if not select.select([fd], [], [], 30)[0]:
                    raise OtaTimeoutError(f"{name} (pid {pid}) still runs 30 s after SIGKILL")
            finally:
                os.close(fd)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)

    def forget(self, sha256: str) -> bool:
        """The ECU's dmclient loses a cached image (a fresh download next time): the file is removed while the
        dmclient is stopped, and its cache reconcile at start drops the record. False: it was not cached."""
        path = self.cache_dir / "objects" / sha256
        if not path.exists():
            return False
        self.supervisors["dmclient"].down()
        path.unlink()
        self.start()
        return True

    def pid(self, which: str) -> int | None:
        return self.supervisors[which].running_pid(which)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.run_root, ignore_errors=True)

    def __enter__(self) -> LinuxEcuBench:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # -- knobs and views ----------------------------------------------------------------------------
    def set_fail(self, fail: str, *, timeout: float = 30.0) -> None:
        """Make ``download``, ``install`` or ``activate`` fail (``none``: nothing); a running agent re-reads it."""
        if fail not in FAILS:
            raise ValueError(f"fail must be one of {', '.join(FAILS)}, got {fail!r}")
        self._agent["fail"] = fail
        self._write("ecu_agent", self._agent)
        pid = self.pid("ecu_agent")
        if pid is None:
            return
        with self.agent_client() as client, client.subscribe("daemon.state") as states:
            os.kill(pid, signal.SIGHUP)
            while True:
                event = states.get(timeout=timeout)
                if event.params["state"] == "ready":
                    detail = event.params.get("detail")
                    if detail:
                        raise RuntimeError(f"{self.name}: the agent did not take fail={fail}: {detail}")
                    return

    def agent_client(self) -> SyncClient:
        return SyncClient(self.runtime["ecu_agent"] / "ecu_agent.sock", daemon="ecu_agent", call_timeout=30.0)

    def dmclient_client(self) -> SyncClient:
        return SyncClient(self.runtime["dmclient"] / "dmclient.sock", daemon="dmclient", call_timeout=30.0)

    def slots(self) -> dict[str, Any]:
        """``slots.json`` as the ECU last wrote it: current, next, and each slot's version / sha256 / complete."""
        path = self.state_dir / "slots" / STATE
        state = SlotState.from_json(yaml.safe_load(path.read_text()), str(path))
        return {"running_version": state.running_version, **state.to_json()}

    def running_version(self) -> str:
        return str(self.slots()["running_version"])

    def log(self, which: str) -> Path:
        return self.supervisors[which].log_dir / f"{which}.log"

    @property
    def dmclient_log(self) -> Path:
        return self.log("dmclient")

    @property
    def agent_log(self) -> Path:
        return self.log("ecu_agent")

    def logs(self) -> str:
        """The tails of both logs (for assertion messages)."""
        return "\n".join(f"--- {w} ---\n{tail(self.log(w))}" for w in WHICH)


__all__ = ["ECU_AGENT", "LinuxEcuBench", "encryption_key_pair", "issue_client_cert"]
