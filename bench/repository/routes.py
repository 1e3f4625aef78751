"""aiohttp routes of the Uptane-style repositories, for the bench backend (mutual TLS).

==============================================  ==============================================
``GET /image/metadata/{name}``                  Image repository metadata (``N.root.json``,
                                                ``N.targets.json``, ``N.snapshot.json``,
                                                ``timestamp.json``, re-signed when due)
``GET /image/targets/{path}``                   Image repository targets, hash-prefixed names,
                                                with Range / If-Range / ETag and the fault
                                                knobs of :mod:`bench.backend.files`
``GET /director/{vin}/{name}``                  that vehicle's Director metadata (the client
                                                certificate must be the vehicle's)
``POST /director/{vin}/manifest``               the vehicle version manifest
==============================================  ==============================================

:func:`add_routes` adds them to an application; the bench backend does it when its
config has a ``repositories`` section (:mod:`bench.repository.config`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from aiohttp import web

from agent.errors import OtaError
from bench.backend.faults import FaultBoard
from bench.backend.files import FileRoutes, StallGate, client_cn
from bench.repository.config import RepositoriesConfig
from bench.repository.director import Director, ManifestRejected
from bench.repository.image import ImageRepository
from bench.repository.tufrepo import Clock, utc_now
from dmclient.uptane.manifest import MAX_MANIFEST_BYTES

log = logging.getLogger(__name__)
_METADATA_NAME = re.compile(r"^(\d+\.)?(root|targets|snapshot|timestamp)\.json$")
IMAGE_TIMESTAMP_MARGIN = timedelta(hours=6)


@dataclass
class Repositories:
    image_dir: Path
    director: Director
    clock: Clock = utc_now

    @classmethod
    def open(cls, cfg: RepositoriesConfig, *, clock: Clock = utc_now) -> Repositories:
        ImageRepository(cfg.image, clock=clock)  # refuse a broken Image repository at start-up
        director = Director.open_or_create(cfg.director, image_dir=cfg.image, route_file=cfg.route,
                                           registry_file=cfg.vehicles, clock=clock)
        director.route.get()
        director.registry.get()
        return cls(cfg.image, director, clock)

    def image_timestamp_due(self) -> bool:
        try:
            doc = json.loads((self.image_dir / "metadata" / "timestamp.json").read_bytes())
            expires = datetime.strptime(doc["signed"]["expires"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        except (OSError, ValueError, KeyError, TypeError):
            return False
        return expires <= self.clock() + IMAGE_TIMESTAMP_MARGIN


def _metadata_file(directory: Path, name: str) -> Path:
    if not _METADATA_NAME.match(name):
        raise web.HTTPNotFound(text=f"no such metadata: {name}\n")
    path = directory / name
    if not path.is_file():
        raise web.HTTPNotFound(text=f"no such metadata: {name}\n")
    return path


def add_routes(app: web.Application, repos: Repositories, *, board: FaultBoard | None = None,
               gate: StallGate | None = None) -> None:
    """Serve ``repos`` from ``app``; targets go through the bench file server (faults on ``board``)."""
    files = FileRoutes(repos.image_dir / "targets", board or FaultBoard([]), gate or StallGate())
    lock = asyncio.Lock()

    async def image_metadata(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name == "timestamp.json" and repos.image_timestamp_due():
            async with lock:
                if repos.image_timestamp_due():
                    await asyncio.to_thread(
                        lambda: ImageRepository(repos.image_dir, clock=repos.clock).refresh_timestamp_if_due(
                            IMAGE_TIMESTAMP_MARGIN))
        path = _metadata_file(repos.image_dir / "metadata", name)
        return web.Response(body=path.read_bytes(), content_type="application/json")

    async def director_metadata(request: web.Request) -> web.StreamResponse:
        vin, name = request.match_info["vin"], request.match_info["name"]
        cn = client_cn(request)
        if cn is not None and cn != vin:
            raise web.HTTPForbidden(text=f"the client certificate is for {cn}, not for {vin}\n")
        if not _METADATA_NAME.match(name):
            raise web.HTTPNotFound(text=f"no such metadata: {name}\n")
        path = await asyncio.to_thread(repos.director.metadata_path, vin, name)
        if path is None:
            raise web.HTTPNotFound(text=f"no such metadata for {vin}: {name}\n")
        return web.Response(body=path.read_bytes(), content_type="application/json")

    async def manifest(request: web.Request) -> web.StreamResponse:
        vin = request.match_info["vin"]
        if request.content_length is not None and request.content_length > MAX_MANIFEST_BYTES:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_MANIFEST_BYTES, actual_size=request.content_length)
        body = await request.content.read(MAX_MANIFEST_BYTES + 1)
        try:
            summary = await asyncio.to_thread(repos.director.handle_manifest, vin, body, client_cn=client_cn(request))
        except ManifestRejected as e:
            log.warning("manifest from %s refused: %s", vin, e)
            return web.Response(status=e.status, text=f"{e}\n")
        except OtaError as e:
            log.error("manifest from %s: %s", vin, e)
            return web.Response(status=500, text=f"director error: {e}\n")
        return web.json_response(summary)

    app.router.add_get("/image/metadata/{name}", image_metadata)
    app.router.add_get("/image/targets/{path:.+}", files.handle)
    app.router.add_get("/director/{vin}/{name}", director_metadata)
    app.router.add_post("/director/{vin}/manifest", manifest)
