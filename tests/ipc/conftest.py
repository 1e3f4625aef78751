"""Fixtures for the IPC and daemon-runtime tests.

* ``async def`` tests run in a fresh event loop under a hard timeout (no
  pytest-asyncio needed): a hung test fails loudly instead of hanging.
* ``rundir``: a short temporary directory (Unix socket paths are limited to
  107 bytes), also exported as ``$OTA_RUNTIME_DIR``.
* ``notify``: a real AF_UNIX datagram socket standing in for systemd's
  ``NOTIFY_SOCKET``.
* ``echo_daemon``: starts ``ipc_echo_daemon.py`` as a real process and waits
  for its ``READY=1``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ipc_helpers import DaemonProcess, NotifyListener

ASYNC_TEST_TIMEOUT = 60.0


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}

    async def bounded() -> None:
        try:
            await asyncio.wait_for(pyfuncitem.obj(**kwargs), ASYNC_TEST_TIMEOUT)
        except asyncio.TimeoutError:
            pytest.fail(f"test did not finish within {ASYNC_TEST_TIMEOUT} s")

    asyncio.run(bounded())
    return True


@pytest.fixture
def rundir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ipc-", dir="/tmp"))
    monkeypatch.setenv("OTA_RUNTIME_DIR", str(path))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def notify(rundir: Path) -> Iterator[NotifyListener]:
    listener = NotifyListener(rundir / "notify.sock")
    yield listener
    listener.close()


@pytest.fixture
def echo_daemon(rundir: Path, notify: NotifyListener) -> Iterator[Callable[..., DaemonProcess]]:
    started: list[DaemonProcess] = []

    def make(config: dict[str, Any] | None = None, env: dict[str, str] | None = None,
             start: bool = True) -> DaemonProcess:
        daemon = DaemonProcess(rundir, notify, config, env)
        started.append(daemon)
        if start:
            daemon.start()
        return daemon

    yield make
    for daemon in started:
        with contextlib.suppress(Exception):
            daemon.stop()
