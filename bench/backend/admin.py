"""Admin routes of the bench backend: set fault knobs and read request accounting.

Plain HTTP on a loopback port of its own (never on the mutual-TLS port, so tests can
steer the backend without a client certificate, and the vehicle-facing port stays
exactly what a vehicle sees). JSON in and out:

===================  ==============================================================
``GET /faults``      the faults in force
``PUT /faults``      replace them (body: a list of faults, see bench.backend.faults)
``POST /faults``     add to them
``DELETE /faults``   remove them all
``GET /stats``       every request served (``?path=`` to filter) and bytes sent
``DELETE /stats``    forget the request log
``POST /release``    end every stall now
``POST /reset``      faults, stats and stalls all cleared
===================  ==============================================================
"""

from __future__ import annotations

import json

from aiohttp import web

from agent.errors import ConfigurationError
from bench.backend.faults import FaultBoard, parse_faults
from bench.backend.files import StallGate


def build_admin_app(board: FaultBoard, gate: StallGate) -> web.Application:
    async def read_faults(request: web.Request) -> list:  # type: ignore[type-arg]
        try:
            data = await request.json()
        except json.JSONDecodeError as e:
            raise web.HTTPBadRequest(text=f"body is not JSON: {e}\n") from e
        try:
            return parse_faults(data, "admin request")
        except ConfigurationError as e:
            raise web.HTTPBadRequest(text=f"{e}\n") from e

    async def get_faults(_request: web.Request) -> web.Response:
        return web.json_response([f.to_json() for f in board.faults])

    async def put_faults(request: web.Request) -> web.Response:
        board.set(await read_faults(request))
        return await get_faults(request)

    async def post_faults(request: web.Request) -> web.Response:
        board.add(await read_faults(request))
        return await get_faults(request)

    async def delete_faults(request: web.Request) -> web.Response:
        board.set([])
        return await get_faults(request)

    async def get_stats(request: web.Request) -> web.Response:
        return web.json_response(board.stats(request.query.get("path")))

    async def delete_stats(_request: web.Request) -> web.Response:
        board.clear_stats()
        return web.json_response({"requests": [], "bytes_sent": 0})

    async def release(_request: web.Request) -> web.Response:
        gate.release()
        return web.json_response({"released": True})

    async def reset(_request: web.Request) -> web.Response:
        board.set([])
        board.clear_stats()
        gate.release()
        return web.json_response({"reset": True})

    app = web.Application()
    app.router.add_get("/faults", get_faults)
    app.router.add_put("/faults", put_faults)
    app.router.add_post("/faults", post_faults)
    app.router.add_delete("/faults", delete_faults)
    app.router.add_get("/stats", get_stats)
    app.router.add_delete("/stats", delete_stats)
    app.router.add_post("/release", release)
    app.router.add_post("/reset", reset)
    return app
