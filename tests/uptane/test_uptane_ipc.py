"""``dmclient.check`` over the real IPC (JSON-RPC on a Unix socket), validated by the protocol module."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.errors import VerificationError
from agent.ipc.client import IpcClient
from agent.ipc.declarations import common, dmclient_check
from agent.ipc.protocol import PROTOCOL
from agent.ipc.registry import Protocol
from agent.ipc.server import IpcServer
from dmclient.uptane.service import CheckService

from .tamper import custom_of, director_publishes
from .world import V1, V2, V3, Vehicle


def test_check_is_declared_for_the_dmclient_daemon() -> None:
    assert "dmclient.check" in PROTOCOL.for_daemon("dmclient").methods
    PROTOCOL.check_params("dmclient.check", {"vehicle_version": V1})


def test_check_over_ipc_returns_the_assignment_then_a_clear_refusal(vehicle: Vehicle, world: Path,
                                                                   tmp_path: Path) -> None:
    protocol = Protocol(common.GROUP, dmclient_check.GROUP, daemon="dmclient")
    sock = tmp_path / "dm.sock"

    async def scenario() -> None:
        server = IpcServer(sock, CheckService(vehicle.client).handlers(), protocol)
        await server.start()
        try:
            async with IpcClient(sock, protocol, call_timeout=60) as client:
                nothing = await client.call("dmclient.check", {"vehicle_version": V3})
                assert nothing["status"] == "nothing" and nothing["assignment"] is None
                result = await client.call("dmclient.check", {"vehicle_version": V1})
                assert result["status"] == "update"
                assignment = result["assignment"]
                assert assignment["target_vehicle_version"] == V2
                (engine,) = assignment["ecus"]
                assert engine["ecu"] == "engine" and engine["release_counter"] == 2
                installed = vehicle.state.installed("engine")
                assert installed is not None and engine["delta"]["base"]["sha256"] == installed.image.hashes.sha256
                assert Path(assignment["baseline"]["path"]).is_file()
                director_publishes(world, lambda t: custom_of(t, "engine/engine-1.1.0.hex").update(ecu="gearbox"))
                with pytest.raises(VerificationError, match=r"this vehicle has no ECU 'gearbox'"):
                    await client.call("dmclient.check", {"vehicle_version": V1})
        finally:
            await server.close()

    asyncio.run(scenario())


def test_results_validate_against_the_declared_schema(vehicle: Vehicle) -> None:
    for version in (V1, V3):
        PROTOCOL.check_result("dmclient.check", vehicle.check(version).to_json())
