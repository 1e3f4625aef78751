"""``ota-dmclient``: the download manager daemon on the shared runtime and IPC.

Wiring only: the config (:mod:`dmclient.config`) gives the TLS session, the state
database, the package cache and the :class:`~dmclient.manager.DownloadManager`; the
IPC methods and events declared in :mod:`agent.ipc.declarations.dmclient` map onto the
manager (run in a thread: they touch SQLite and files), worker threads report to the
runtime's watchdog, and a task publishes ``dmclient.download.progress`` every
``progress_interval``. ``ota-dmclient --config FILE`` (console script) runs it.

A malformed order (semantics beyond the schema: a relative URL with no backend
configured, a base64 field of the wrong size...) is answered ``-32602`` invalid params
naming the field; download failures are not call errors, they are a target's state
(``failed`` with the error) and a ``dmclient.download.state`` event.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, TypeVar

from agent.errors import ConfigurationError
from agent.ipc.error_codes import SchemaError
from agent.ipc.server import Call, Handler
from agent.runtime.daemon import Daemon
from dmclient.cache import PackageCache
from dmclient.config import DmclientConfig
from dmclient.encryption import VehicleKeyFile
from dmclient.fetcher import RequestsFetcher
from dmclient.job import JobSettings
from dmclient.keyfile import EC_P256, ED25519, check_private_key_file
from dmclient.manager import RUNNING, DownloadManager
from dmclient.order import InvalidOrderError
from dmclient.state import StateDb
from dmclient.tls import build_session

log = logging.getLogger(__name__)
T = TypeVar("T")


class DmclientDaemon(Daemon):
    """ota-dmclient: resumable, verified downloads over mutual TLS into the package cache."""

    name = "dmclient"
    config_class = DmclientConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.db: StateDb | None = None
        self.manager: DownloadManager | None = None
        self._check_handlers: dict[str, Handler] = {}
        self._uptane: Any = None  # dmclient.uptane.client.UptaneClient, built on first use when configured
        self._uptane_lock = threading.Lock()
        self._fetcher: RequestsFetcher | None = None
        self._cache: PackageCache | None = None

    @property
    def cfg(self) -> DmclientConfig:
        assert isinstance(self.config, DmclientConfig)
        return self.config

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        cfg = self.cfg
        cfg.tls.check(cfg.source)
        # the key files are checked now; requests, cryptography and python-tuf load on first use
        # (the first download, encrypted target or check): an idle dmclient stays small
        vehicle_key = VehicleKeyFile(cfg.encryption_key, source=cfg.source) if cfg.encryption_key else None
        if cfg.uptane is not None:
            check_private_key_file(cfg.uptane.signing_key, (ED25519, EC_P256), what="signing key",
                                   source=cfg.uptane.source, key="dmclient.uptane.signing_key")
        self.db = StateDb(cfg.state_db)
        cache = self._cache = PackageCache(cfg.cache_dir, self.db, budget=cfg.cache_budget)
        fetcher = self._fetcher = RequestsFetcher(partial(build_session, cfg.tls, pool_size=cfg.concurrency),
                                                  connect_timeout=cfg.connect_timeout, read_timeout=cfg.read_timeout,
                                                  chunk_size=cfg.chunk_bytes)
        settings = JobSettings(cfg.retry, cfg.checkpoint_bytes, cfg.delta_max_bytes, cfg.min_free_bytes,
                               vehicle_key)
        # a worker is stalled only past the longest legitimate silence: a Retry-After wait
        # plus a connect and a read timeout
        deadline = max(cfg.worker_deadline,
                       cfg.retry.max_retry_after + cfg.retry.max_delay + cfg.connect_timeout + cfg.read_timeout + 5)
        beats = [self.worker(f"download-{i}", deadline) for i in range(cfg.concurrency)]
        loop = asyncio.get_running_loop()

        def on_event(name: str, payload: dict[str, Any]) -> None:  # from worker threads
            loop.call_soon_threadsafe(self._on_event, name, payload)

        self.manager = DownloadManager(
            db=self.db, cache=cache, fetcher=fetcher, settings=settings, concurrency=cfg.concurrency,
            base_url=cfg.backend_url, heartbeats=list(beats),
            on_event=on_event)
        await asyncio.to_thread(self.manager.start)
        self.spawn(self._progress_loop(), "progress")

    async def stop(self) -> None:
        if self.manager is not None:
            await asyncio.to_thread(self.manager.stop)
        if self.db is not None:
            self.db.close()

    def status_details(self) -> Mapping[str, Any]:
        if self.manager is None:
            return {}
        states: dict[str, int] = {}
        for t in self.manager.status():
            states[t["state"]] = states.get(t["state"], 0) + 1
        return {"targets": states, "running": sum(states.get(s, 0) for s in RUNNING),
                "cache_dir": str(self.cfg.cache_dir)}

    # -- events -------------------------------------------------------------------------------
    def _on_event(self, name: str, payload: dict[str, Any]) -> None:
        if name == "state":
            self.publish("dmclient.download.state", {"target": payload})

    async def _progress_loop(self) -> None:
        assert self.manager is not None
        while True:
            await asyncio.sleep(self.cfg.progress_interval)
            moved = self.manager.progress()
            if moved:
                self.publish("dmclient.download.progress", {"targets": moved})

    # -- methods ------------------------------------------------------------------------------
    def handlers(self) -> dict[str, Handler]:
        def run(fn: Callable[..., T], method: str) -> Handler:
            async def handler(call: Call) -> Any:
                try:
                    return await asyncio.to_thread(fn, call.params)
                except InvalidOrderError as e:
                    raise SchemaError(f"{method}: params.{e}") from e
            return handler

        m = self._manager

        def installed_record(p: dict[str, Any]) -> None:
            from dmclient.digests import Hashes
            from dmclient.uptane.manifest import InstalledImage

            client = self._uptane_client("dmclient.installed.record")
            if p["ecu"] not in client.cfg.ecus:
                raise InvalidOrderError(f"ecu: {p['ecu']!r} is not an ECU of the uptane configuration "
                                        f"(known: {', '.join(sorted(client.cfg.ecus))})")
            image = p["image"]
            try:
                hashes = Hashes.parse(image["hashes"], "image.hashes")
            except ValueError as e:
                raise InvalidOrderError(str(e)) from e
            client.state.record_installed(p["ecu"], InstalledImage(image["name"], image["length"], hashes),
                                          image["release_counter"])

        def configuration_record(p: dict[str, Any]) -> None:
            client = self._uptane_client("dmclient.configuration.record")
            client.state.record_configuration({str(k): str(v) for k, v in p["values"].items()})

        def installed_list(_p: dict[str, Any]) -> dict[str, Any]:
            client = self._uptane_client("dmclient.installed.list")
            ecus: dict[str, Any] = {}
            for ecu in sorted(client.cfg.ecus):
                rec = client.state.installed(ecu)
                if rec is not None:
                    ecus[ecu] = {**rec.image.to_dict(), "release_counter": rec.release_counter}
            return {"ecus": ecus}

        own: dict[str, Handler] = {
            "dmclient.installed.record": run(installed_record, "dmclient.installed.record"),
            "dmclient.installed.list": run(installed_list, "dmclient.installed.list"),
            "dmclient.configuration.record": run(configuration_record, "dmclient.configuration.record"),
            "dmclient.download.start": run(lambda p: m().submit(p), "dmclient.download.start"),
            "dmclient.download.status": run(lambda p: {"targets": m().status(p.get("ids"))},
                                            "dmclient.download.status"),
            "dmclient.download.pause": run(lambda p: {"targets": m().pause(p["ids"])}, "dmclient.download.pause"),
            "dmclient.download.resume": run(lambda p: {"targets": m().resume(p["ids"])},
                                            "dmclient.download.resume"),
            "dmclient.download.cancel": run(lambda p: {"targets": m().cancel(p["ids"])},
                                            "dmclient.download.cancel"),
            "dmclient.cache.list": run(lambda p: m().cache_list(), "dmclient.cache.list"),
            "dmclient.cache.pin": run(lambda p: m().pin(p["sha256"], p["owner"]), "dmclient.cache.pin"),
            "dmclient.cache.unpin": run(lambda p: {"removed": m().unpin(p.get("sha256"), p["owner"])},
                                        "dmclient.cache.unpin"),
        }
        # the other dmclient methods (dmclient.check, dmclient.installed.*) belong to the Uptane
        # service, served when the config has an 'uptane' section
        for name in self.protocol_served.methods:
            if name.startswith("dmclient.") and name not in own:
                own[name] = self._uptane_method(name)
        return own

    def _uptane_client(self, method: str) -> Any:
        """The Uptane client, built on the first call that needs it (python-tuf, securesystemslib and
        cryptography are ~20 MiB resident: an idle dmclient has not loaded them). Blocking: call it
        from a worker thread."""
        cfg = self.cfg.uptane
        if cfg is None:
            raise ConfigurationError(f"{method} needs the 'uptane' section in dmclient's configuration",
                                     source=self.config.source, key="dmclient.uptane")
        with self._uptane_lock:
            if self._uptane is None:
                from dmclient.uptane.client import ManifestUploader, UptaneClient
                from dmclient.uptane.service import CheckService

                assert self._fetcher is not None and self._cache is not None, "handlers run only after start()"
                uploader = ManifestUploader(self._fetcher.session, timeout=self._fetcher.timeout)
                client = UptaneClient(cfg, fetcher=self._fetcher, uploader=uploader, cache=self._cache)
                self._check_handlers = CheckService(client).handlers()
                self._uptane = client
        return self._uptane

    def _uptane_method(self, name: str) -> Handler:
        async def handler(call: Call) -> Any:
            await asyncio.to_thread(self._uptane_client, name)
            served = self._check_handlers.get(name)
            if served is None:
                raise ConfigurationError(f"{name} needs the 'uptane' section in dmclient's configuration",
                                         source=self.config.source, key="dmclient.uptane")
            return await served(call)
        return handler

    def _manager(self) -> DownloadManager:
        assert self.manager is not None, "handlers run only after start()"
        return self.manager


def main(argv: list[str] | None = None) -> int:
    return DmclientDaemon.main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
