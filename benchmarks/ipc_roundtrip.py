"""IPC figures: JSON-RPC round trips and events between two processes over a Unix socket.

Runs a small daemon on :class:`agent.runtime.Daemon` as a child process and
measures, from this process with :class:`agent.ipc.IpcClient`: sequential
calls (latency), concurrent calls on one connection (throughput), and events
published by the daemon and received by a subscriber. Params, results and
events are validated on both ends, as in production. Prints figures, exits 0.

    python benchmarks/ipc_roundtrip.py [--calls 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from agent.ipc import Call, Event, Group, IpcClient, Method
from agent.ipc.protocol import PROTOCOL as STACK
from agent.ipc.schema import Int, Record, Str
from agent.runtime import Daemon

BENCH = Group(
    "bench",
    Method("bench.echo", params=Record(text=Str()), result=Record(text=Str())),
    Method("bench.burst", params=Record(count=Int(minimum=1)), result=Record(sent=Int(minimum=0))),
    Event("bench.tick", params=Record(n=Int(minimum=0), target=Str())),
)
PROTOCOL = STACK.with_groups(BENCH).for_daemon("bench")


class BenchDaemon(Daemon):
    name = "bench"
    protocol = PROTOCOL

    def handlers(self) -> dict[str, Any]:
        return {"bench.echo": self.echo, "bench.burst": self.burst}

    async def echo(self, call: Call) -> dict[str, Any]:
        return {"text": call.params["text"]}

    async def burst(self, call: Call) -> dict[str, Any]:
        sent = 0
        for n in range(call.params["count"]):
            sent += self.publish("bench.tick", {"n": n, "target": "engine.bin"})
            if n % 100 == 99:
                await asyncio.sleep(0)  # let the socket drain, as a real daemon between chunks
        return {"sent": sent}


async def measure(path: Path, calls: int) -> None:
    async with IpcClient(path, PROTOCOL, call_timeout=60) as client:
        for _ in range(200):  # warm up
            await client.call("bench.echo", {"text": "x"})
        t0 = time.perf_counter()
        for _ in range(calls):
            await client.call("bench.echo", {"text": "x"})
        seq = time.perf_counter() - t0
        print(f"sequential calls: {calls / seq:8.0f} /s  ({seq / calls * 1e6:.0f} us per round trip)")

        t0 = time.perf_counter()
        await asyncio.gather(*(client.call("bench.echo", {"text": "x"}) for _ in range(calls)))
        conc = time.perf_counter() - t0
        print(f"concurrent calls: {calls / conc:8.0f} /s  (one connection, {calls} in flight)")

        sub = await client.subscribe("bench.tick", queue_size=calls + 1)
        t0 = time.perf_counter()
        result = await client.call("bench.burst", {"count": calls})
        for _ in range(calls):
            await sub.get(60)
        events = time.perf_counter() - t0
        print(f"events delivered: {calls / events:8.0f} /s  ({result['sent']} sent, {sub.dropped} dropped)")
        print(f"ipc_call_us={seq / calls * 1e6:.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return BenchDaemon.main(["--log-level", "warning"])
    rundir = Path(tempfile.mkdtemp(prefix="ipcb-", dir="/tmp"))
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(rundir / "notify.sock"))
    notify.settimeout(30)
    env = {**os.environ, "OTA_RUNTIME_DIR": str(rundir), "NOTIFY_SOCKET": str(rundir / "notify.sock")}
    daemon = subprocess.Popen([sys.executable, __file__, "--serve"], env=env)
    try:
        while b"READY=1" not in notify.recv(4096):
            pass
        asyncio.run(measure(rundir / "bench.sock", args.calls))
    finally:
        daemon.terminate()
        daemon.wait(30)
        notify.close()
        shutil.rmtree(rundir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
