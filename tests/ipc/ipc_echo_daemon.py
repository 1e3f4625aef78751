"""A tiny daemon on :class:`agent.runtime.Daemon`, run as a real process by the IPC tests.

Its protocol group ``echo`` exercises what the tests need: a plain method,
methods raising each error branch, an event emitter, a request held until
another releases it (concurrency on one connection), a watchdog worker the
test drives (busy / stall / idle) and its configuration read back (reload).
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from typing import Any

from agent.config.node import Node
from agent.errors import (
    ConfigurationError,
    NegativeResponseError,
    OtaTimeoutError,
    TransportError,
    VehicleStateError,
    VerificationError,
)
from agent.ipc import Call, Event, Group, Method, SchemaError
from agent.ipc.protocol import PROTOCOL as STACK_PROTOCOL
from agent.ipc.schema import Bool, Enum, Int, Num, Opt, Record, Str
from agent.runtime import Daemon, DaemonConfig

ECHO = Group(
    "echo",
    Method("echo.say", params=Record(text=Str(max_len=10_000), times=Opt(Int(minimum=1, maximum=10))),
           result=Record(text=Str())),
    Method("echo.fail", params=Record(kind=Enum("verification", "transport", "timeout", "configuration",
                                                "nrc", "vehicle", "crash", "schema", "bad_result"))),
    Method("echo.emit", params=Record(event=Enum("echo.tick", "echo.other"), n=Int(minimum=0),
                                      note=Opt(Str())),
           result=Record(delivered=Int(minimum=0))),
    Method("echo.hold", params=Record(key=Str()), result=Record(key=Str())),
    Method("echo.release", params=Record(key=Str()), result=Record(released=Bool())),
    Method("echo.worker", params=Record(action=Enum("busy", "stall", "idle"))),
    Method("echo.config", result=Record(greeting=Str(), log_level=Str(), heartbeat_s=Num())),
    Event("echo.tick", params=Record(n=Int(minimum=0), note=Opt(Str()))),
    Event("echo.other", params=Record(n=Int(minimum=0), note=Opt(Str()))),
    doc="Test daemon.",
)
PROTOCOL = STACK_PROTOCOL.with_groups(ECHO).for_daemon("echo")


@dataclass(frozen=True, kw_only=True)
class EchoConfig(DaemonConfig):
    greeting: str = "hello"
    heartbeat_s: float = 0.02

    @classmethod
    def own_fields(cls, node: Node) -> dict[str, Any]:
        return {"greeting": node.get("greeting", str, "hello"),
                "heartbeat_s": node.number("heartbeat_s", 0.02, minimum=0.001)}


class EchoDaemon(Daemon):
    """Echo test daemon."""

    name = "echo"
    config_class = EchoConfig
    protocol = PROTOCOL

    async def start(self) -> None:
        self.held: dict[str, asyncio.Event] = {}
        self.mode = "idle"
        self.pump = self.worker("pump")
        self.spawn(self._pump(), "pump")

    async def _pump(self) -> None:
        while True:
            if self.mode == "busy":
                self.pump.heartbeat()
            assert isinstance(self.config, EchoConfig)
            await asyncio.sleep(self.config.heartbeat_s)

    def handlers(self) -> dict[str, Any]:
        return {"echo.say": self.say, "echo.fail": self.fail, "echo.emit": self.emit,
                "echo.hold": self.hold, "echo.release": self.release, "echo.worker": self.set_worker,
                "echo.config": self.show_config}

    async def say(self, call: Call) -> dict[str, Any]:
        return {"text": call.params["text"] * call.params.get("times", 1)}

    async def fail(self, call: Call) -> Any:
        kind = call.params["kind"]
        if kind == "verification":
            raise VerificationError("target engine.bin: sha256 mismatch")
        if kind == "transport":
            raise TransportError("backend unreachable")
        if kind == "timeout":
            raise OtaTimeoutError("backend did not answer within 30 s")
        if kind == "configuration":
            raise ConfigurationError("must be > 0", source="/etc/ota-agent/agent.yaml", key="dmclient.limit")
        if kind == "nrc":
            raise NegativeResponseError("requestOutOfRange", service=0x34, nrc=0x31)
        if kind == "vehicle":
            raise VehicleStateError("ignition is off")
        if kind == "schema":
            raise SchemaError("targets[1].url duplicates targets[0].url")
        if kind == "bad_result":
            return {"not": "null"}
        raise KeyError("boom")

    async def emit(self, call: Call) -> dict[str, Any]:
        params = {k: v for k, v in call.params.items() if k != "event"}
        return {"delivered": self.publish(call.params["event"], params)}

    async def hold(self, call: Call) -> dict[str, Any]:
        key = call.params["key"]
        await self.held.setdefault(key, asyncio.Event()).wait()
        return {"key": key}

    async def release(self, call: Call) -> dict[str, Any]:
        event = self.held.setdefault(call.params["key"], asyncio.Event())
        event.set()
        return {"released": True}

    async def set_worker(self, call: Call) -> None:
        self.mode = call.params["action"]
        if self.mode == "busy":
            self.pump.busy()
        elif self.mode == "idle":
            self.pump.idle()

    async def show_config(self, call: Call) -> dict[str, Any]:
        assert isinstance(self.config, EchoConfig)
        return {"greeting": self.config.greeting, "log_level": self.config.log_level,
                "heartbeat_s": self.config.heartbeat_s}


if __name__ == "__main__":
    sys.exit(EchoDaemon.main())
