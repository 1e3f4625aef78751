"""The Daemon base class run in-process: a crashing worker task, and a start() that fails."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ipc_helpers import NotifyListener

from agent.errors import VehicleStateError
from agent.ipc import Group
from agent.ipc.protocol import PROTOCOL
from agent.runtime import Daemon
from agent.runtime.config import load_config
from agent.runtime.sdnotify import Notifier

# a daemon of its own: no methods beyond the common ones
BARE = PROTOCOL.with_groups(Group("bare")).for_daemon("bare")


class Crashing(Daemon):
    name = "bare"
    protocol = BARE

    async def start(self) -> None:
        self.go = asyncio.Event()
        self.spawn(self.work(), "work")

    async def work(self) -> None:
        await self.go.wait()
        raise RuntimeError("disk on fire")


class Refusing(Daemon):
    name = "bare"
    protocol = BARE

    async def start(self) -> None:
        raise VehicleStateError("no cache partition mounted")


async def test_a_crashing_task_stops_the_daemon_with_exit_code_1(rundir: Path, notify: NotifyListener) -> None:
    config = load_config(Crashing.config_class, "bare", None)
    daemon = Crashing(config, notifier=Notifier(str(notify.path)))
    running = asyncio.create_task(daemon.run())
    loop = asyncio.get_running_loop()
    ready = await loop.run_in_executor(None, notify.expect, "READY", "1")
    assert ready[0]["STATUS"] == f"serving on {rundir / 'bare.sock'}"
    assert (rundir / "bare.sock").exists()
    daemon.go.set()
    assert await running == 1
    await loop.run_in_executor(None, notify.expect, "STOPPING", "1")
    assert not (rundir / "bare.sock").exists()


async def test_an_ota_error_in_start_exits_with_its_branch_code(rundir: Path, notify: NotifyListener) -> None:
    daemon = Refusing(load_config(Refusing.config_class, "bare", None), notifier=Notifier(str(notify.path)))
    assert await daemon.run() == VehicleStateError.exit_code
    status, _ = notify.expect("STATUS", contains="failed to start", timeout=5)
    assert status["STATUS"] == "failed to start: no cache partition mounted"
    assert not (rundir / "bare.sock").exists()
