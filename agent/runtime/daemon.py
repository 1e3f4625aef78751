"""The shared daemon lifecycle: config, logging, signals, IPC server, sd_notify, watchdog.

A daemon is a small subclass::

    class DmclientDaemon(Daemon):
        name = "dmclient"                      # config section, socket dmclient.sock, protocol group
        config_class = DmclientConfig          # a DaemonConfig subclass with the daemon's own keys

        async def start(self) -> None:         # before the socket opens: open the DB, start workers
            self.manager = DownloadManager(self.config, publish=self.publish)
            self.spawn(self.manager.run(self.worker("downloader", deadline=30)), "downloader")

        def handlers(self) -> dict[str, Handler]:
            return {"dmclient.download.start": self.manager.start_order, ...}

        async def stop(self) -> None:          # after the socket closed and in-flight requests ended
            await self.manager.close()

        def status_details(self) -> dict[str, Any]:
            return {"active_orders": self.manager.active}

    def main() -> int:                          # console_scripts: ota-dmclient = dmclient.main:main
        return DmclientDaemon.main()

What :meth:`Daemon.run` does, in order: install signal handlers; ``start()``;
open the IPC socket; ``READY=1`` to systemd and ``daemon.state`` ready to
subscribers; ping the watchdog while the workers progress; on SIGTERM/SIGINT:
``STOPPING=1``, ``daemon.state`` stopping, close the socket (in-flight
requests get ``shutdown_timeout`` s), ``stop()``, cancel the spawned tasks,
exit 0. On SIGHUP: ``RELOADING=1``, re-read the config (a bad file is logged
and the running config kept), apply the log level, ``apply_config(old, new)``,
``READY=1``. A spawned task that crashes stops the daemon with exit code 1
(systemd restarts it); an :class:`~agent.errors.OtaError` from ``start()``
exits with the branch's exit code after logging the message.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import Coroutine, Mapping
from typing import Any, ClassVar

from agent.errors import ConfigurationError, OtaError
from agent.ipc.peercred import AccessPolicy
from agent.ipc.registry import Protocol
from agent.ipc.server import Handler, IpcServer
from agent.runtime.config import LOG_LEVELS, DaemonConfig, load_config
from agent.runtime.debug_hang import DebugHang
from agent.runtime.logs import set_level, setup_logging
from agent.runtime.sdnotify import Notifier, watchdog_period
from agent.runtime.signals import SignalHandlers
from agent.runtime.watchdog import Clock, Watchdog, WatchdogPinger, Worker

log = logging.getLogger(__name__)


class Daemon:
    """Base class of the stack's daemons; see the module docstring."""

    #: daemon name: config section, socket stem, protocol group
    name: ClassVar[str] = ""
    #: the configuration dataclass (a DaemonConfig subclass for daemon-specific keys)
    config_class: ClassVar[type[DaemonConfig]] = DaemonConfig
    #: the protocol served; None: ``PROTOCOL.for_daemon(name)``
    protocol: ClassVar[Protocol | None] = None

    def __init__(self, config: DaemonConfig, *, notifier: Notifier | None = None,
                 clock: Clock = time.monotonic, env: Mapping[str, str] | None = None) -> None:
        if not self.name:
            raise TypeError(f"{type(self).__name__} must set the class attribute 'name'")
        self.config = config
        self.env = os.environ if env is None else env
        self.notifier = notifier if notifier is not None else Notifier.from_env(self.env)
        self.watchdog = Watchdog(clock)
        self.state = "starting"
        self.server: IpcServer | None = None
        self.exit_code = 0
        self._stop_event: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reloading: asyncio.Task[None] | None = None

    # -- hooks for subclasses ------------------------------------------------------------------
    async def start(self) -> None:
        """Open resources and spawn workers; runs before the socket opens."""

    def handlers(self) -> Mapping[str, Handler]:
        """The daemon's own methods (``daemon.*`` and subscriptions are built in)."""
        return {}

    async def stop(self) -> None:
        """Release resources; runs after the socket closed and in-flight requests ended.

        Also runs when ``start()`` failed partway, so it must cope with what was not opened.
        """

    async def apply_config(self, old: DaemonConfig, new: DaemonConfig) -> None:
        """Take a reloaded configuration into use (SIGHUP); ``self.config`` is already ``new``."""

    def status_details(self) -> Mapping[str, Any]:
        """Daemon-specific part of ``daemon.status`` (JSON values)."""
        return {}

    # -- services for subclasses -----------------------------------------------------------------
    def publish(self, event: str, params: Mapping[str, Any] | None = None) -> int:
        """Push an event to its subscribers (validated; never waits); returns how many got it."""
        return self.server.publish(event, params) if self.server is not None else 0

    def worker(self, name: str, deadline: float | None = None) -> Worker:
        """Register a watchdog worker (deadline: ``watchdog.worker_deadline`` from the config)."""
        return self.watchdog.worker(name, deadline if deadline is not None else self.config.worker_deadline)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run a background task owned by the daemon: cancelled at shutdown; a crash stops the daemon."""
        task = asyncio.create_task(coro, name=f"{self.name}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def request_stop(self, exit_code: int = 0) -> None:
        """Begin a clean shutdown; the first non-zero code is the process exit code."""
        if exit_code and not self.exit_code:
            self.exit_code = exit_code
        if self._stop_event is not None:
            self._stop_event.set()

    @property
    def protocol_served(self) -> Protocol:
        if self.protocol is not None:
            return self.protocol
        from agent.ipc.protocol import PROTOCOL
        return PROTOCOL.for_daemon(self.name)

    # -- lifecycle --------------------------------------------------------------------------------
    async def run(self) -> int:
        """The whole life of the daemon; returns the process exit code."""
        self._stop_event = asyncio.Event()
        signals = SignalHandlers(lambda sig: self.request_stop(0), self._on_reload_signal)
        signals.install()
        hang = DebugHang(self.watchdog, self.name) if self.config.debug_hang else None
        if hang is not None:
            hang.install()
        try:
            if await self._start():
                self.state = "ready"
                self.notifier.ready(f"serving on {self.config.ipc.socket}")
                self._publish_state("ready")
                log.info("%s: ready (pid %d)", self.name, os.getpid())
                period = watchdog_period(self.env)
                if period is not None:
                    pinger = WatchdogPinger(self.watchdog, self.notifier)
                    self.spawn(pinger.run(period / 2), "watchdog")
                    log.info("%s: systemd watchdog %.3g s: pinging every %.3g s while workers progress",
                             self.name, period, period / 2)
                await self._stop_event.wait()
            await self._shutdown()
        finally:
            signals.remove()
            if hang is not None:
                hang.remove()
            self.notifier.close()
        log.info("%s: exiting with code %d", self.name, self.exit_code)
        return self.exit_code

    async def _start(self) -> bool:
        try:
            await self.start()
            self.server = self._make_server()
            await self.server.start()
        except OtaError as e:
            log.error("%s: cannot start: %s", self.name, e)
            self.notifier.status(f"failed to start: {e}")
            self.server = None
            self.exit_code = e.exit_code
            return False
        return True

    def _make_server(self) -> IpcServer:
        ipc = self.config.ipc
        default = AccessPolicy.default()
        policy = AccessPolicy(uids=ipc.allowed_uids if ipc.allowed_uids is not None else default.uids,
                              gids=ipc.allowed_gids)
        return IpcServer(ipc.socket, self.handlers(), self.protocol_served, name=self.name, mode=ipc.mode,
                         group=ipc.group, policy=policy, max_message_bytes=ipc.max_message_bytes,
                         status=self._status)

    async def _shutdown(self) -> None:
        self.state = "stopping"
        self.notifier.stopping("stopping")
        self._publish_state("stopping")
        if self.server is not None:
            await self.server.close(timeout=self.config.shutdown_timeout)
        try:
            await self.stop()
        except Exception:
            log.exception("%s: stop() failed", self.name)
            self.exit_code = self.exit_code or 1
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("%s: task %s crashed; stopping", self.name, task.get_name(), exc_info=exc)
            self.request_stop(1)

    def _publish_state(self, state: str, detail: str | None = None) -> None:
        params: dict[str, Any] = {"daemon": self.name, "state": state}
        if detail:
            params["detail"] = detail
        if self.server is not None and "daemon.state" in self.server.protocol.events:
            self.server.publish("daemon.state", params)

    def _status(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "workers": [dataclasses.asdict(w) for w in self.watchdog.snapshot()],
            "details": dict(self.status_details()),
        }

    # -- reload -------------------------------------------------------------------------------------
    def _on_reload_signal(self) -> None:
        if self.state != "ready":
            log.warning("%s: SIGHUP while %s; ignored", self.name, self.state)
            return
        self._reloading = self.spawn(self.reload(), "reload")

    async def reload(self) -> None:
        """Re-read the configuration file and apply it; a bad file keeps the running config."""
        self.state = "reloading"
        self.notifier.reloading()
        self._publish_state("reloading")
        detail = None
        try:
            new = load_config(type(self.config), self.name, self.config.source, self.env)
        except ConfigurationError as e:
            detail = f"reload failed, running configuration kept: {e}"
            log.error("%s: %s", self.name, detail)
        else:
            if (new.ipc, new.runtime_dir) != (self.config.ipc, self.config.runtime_dir):
                log.warning("%s: IPC settings changed; they take effect at the next restart", self.name)
            old, self.config = self.config, new
            set_level(new.log_level)
            try:
                await self.apply_config(old, new)
            except OtaError as e:
                detail = f"applying the reloaded configuration failed: {e}"
                log.error("%s: %s", self.name, detail)
            else:
                log.info("%s: configuration reloaded from %s", self.name, new.source or "defaults")
        finally:
            if self.state == "reloading":
                self.state = "ready"
                self.notifier.ready(detail or "configuration reloaded")
                self._publish_state("ready", detail)

    # -- entry point -----------------------------------------------------------------------------------
    @classmethod
    def main(cls, argv: list[str] | None = None) -> int:
        """Command-line entry point: ``ota-<name> [--config FILE] [--log-level LEVEL]``."""
        parser = argparse.ArgumentParser(prog=f"ota-{cls.name.replace('_', '-')}",
                                         description=(cls.__doc__ or "").strip().split("\n")[0] or None)
        parser.add_argument("--config", metavar="FILE", help="the stack's YAML configuration "
                            "(default: built-in defaults)")
        parser.add_argument("--log-level", choices=LOG_LEVELS, help="override the configured log level")
        args = parser.parse_args(argv)
        setup_logging(args.log_level or "info")
        try:
            config = load_config(cls.config_class, cls.name, args.config)
        except ConfigurationError as e:
            log.error("%s: configuration error: %s", cls.name, e)
            return e.exit_code
        setup_logging(args.log_level or config.log_level)
        return asyncio.run(cls(config).run())
