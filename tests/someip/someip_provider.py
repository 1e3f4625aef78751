"""The demo provider as its own process: ``python tests/someip/someip_provider.py --address ...``.

Prints ``someip provider ready`` once offering; serves until SIGTERM. "emit n" sends n progress
events, one TCP chunk event, and sets the status field; "poke n" (fire-and-forget) sets the field.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import signal

from someip_demo import REFUSED, SERVICE, pattern

from agent.errors import SomeIpError
from agent.someip.discovery import SdConfig, ServiceDiscovery
from agent.someip.provider import ServiceProvider
from agent.someip.sd_timing import SdTiming


async def serve(args: argparse.Namespace) -> None:
    sd = ServiceDiscovery(SdConfig(local_address=args.address, group=args.group, port=args.port,
                                   timing=SdTiming(cyclic_offer_delay=args.cyclic, ttl=args.ttl)))
    await sd.start()
    provider = ServiceProvider(SERVICE, sd, address=args.address)

    def refuse(_value: int) -> None:
        raise SomeIpError("refused on purpose", return_code=REFUSED)

    async def emit(count: int) -> None:
        for done in range(1, count + 1):
            provider.notify("progress", {"done": done, "total": count})
        provider.notify("chunk", pattern(4096))
        provider.set_field("status", f"emitted {count}")
        await provider.drain()

    provider.method("echo", lambda value: value)
    provider.method("refuse", refuse)
    provider.method("bulk", pattern)
    provider.method("upload", lambda data: {"length": len(data), "sha256": hashlib.sha256(data).digest()})
    provider.method("emit", emit)
    provider.method("poke", lambda n: provider.set_field("status", f"poked {n}"))
    provider.on_set("status", lambda text: text.upper())
    provider.set_field("status", "idle")
    await provider.start()
    print("someip provider ready", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await provider.stop()
    await sd.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cyclic", type=float, default=1.0)
    parser.add_argument("--ttl", type=int, default=3)
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
