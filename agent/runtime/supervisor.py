"""The bench supervisor: start the stack's daemons as processes, check them, stop them.

Bench only: on a board systemd starts the units in ``configs/systemd/`` (Type=notify,
watchdog, restart). Here ``otactl daemons up`` starts each daemon as
``python -m <module> --config STACK.yaml`` in its own session (it outlives the command),
with stdout and stderr appended to ``<runtime dir>/logs/<daemon>.log``, and waits until
its socket answers ``daemon.ping`` (the IPC client's connect with back-off, raced against
the process's exit through a pidfd, so a daemon that dies at start-up fails at once with
its log's tail). The pids and log paths are recorded in ``<runtime dir>/supervisor.json``.
``up(parallel=True)`` starts them all at once and then waits for each (as systemd does at
boot; a power-cut test restarts five daemons in the time of the slowest). systemd's
watchdog and ``Restart=`` are played by :class:`agent.runtime.keeper.WatchdogKeeper`, which
gives each daemon its notify socket through ``daemon_env``.

``down`` sends SIGTERM to each recorded daemon (engine first, update agent last), waits
on its pidfd up to ``grace`` s, then SIGKILLs it and says so. A recorded pid is only
signalled if ``/proc/<pid>/cmdline`` still names the daemon's module (pids are reused).
``status`` pings each daemon. Daemons whose module is not installed are reported as
missing, never silently skipped.

Written by hand: the job is small (five processes, one record file) and must use the
stack's own IPC ping as the readiness test; a general process manager (supervisord,
circus) would add a daemon of its own and know nothing of ``daemon.ping``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import resource
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.errors import ConfigurationError, OtaError, OtaTimeoutError, TransportError
from agent.ipc.client import IpcClient
from agent.ipc.paths import runtime_dir as configured_runtime_dir
from agent.runtime.config import peer_socket

RECORD = "supervisor.json"
TAIL = 1500


@dataclass(frozen=True)
class DaemonSpec:
    """One daemon of the stack: config section / socket stem, console script, candidate modules."""

    name: str
    script: str
    modules: tuple[str, ...]

    def module(self) -> str | None:
        """The first candidate module that is installed, or None."""
        for module in self.modules:
            try:
                if importlib.util.find_spec(module) is not None:
                    return module
            except ModuleNotFoundError:
                continue
        return None


#: start order: what others call first; ``down`` goes in reverse
DAEMONS = (
    DaemonSpec("update_agent", "ota-update-agent", ("update_agent.daemon",)),
    DaemonSpec("dmclient", "ota-dmclient", ("dmclient.daemon",)),
    DaemonSpec("system_agent", "ota-system-agent", ("system_agent.daemon",)),
    DaemonSpec("hmi_agent", "ota-hmi-agent", ("hmi_agent.daemon",)),
    DaemonSpec("agent", "ota-agent", ("agent.engine.daemon", "agent.daemon")),
)


def select_daemons(*names: str) -> tuple[DaemonSpec, ...]:
    """The specs of the named daemons, in start order (a bench or a test running part of the stack)."""
    unknown = sorted(set(names) - {d.name for d in DAEMONS})
    if unknown:
        raise ConfigurationError(f"unknown daemon {unknown[0]!r} (daemons: {', '.join(d.name for d in DAEMONS)})")
    return tuple(d for d in DAEMONS if d.name in names)


@dataclass
class DaemonReport:
    """What ``up`` / ``down`` / ``status`` say about one daemon."""

    name: str
    state: str  # running | started | stopped | killed | missing | failed | not-running
    pid: int | None = None
    log: str | None = None
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"daemon": self.name, "state": self.state, "pid": self.pid, "log": self.log, "detail": self.detail,
                **self.extra}


#: the daemons' glibc malloc arenas, as in the systemd units
MALLOC_ARENA_MAX = "2"


class Supervisor:
    """Start / stop / check the stack's daemons for one stack config; see the module docstring."""

    def __init__(self, config: Path, *, env: Mapping[str, str] | None = None, ready_timeout: float = 30.0,
                 grace: float = 10.0, daemons: tuple[DaemonSpec, ...] = DAEMONS,
                 say: Callable[[str], None] | None = None,
                 daemon_env: Callable[[str], Mapping[str, str]] | None = None) -> None:
        self.config = config.resolve()
        if not self.config.is_file():
            raise ConfigurationError("stack config not found", source=str(config))
        self.env = dict(os.environ if env is None else env)
        # as the systemd units set it (configs/systemd): glibc gives each thread that allocates its
        # own malloc arena otherwise, several MiB of RSS per worker thread that never goes back
        self.env.setdefault("MALLOC_ARENA_MAX", MALLOC_ARENA_MAX)
        self.ready_timeout = ready_timeout
        self.grace = grace
        self.daemons = daemons
        self.say = say or (lambda text: None)
        #: extra environment per daemon (the watchdog keeper's NOTIFY_SOCKET and WATCHDOG_USEC)
        self.daemon_env = daemon_env
        #: False: daemons start with RLIMIT_CORE 0 (the keeper's SIGABRT leaves no core file in the cwd)
        self.core_dumps = True
        from agent.config.node import load_yaml

        top = load_yaml(self.config)
        shared = top.child("runtime", {})
        self.runtime_dir = configured_runtime_dir(shared.get("dir", str, None), self.env)
        self.record_path = self.runtime_dir / RECORD
        self.log_dir = self.runtime_dir / "logs"

    # -- the record -------------------------------------------------------------------------------
    def _read_record(self) -> dict[str, Any]:
        try:
            data = json.loads(self.record_path.read_text())
        except FileNotFoundError:
            return {"daemons": {}}
        except (OSError, ValueError) as e:
            raise ConfigurationError(f"unreadable supervisor record: {e}", source=str(self.record_path)) from e
        return data if isinstance(data, dict) and isinstance(data.get("daemons"), dict) else {"daemons": {}}

    def _write_record(self, record: dict[str, Any]) -> None:
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.record_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2))
        os.replace(tmp, self.record_path)

    def _alive(self, entry: Mapping[str, Any]) -> bool:
        """The recorded process still runs and is still that daemon (pids are reused)."""
        pid = entry.get("pid")
        if not isinstance(pid, int):
            return False
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return str(entry.get("module", "")).encode() in cmdline

    # -- up ---------------------------------------------------------------------------------------
    def up(self, *, parallel: bool = False) -> list[DaemonReport]:
        """Start every daemon that is not running; all or nothing (a failure stops those started now).

        ``parallel``: start them all at once, then wait for each (as systemd starts units at boot);
        otherwise one after the other in start order.
        """
        record = self._read_record()
        record["config"] = str(self.config)
        reports: list[DaemonReport] = []
        started: list[str] = []
        self.log_dir.mkdir(parents=True, exist_ok=True)
        launched: list[tuple[DaemonSpec, str, Path, subprocess.Popen[bytes]]] = []
        for spec in self.daemons:
            entry = record["daemons"].get(spec.name)
            if entry is not None and self._alive(entry):
                reports.append(DaemonReport(spec.name, "running", entry["pid"], entry.get("log"), "already running"))
                continue
            module = spec.module()
            if module is None:
                reports.append(DaemonReport(spec.name, "missing", detail=f"{spec.script} is not installed "
                                            f"(no module {' or '.join(spec.modules)})"))
                self.say(f"{spec.name}: missing ({spec.script} not installed)")
                continue
            log = self.log_dir / f"{spec.name}.log"
            launched.append((spec, module, log, self._spawn(spec, module, log)))
            if parallel:
                continue
            self._await_launched(launched, record, started, reports)
            launched = []
        self._await_launched(launched, record, started, reports)
        return reports

    def _await_launched(self, launched: list[tuple[DaemonSpec, str, Path, subprocess.Popen[bytes]]],
                        record: dict[str, Any], started: list[str], reports: list[DaemonReport]) -> None:
        for index, (spec, module, log, proc) in enumerate(launched):
            try:
                self._await_ready(spec, proc, log)
            except OtaError:
                for _s, _m, _l, other in launched[index + 1:]:
                    if other.poll() is None:
                        other.kill()
                    other.wait()
                for name in reversed(started):
                    self._stop_one(name, record["daemons"].pop(name))
                self._write_record(record)
                raise
            record["daemons"][spec.name] = {"pid": proc.pid, "module": module, "log": str(log),
                                            "started_at": time.time()}
            self._write_record(record)
            started.append(spec.name)
            reports.append(DaemonReport(spec.name, "started", proc.pid, str(log)))
            self.say(f"{spec.name}: ready (pid {proc.pid})")

    def _spawn(self, spec: DaemonSpec, module: str, log: Path) -> subprocess.Popen[bytes]:
        env = {**self.env, **(self.daemon_env(spec.name) if self.daemon_env is not None else {})}
        with log.open("ab") as out:
            return subprocess.Popen([sys.executable, "-m", module, "--config", str(self.config)],
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
                                    start_new_session=True, preexec_fn=None if self.core_dumps else _no_core)

    def _await_ready(self, spec: DaemonSpec, proc: subprocess.Popen[bytes], log: Path) -> None:
        try:
            asyncio.run(self._wait_ready(spec.name, proc))
        except OtaError as e:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            raise type(e)(f"{spec.script} did not get ready: {e}; log {log}: {_tail(log)}") from None

    async def _wait_ready(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        """``daemon.ping`` answered, raced against the process's exit (pidfd)."""
        loop = asyncio.get_running_loop()
        exited = loop.create_future()
        pidfd = os.pidfd_open(proc.pid)

        def on_exit() -> None:
            if not exited.done():
                exited.set_result(None)

        loop.add_reader(pidfd, on_exit)
        client = IpcClient(peer_socket(name, self.config, self.env), daemon=name, reconnect=True,
                           connect_timeout=self.ready_timeout, call_timeout=5.0)
        try:
            ping = asyncio.ensure_future(client.call("daemon.ping"))
            done, _ = await asyncio.wait({ping, exited}, timeout=self.ready_timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if ping in done:
                ping.result()
                return
            ping.cancel()
            if exited in done:
                raise TransportError(f"exited with code {proc.wait()} before answering daemon.ping")
            raise OtaTimeoutError(f"no daemon.ping answer within {self.ready_timeout:g} s")
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            await client.close()

    def recorded_pid(self, name: str) -> int | None:
        """The pid recorded for ``name``, running or not."""
        pid = self._read_record()["daemons"].get(name, {}).get("pid")
        return pid if isinstance(pid, int) else None

    def running_pid(self, name: str) -> int | None:
        """The recorded pid of ``name`` if that process still runs and is that daemon."""
        entry = self._read_record()["daemons"].get(name)
        return int(entry["pid"]) if entry is not None and self._alive(entry) else None

    # -- down -------------------------------------------------------------------------------------
    def down(self) -> list[DaemonReport]:
        """SIGTERM each recorded daemon (reverse start order), SIGKILL after ``grace`` s."""
        record = self._read_record()
        reports = []
        order = [s.name for s in reversed(self.daemons)]
        names = [n for n in order if n in record["daemons"]] + [n for n in record["daemons"] if n not in order]
        for name in names:
            entry = record["daemons"].pop(name)
            reports.append(self._stop_one(name, entry))
            self._write_record(record)
        if self.record_path.exists():
            self.record_path.unlink()
        return reports

    def _stop_one(self, name: str, entry: Mapping[str, Any]) -> DaemonReport:
        pid, log = entry.get("pid"), entry.get("log")
        if not isinstance(pid, int) or not self._alive(entry):
            self.say(f"{name}: was not running (pid {pid}; see {log})")
            return DaemonReport(name, "not-running", pid if isinstance(pid, int) else None, log,
                                "was not running")
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return DaemonReport(name, "not-running", pid, log, "was not running")
        try:
            os.kill(pid, signal.SIGTERM)
            if _wait_fd(pidfd, self.grace):
                _reap(pid)
                self.say(f"{name}: stopped (pid {pid})")
                return DaemonReport(name, "stopped", pid, log)
            self.say(f"{name}: did not stop within {self.grace:g} s of SIGTERM: killing pid {pid}")
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            _wait_fd(pidfd, self.grace)
            _reap(pid)
            return DaemonReport(name, "killed", pid, log,
                                f"did not stop within {self.grace:g} s of SIGTERM; killed with SIGKILL")
        except ProcessLookupError:
            return DaemonReport(name, "stopped", pid, log)
        finally:
            os.close(pidfd)

    # -- status -----------------------------------------------------------------------------------
    def status(self) -> list[DaemonReport]:
        record = self._read_record()
        return [self._status_one(spec, record["daemons"].get(spec.name)) for spec in self.daemons]

    def _status_one(self, spec: DaemonSpec, entry: Mapping[str, Any] | None) -> DaemonReport:
        pid = entry.get("pid") if entry else None
        log = entry.get("log") if entry else None
        if spec.module() is None:
            return DaemonReport(spec.name, "missing", detail=f"{spec.script} is not installed")
        try:
            status = asyncio.run(self._status_call(spec.name))
        except OtaError as e:
            state = "failed" if entry is not None else "not-running"
            detail = f"recorded pid {pid} does not answer: {e}" if entry is not None else "not started"
            return DaemonReport(spec.name, state, pid if isinstance(pid, int) else None, log, detail)
        return DaemonReport(spec.name, "running", status["pid"], log, status["state"],
                            {"uptime_s": round(status["uptime_s"], 1),
                             "workers": [w["name"] for w in status["workers"] if w["state"] == "stalled"]})

    async def _status_call(self, name: str) -> dict[str, Any]:
        client = IpcClient(peer_socket(name, self.config, self.env), daemon=name, reconnect=False,
                           connect_timeout=2.0, call_timeout=5.0)
        try:
            result: dict[str, Any] = await client.call("daemon.status")
            return result
        finally:
            await client.close()


def _no_core() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _wait_fd(fd: int, timeout: float) -> bool:
    """Wait until a pidfd is readable (the process exited); False on timeout."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


def _reap(pid: int) -> None:
    """Collect the exit status if the process is our child (no zombie); others are reaped by init."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _tail(path: Path) -> str:
    try:
        return path.read_bytes()[-TAIL:].decode("utf-8", "replace").strip() or "(empty)"
    except OSError:
        return "(no log)"
