"""The bench backend: an aiohttp HTTPS server requiring client certificates.

Routes are modular: each route module adds its routes to the one application in
:func:`build_app`: :class:`bench.backend.files.FileRoutes` (``/files/...``) always, and
the Uptane-style repositories (:func:`bench.repository.routes.add_routes`: ``/image/...``,
``/director/...``) when the config has a ``repositories`` section. They share the fault
board and the stall gate, so the admin app (faults, stats; a separate plain-HTTP loopback
port) steers every route.

TLS: ``ssl.Purpose.CLIENT_AUTH`` context, TLS 1.2 minimum, ``verify_mode = CERT_REQUIRED``
with the OEM CA as the only trust anchor for client certificates; the backend's own
certificate and key from the bench PKI.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from bench.backend.admin import build_admin_app
from bench.backend.config import BackendConfig
from bench.backend.faults import FaultBoard
from bench.backend.files import FileRoutes, StallGate

log = logging.getLogger(__name__)


def server_tls_context(cfg: BackendConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cfg.cert_file), str(cfg.key_file))
    ctx.load_verify_locations(cafile=str(cfg.client_ca_file))
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def build_app(cfg: BackendConfig, board: FaultBoard, gate: StallGate) -> web.Application:
    app = web.Application()
    FileRoutes(cfg.files, board, gate).setup(app)
    if cfg.repositories is not None:
        from bench.repository.routes import Repositories, add_routes

        add_routes(app, Repositories.open(cfg.repositories), board=board, gate=gate)
    return app


@dataclass
class RunningBackend:
    url: str
    admin_url: str | None
    board: FaultBoard
    gate: StallGate
    runners: list[web.AppRunner]

    async def close(self) -> None:
        self.gate.release()
        for runner in self.runners:
            await runner.cleanup()


def _bound_port(runner: web.AppRunner) -> int:
    for addr in runner.addresses:
        return int(addr[1])
    raise RuntimeError("server did not bind")


async def start_backend(cfg: BackendConfig) -> RunningBackend:
    board, gate = FaultBoard(list(cfg.faults)), StallGate()
    runner = web.AppRunner(build_app(cfg, board, gate), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, cfg.listen.host, cfg.listen.port, ssl_context=server_tls_context(cfg)).start()
    host = f"[{cfg.listen.host}]" if ":" in cfg.listen.host else cfg.listen.host
    running = RunningBackend(f"https://{host}:{_bound_port(runner)}", None, board, gate, [runner])
    if cfg.admin is not None:
        admin = web.AppRunner(build_admin_app(board, gate), access_log=None)
        await admin.setup()
        await web.TCPSite(admin, cfg.admin.host, cfg.admin.port).start()
        running.runners.append(admin)
        running.admin_url = f"http://{cfg.admin.host}:{_bound_port(admin)}"
    return running


async def serve(cfg: BackendConfig, *, announce: Callable[[str], None] = print) -> None:
    """Run until cancelled (SIGINT / SIGTERM end it cleanly)."""
    import signal

    running = await start_backend(cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if running.admin_url:
        announce(f"bench backend admin: {running.admin_url}")
    announce(f"bench backend ready: {running.url}")
    try:
        await stop.wait()
    finally:
        await running.close()
