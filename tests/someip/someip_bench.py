"""The loopback SOME/IP bench of the tests: a provider process at 127.0.0.2, consumers at 127.0.0.3.

Each run picks its own SD port and multicast group, so parallel runs do not meet.
"""

from __future__ import annotations

import asyncio
import random
import socket
import sys
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from someip_demo import SERVICE

from agent.someip.consumer import ServiceConsumer
from agent.someip.discovery import SdConfig, ServiceDiscovery
from agent.someip.interface import ServiceInterface
from agent.someip.transport import Tap
from bench.readyproc import ReadyProcess

PROVIDER = Path(__file__).with_name("someip_provider.py")
PROVIDER_ADDRESS = "127.0.0.2"
CONSUMER_ADDRESS = "127.0.0.3"
CLIENT_ID = 0x0101
T = TypeVar("T")


@dataclass(frozen=True)
class Net:
    group: str
    port: int


def free_net() -> Net:
    """An SD port free on both node addresses, and a multicast group of our own."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((PROVIDER_ADDRESS, 0))
            port = probe.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
                    other.bind((CONSUMER_ADDRESS, port))
            except OSError:
                continue
        return Net(f"239.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(1, 254)}", port)


def start_provider(net: Net, log: Path) -> ReadyProcess:
    process = ReadyProcess("someip-provider", [sys.executable, str(PROVIDER), "--address", PROVIDER_ADDRESS,
                                               "--group", net.group, "--port", str(net.port)],
                           prefix="someip provider ready", log=log)
    process.start(timeout=30)
    return process


def run(coro: Awaitable[T], timeout: float = 30.0) -> T:
    """Run a scenario in a fresh event loop; a hung scenario fails after ``timeout``."""
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


@asynccontextmanager
async def consumer(net: Net, *, tap: Tap | None = None,
                   interface: ServiceInterface = SERVICE) -> AsyncIterator[ServiceConsumer]:
    """A consumer node (its own SD) that has found the provider."""
    sd = ServiceDiscovery(SdConfig(local_address=CONSUMER_ADDRESS, group=net.group, port=net.port), tap=tap)
    await sd.start()
    client = ServiceConsumer(interface, sd, address=CONSUMER_ADDRESS, client_id=CLIENT_ID, tap=tap)
    try:
        await client.start(timeout=10)
        yield client
    finally:
        await client.close()
        await sd.close()
