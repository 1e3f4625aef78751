"""A reliable field's initial value reaches a subscriber whose TCP connection the provider registers
only after it handled the SD subscription (the kernel accepted the connection, asyncio had not run
the accept callback yet): it is kept and sent once the connection is registered, not dropped."""

from __future__ import annotations

import asyncio
import socket

from someip_bench import CONSUMER_ADDRESS, PROVIDER_ADDRESS, free_net

from agent.someip.discovery import SdConfig, ServiceDiscovery
from agent.someip.interface import FieldSpec, ServiceInterface
from agent.someip.provider import ServiceProvider
from agent.someip.sd_registry import Subscriber
from agent.someip.serialization import String
from agent.someip.transport import read_message

GROUP = 0x0001
NOTIFIER = 0x8001
STATUS = ServiceInterface(name="status", service_id=0x4F55, instance_id=1, major_version=1, minor_version=0,
                          fields={"status": FieldSpec(String(), getter=0x0010, notifier=NOTIFIER,
                                                      eventgroups=(GROUP,), reliable=True)})


async def _scenario() -> str:
    net = free_net()
    sd = ServiceDiscovery(SdConfig(local_address=PROVIDER_ADDRESS, group=net.group, port=net.port))
    await sd.start()
    provider = ServiceProvider(STATUS, sd, address=PROVIDER_ADDRESS)
    await provider.start()
    try:
        provider.set_field("status", "ready")
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        client.bind((CONSUMER_ADDRESS, 0))
        tcp = client.getsockname()[:2]
        # the SD subscription is handled first: no TCP connection from this subscriber yet
        provider._subscribed(Subscriber(GROUP, (CONSUMER_ADDRESS, net.port), None, tcp, float("inf")))
        assert provider._server is not None
        port = provider._server.sockets[0].getsockname()[1]
        client.setblocking(False)
        await asyncio.get_running_loop().sock_connect(client, (PROVIDER_ADDRESS, port))
        reader, writer = await asyncio.open_connection(sock=client)
        got = await asyncio.wait_for(read_message(reader, 1 << 16), 10)
        writer.close()
        assert got is not None, "the connection closed without the initial value"
        message, _raw = got
        assert message.method_id == NOTIFIER
        return str(String().decode(message.payload))
    finally:
        await provider.stop()
        await sd.close()


def test_initial_value_waits_for_the_subscribers_tcp_connection() -> None:
    assert asyncio.run(_scenario()) == "ready"
