"""A real daemon process on agent.runtime.Daemon: IPC across processes, restarts, signals, sd_notify."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ipc_echo_daemon import PROTOCOL
from ipc_helpers import DaemonProcess, NotifyListener

from agent.errors import NegativeResponseError, TransportError, VerificationError
from agent.ipc import AccessDeniedError, IpcClient, SyncClient

pytestmark = pytest.mark.e2e

MakeDaemon = Callable[..., DaemonProcess]


def client(daemon: DaemonProcess, **kwargs: Any) -> IpcClient:
    kwargs.setdefault("connect_timeout", 10)
    kwargs.setdefault("call_timeout", 10)
    return IpcClient(daemon.socket, PROTOCOL, **kwargs)


async def test_round_trip_between_processes(echo_daemon: MakeDaemon) -> None:
    daemon = echo_daemon()
    assert daemon.proc is not None
    async with client(daemon) as c:
        assert await c.call("echo.say", {"text": "ab", "times": 3}) == {"text": "ababab"}
        assert await c.call("daemon.ping") == {"daemon": "echo", "pid": daemon.proc.pid}
        status = await c.call("daemon.status")
        assert status["state"] == "ready" and status["pid"] == daemon.proc.pid
        assert [w["name"] for w in status["workers"]] == ["pump"]
        with pytest.raises(VerificationError, match=r"^target engine.bin: sha256 mismatch$"):
            await c.call("echo.fail", {"kind": "verification"})
        with pytest.raises(NegativeResponseError) as nrc:
            await c.call("echo.fail", {"kind": "nrc"})
        assert nrc.value.nrc == 0x31
        assert await c.call("echo.say", {"text": "still here"}) == {"text": "still here"}


async def test_client_reconnects_after_sigkill_and_restart_with_subscriptions_restored(
        echo_daemon: MakeDaemon) -> None:
    daemon = echo_daemon()
    async with client(daemon, retry_delay=0.01, max_retry_delay=0.1) as c:
        connections: asyncio.Queue[int] = asyncio.Queue()
        c.on_connect(lambda: connections.put_nowait(c.generation))
        ticks = await c.subscribe("echo.tick")
        assert await c.call("echo.emit", {"event": "echo.tick", "n": 1}) == {"delivered": 1}
        assert (await ticks.get(10)).params == {"n": 1}

        held = asyncio.create_task(c.call("echo.hold", {"key": "k"}))
        assert await c.call("echo.say", {"text": "x"})  # the hold request has reached the daemon
        daemon.signal(signal.SIGKILL)
        assert daemon.wait() == -signal.SIGKILL
        with pytest.raises(TransportError, match=r"lost before the answer came"):
            await held

        daemon.start()  # the same socket path: the stale socket left by SIGKILL is replaced
        assert await asyncio.wait_for(connections.get(), 30) == 2
        # re-subscribed before on_connect ran: the new process delivers to us without a new subscribe()
        assert await c.call("echo.emit", {"event": "echo.tick", "n": 2}) == {"delivered": 1}
        assert (await ticks.get(10)).params == {"n": 2}
        assert await c.call("echo.emit", {"event": "echo.other", "n": 3}) == {"delivered": 0}


def test_sigterm_gives_a_clean_exit_the_socket_removed_and_stopping_notified(
        echo_daemon: MakeDaemon, notify: NotifyListener) -> None:
    daemon = echo_daemon()
    with SyncClient(daemon.socket, PROTOCOL) as c:
        assert c.call("daemon.ping")["daemon"] == "echo"
        with c.subscribe("daemon.state") as states:
            daemon.signal(signal.SIGTERM)
            assert states.get(10).params == {"daemon": "echo", "state": "stopping"}
    notify.expect("STOPPING", "1")
    assert daemon.wait() == 0
    assert not daemon.socket.exists()
    assert "exiting with code 0" in daemon.log()


def test_ready_is_notified_with_a_status_naming_the_socket(echo_daemon: MakeDaemon, notify: NotifyListener) -> None:
    daemon = echo_daemon(start=False)
    daemon.start(wait_ready=False)
    ready, before = notify.expect("READY", "1")
    assert ready["STATUS"] == f"serving on {daemon.socket}"
    assert before == []  # nothing was announced before READY
    # READY came after the socket was up: a client connects at once, no retry needed
    with SyncClient(daemon.socket, PROTOCOL) as c:
        assert c.call("daemon.ping")


def test_watchdog_pings_only_while_the_worker_progresses(echo_daemon: MakeDaemon, notify: NotifyListener) -> None:
    # systemd asks for a 0.2 s watchdog: pings every 0.1 s; the worker must progress every 0.5 s
    daemon = echo_daemon({"watchdog": {"worker_deadline": 0.5}, "heartbeat_s": 0.02},
                         env={"WATCHDOG_USEC": "200000"})
    with SyncClient(daemon.socket, PROTOCOL) as c:
        c.call("echo.worker", {"action": "busy"})
        notify.expect("WATCHDOG", "1", timeout=10)

        c.call("echo.worker", {"action": "stall"})  # busy, but no more heartbeats
        stalled, _ = notify.expect("STATUS", contains="stalled", timeout=10)
        assert "pump (no progress for" in stalled["STATUS"] and "deadline 0.5 s" in stalled["STATUS"]
        status = c.call("daemon.status")
        assert status["workers"][0]["state"] == "stalled"

        c.call("echo.worker", {"action": "busy"})  # progress again
        _, between = notify.expect("STATUS", "watchdog: all workers progressing", timeout=10)
        assert not [m for m in between if "WATCHDOG" in m], "pinged while the worker was stalled"
        notify.expect("WATCHDOG", "1", timeout=10)

        # an idle worker has no deadline: 8 pings span 0.8 s, past its 0.5 s deadline, and no stall
        c.call("echo.worker", {"action": "idle"})
        notify.expect("WATCHDOG", "1", timeout=10)
        for _ in range(8):
            _, between = notify.expect("WATCHDOG", "1", timeout=10)
            assert not [m for m in between if "stalled" in m.get("STATUS", "")]
        assert c.call("daemon.status")["workers"][0]["state"] == "idle"


def test_sighup_reloads_the_config_and_a_bad_file_keeps_the_running_one(
        echo_daemon: MakeDaemon, notify: NotifyListener) -> None:
    daemon = echo_daemon({"greeting": "hello"})
    with SyncClient(daemon.socket, PROTOCOL) as c:
        assert c.call("echo.config")["greeting"] == "hello"
        daemon.write_config({"greeting": "bonjour", "log_level": "debug"})
        daemon.signal(signal.SIGHUP)
        notify.expect("RELOADING", "1")
        ready, _ = notify.expect("READY", "1")
        assert ready["STATUS"] == "configuration reloaded"
        assert c.call("echo.config") == {"greeting": "bonjour", "log_level": "debug", "heartbeat_s": 0.02}

        daemon.write_config({"greeting": "hallo", "colour": "red"})
        daemon.signal(signal.SIGHUP)
        ready, _ = notify.expect("READY", "1")
        assert "reload failed, running configuration kept" in ready["STATUS"]
        assert "unknown key 'colour'" in ready["STATUS"] and str(daemon.config_path) in ready["STATUS"]
        assert c.call("echo.config")["greeting"] == "bonjour"


def test_a_bad_config_stops_the_daemon_with_file_key_and_reason(echo_daemon: MakeDaemon) -> None:
    daemon = echo_daemon({"ipc": {"mode": "0999"}}, start=False)
    daemon.start(wait_ready=False)
    assert daemon.wait() == 2
    assert f"{daemon.config_path}: echo.ipc.mode: expected an octal file mode such as '0660', got '0999'" \
        in daemon.log()


def test_the_configured_uid_policy_refuses_this_user(echo_daemon: MakeDaemon) -> None:
    other_uid = 54321 if os.getuid() != 54321 else 54322
    daemon = echo_daemon({"ipc": {"allowed_users": [other_uid], "mode": "0640"}})
    assert stat.S_IMODE(os.stat(daemon.socket).st_mode) == 0o640
    with pytest.raises(AccessDeniedError, match=fr"uid {os.getuid()} gid .*\(allowed uids: {other_uid};"), \
            SyncClient(daemon.socket, PROTOCOL):
        pass
    assert daemon.proc is not None and daemon.proc.poll() is None  # still running
    assert f"refused pid {os.getpid()} uid {os.getuid()}" in daemon.log()


def test_a_second_instance_on_the_same_socket_refuses_to_start(echo_daemon: MakeDaemon, rundir: Path) -> None:
    first = echo_daemon()
    assert first.proc is not None
    second = echo_daemon(start=False)
    second.log_path = rundir / "second.log"
    second.start(wait_ready=False)
    assert second.wait() == 2
    assert f"another daemon (pid {first.proc.pid}) is already serving this socket" in second.log()
    with SyncClient(first.socket, PROTOCOL) as c:
        assert c.call("daemon.ping")["pid"] == first.proc.pid
