"""The ``dmclient.check`` IPC method, for the dmclient daemon to serve.

The daemon adds :meth:`CheckService.handlers` to its handler table. The check is
blocking (HTTPS, signatures, SQLite) and runs in a worker thread so the event loop
keeps answering; :class:`~dmclient.uptane.client.UptaneClient` serialises checks.
Errors are the project's (a verification failure is a
:class:`~agent.errors.VerificationError` naming the attack) and reach the caller as
the IPC error of that branch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from agent.ipc.server import Call
from dmclient.uptane.client import UptaneClient


class CheckService:
    def __init__(self, client: UptaneClient) -> None:
        self.client = client

    async def check(self, call: Call) -> dict[str, Any]:
        result = await asyncio.to_thread(self.client.check, call.params["vehicle_version"])
        return result.to_json()

    def handlers(self) -> dict[str, Callable[[Call], Awaitable[Any]]]:
        return {"dmclient.check": self.check}
