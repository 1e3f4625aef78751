"""What a check costs on the wire: one kept-alive mutual-TLS connection, no download twice.

A check makes about six requests (manifest POST, each repository's next-root probe answered
404, timestamps, the baseline). The connection must survive them all, error statuses
included, and the next check: the bench backend's TLS context counts the handshakes it
accepted (OpenSSL's ``accept_good``), so the tests count connections, not time. A server
that closed the kept-alive connection (restart, idle timeout) must cost nothing but a new
connection: a request the server dropped without an answer goes once more, and only once.
A pending assignment's baseline XML, verified into the package cache by an earlier check, is
hashed again from the cache instead of being downloaded again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from agent.errors import OtaTimeoutError, TransportError
from bench.backend.config import load_backend_config
from bench.backend.faults import FaultBoard
from bench.backend.files import StallGate
from bench.backend.server import build_app, server_tls_context
from dmclient.uptane.fetcher import once_more_if_dropped

from .world import V2, V3, Vehicle, director

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class CountingBackend:
    """The bench backend's app over mutual TLS on a thread; counts TLS handshakes, drops requests on demand."""

    def __init__(self, config: Path, *, port: int = 0) -> None:
        cfg = load_backend_config(config)
        self.cfg = dataclasses.replace(cfg, listen=dataclasses.replace(cfg.listen, port=port))
        self.tls = server_tls_context(self.cfg)
        self.board = FaultBoard([])  # the image targets' request log
        self.drops: dict[str, int] = {}  # path suffix -> requests still to drop without an answer
        self.dropped: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="counting-backend", daemon=True)
        self.thread.start()
        fut: Future[web.AppRunner] = asyncio.run_coroutine_threadsafe(self._start(), self.loop)
        self.runner = fut.result(timeout=30)
        port = next(iter(self.runner.addresses))[1]
        self.port: int = port
        self.url = f"https://{self.cfg.listen.host}:{port}"

    async def _start(self) -> web.AppRunner:
        app = build_app(self.cfg, self.board, StallGate())
        app.middlewares.append(self._drop)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self.cfg.listen.host, self.cfg.listen.port, ssl_context=self.tls).start()
        return runner

    @web.middleware
    async def _drop(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        for suffix, left in self.drops.items():
            if left and request.path.endswith(suffix):
                self.drops[suffix] = left - 1
                self.dropped.append(request.path)
                assert request.transport is not None
                request.transport.close()  # as a server that closed the kept-alive connection: no answer
                return web.Response(status=503)  # never reaches the client
        return await handler(request)

    @property
    def handshakes(self) -> int:
        return int(self.tls.session_stats()["accept_good"])

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()


@pytest.fixture
def backend(world: Path) -> Iterator[CountingBackend]:
    """Overrides the conftest's backend (the conftest's ``vehicle`` then talks to this one)."""
    be = CountingBackend(world / "backend.yaml")
    yield be
    be.stop()


def director_manifests(world: Path, vin: str) -> int:
    return int(director(world).vehicle_state(vin)["manifests"])


@pytest.mark.e2e
def test_checks_share_one_tls_connection_across_requests_and_checks(vehicle: Vehicle,
                                                                    backend: CountingBackend) -> None:
    first = vehicle.check()
    assert first.assignment is not None and first.assignment.target_vehicle_version == V2
    assert backend.handshakes == 1
    vehicle.install(first)
    again = vehicle.check()
    vehicle.check()
    assert again.assignment is not None and again.assignment.target_vehicle_version == V3
    assert backend.handshakes == 1, "a check (404 root probes, manifest, timestamps, baseline) opened a connection"


@pytest.mark.e2e
def test_a_backend_restart_between_checks_costs_one_new_connection(vehicle: Vehicle, world: Path,
                                                                    backend: CountingBackend) -> None:
    vehicle.install(vehicle.check())
    port = backend.port
    backend.stop()
    restarted = CountingBackend(world / "backend.yaml", port=port)
    try:
        assert vehicle.check().assignment is not None
        assert vehicle.check().assignment is not None
        assert restarted.handshakes == 1
    finally:
        restarted.stop()


@pytest.mark.e2e
def test_a_request_dropped_without_answer_goes_once_more_on_a_new_connection(vehicle: Vehicle, world: Path,
                                                                              backend: CountingBackend) -> None:
    vehicle.check()
    manifests = director_manifests(world, vehicle.vin)
    backend.drops = {"/timestamp.json": 1, "/manifest": 1}
    result = vehicle.check()
    assert result.assignment is not None and result.assignment.target_vehicle_version == V2
    assert sorted(p.rsplit("/", 1)[1] for p in backend.dropped) == ["manifest", "timestamp.json"]
    assert backend.handshakes == 3  # the first connection, then one new connection per dropped request
    assert director_manifests(world, vehicle.vin) == manifests + 1


@pytest.mark.e2e
def test_a_request_dropped_twice_fails_the_check_and_keeps_the_trusted_state(vehicle: Vehicle,
                                                                              backend: CountingBackend) -> None:
    vehicle.check()
    before = vehicle.trusted()
    backend.drops = {"/timestamp.json": 2}
    with pytest.raises(TransportError, match="without answering"):
        vehicle.check()
    assert len(backend.dropped) == 2
    assert vehicle.trusted() == before
    assert vehicle.check().assignment is not None  # and the next check works


def baseline_requests(backend: CountingBackend) -> int:
    return sum(1 for r in backend.board.stats()["requests"] if r["path"].endswith(".xml"))


@pytest.mark.e2e
def test_a_pending_assignment_s_baseline_is_downloaded_once_and_rehashed_from_the_cache(
        vehicle: Vehicle, backend: CountingBackend) -> None:
    first = vehicle.check()
    assert first.assignment is not None and baseline_requests(backend) == 1
    again = vehicle.check()
    assert again.assignment is not None and again.assignment.baseline == first.assignment.baseline
    assert baseline_requests(backend) == 1
    cached = first.assignment.baseline.path
    good = cached.read_bytes()
    cached.chmod(0o644)
    cached.write_bytes(good.replace(b"<", b" <", 1))  # the cached copy changed at rest
    third = vehicle.check()
    assert third.assignment is not None and baseline_requests(backend) == 2
    assert third.assignment.baseline.path.read_bytes() == good


# -- the retry policy alone ----------------------------------------------------------------------
def dropped_error() -> TransportError:
    try:
        raise http.client.RemoteDisconnected("Remote end closed connection without response")
    except http.client.RemoteDisconnected as e:
        err = TransportError("https://backend/x: server closed the connection without answering")
        err.__cause__ = e
        return err


def calls(*outcomes: Any) -> tuple[Callable[[], str], list[int]]:
    seen: list[int] = []

    def request() -> str:
        seen.append(1)
        outcome = outcomes[len(seen) - 1]
        if isinstance(outcome, BaseException):
            raise outcome
        return str(outcome)
    return request, seen


def test_only_a_request_the_server_dropped_unanswered_is_sent_again_and_only_once() -> None:
    request, seen = calls(dropped_error(), "ok")
    assert once_more_if_dropped(request) == "ok" and len(seen) == 2
    request, seen = calls(dropped_error(), dropped_error(), "never")
    with pytest.raises(TransportError):
        once_more_if_dropped(request)
    assert len(seen) == 2
    request, seen = calls(OtaTimeoutError("https://backend/x: timed out"), "never")
    with pytest.raises(OtaTimeoutError):
        once_more_if_dropped(request)
    assert len(seen) == 1
    request, seen = calls(TransportError("https://backend/x: connection refused"), "never")
    with pytest.raises(TransportError):
        once_more_if_dropped(request)
    assert len(seen) == 1
