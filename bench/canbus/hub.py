"""The bench hub: relays CAN frame records between processes, one channel per socket.

Every record a node sends reaches every other node on the channel, whole and
in one order, like arbitration on a real bus. Nothing is dropped for a node
that reads: when a receiver falls behind (its socket buffer passes the
high-water mark) the hub stops reading from every sender on that channel
until it has drained, so a burst slows down instead of losing frames.

With a ``bitrate`` the hub also emulates the wire: each frame occupies the
bus for its exact bit time (:mod:`bench.canbus.bittime`), a frame is
delivered when its last bit has been sent, and when several nodes have frames
waiting the lowest identifier wins arbitration. A sender whose transmit queue
is full is paused, as a controller with no free mailbox. Timing runs on the
event loop's clock with batch release, so the long-run rate is exact and a
single frame may arrive up to a timer tick (about 1 ms) late.

A node that stops reading altogether (a send-only load generator, a hung
process) must not stall the bus for everyone. After ``stall_limit`` seconds
of congestion it is marked *overrun*, as a CAN controller whose receive FIFO
overflows: frames for it are dropped and counted, with a warning, until it
drains again; the other nodes carry on.

A node may set acceptance filters (:mod:`bench.canbus.wire` filter records, what
``can.Bus(..., can_filters=[...])`` or ``bus.set_filters()`` send on a ``benchhub`` bus): the
hub then writes it only the frames that match, as a CAN controller's hardware filters keep
the others from its host, and a listener interested in a few identifiers is not woken by
the rest of the traffic.

Each channel can inject faults (:mod:`bench.canbus.faults`: drop, delay, a
detected error with retransmission, an undetected corruption) at a seeded
rate, set at start (``faults``) or at run time through the channel's control
socket (:mod:`bench.canbus.control`, ``otactl bench bus-faults``). Delayed
frames keep the channel's order: the frames behind them wait.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import ctypes
import functools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable
from pathlib import Path

from agent.errors import ConfigurationError
from agent.ipc.server import IpcServer
from bench.canbus import wire
from bench.canbus.bittime import frame_time
from bench.canbus.control import PROTOCOL as CONTROL_PROTOCOL
from bench.canbus.control import handlers as control_handlers
from bench.canbus.faults import FaultInjector, FaultSpec, parse_channels
from bench.canbus.paths import control_path, socket_path

log = logging.getLogger(__name__)

HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024
STALL_LIMIT = 2.0  # s of congestion before a node counts as not reading
TX_QUEUE = 64  # frames a node may have waiting for the emulated wire before it is paused


class _Node(asyncio.Protocol):
    def __init__(self, channel: _Channel) -> None:
        self.channel = channel
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.overrun = False
        self.dropped = 0
        #: frames waiting for the emulated wire: (arbitration key, wire seconds, arrival, record)
        self.tx: collections.deque[tuple[tuple[int, int], float, float, bytes]] = collections.deque()
        self.tx_paused = False
        #: acceptance filters (None: every frame)
        self.filters: list[wire.Filter] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)
        self.channel.join(self)
        transport.write(wire.WELCOME)

    def connection_lost(self, exc: Exception | None) -> None:
        self.channel.leave(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            records = wire.split(self.buffer)
        except ValueError as e:
            log.warning("bench bus %s: dropping a node that sent garbage: %s", self.channel.name, e)
            assert self.transport is not None
            self.transport.close()
            return
        if any(wire.is_filter(r) for r in records):
            for r in records:
                if wire.is_filter(r):
                    self.filters = wire.apply_filter_record(r, self.filters)
                    assert self.transport is not None
                    self.transport.write(wire.filter_ack(r))  # frames after it pass the new filters
            records = [r for r in records if not wire.is_filter(r)]
        if records:
            self.channel.submit(self, records)

    def pause_writing(self) -> None:
        self.channel.congested(self, True)

    def resume_writing(self) -> None:
        self.channel.congested(self, False)


class _Channel:
    def __init__(self, name: str, stall_limit: float = STALL_LIMIT, bitrate: int | None = None,
                 data_bitrate: int | None = None, faults: FaultSpec | None = None) -> None:
        self.name = name
        self.stall_limit = stall_limit
        self.bitrate = bitrate
        self.data_bitrate = data_bitrate
        self.frames = 0
        self.busy_seconds = 0.0
        self._bus_free_at = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._on_wire: _Node | None = None
        self.nodes: list[_Node] = []
        self._congested: set[_Node] = set()
        self._stall_timers: dict[_Node, asyncio.TimerHandle] = {}
        self.faults = FaultInjector(faults or FaultSpec(), bitrate, data_bitrate)
        #: frames held back by an injected delay or retransmission: (release time, sender, record)
        self._held: collections.deque[tuple[float, _Node, bytes]] = collections.deque()
        self._held_timer: asyncio.TimerHandle | None = None

    def join(self, node: _Node) -> None:
        self.nodes.append(node)
        if self._congested and node.transport is not None:
            node.transport.pause_reading()
        log.debug("bench bus %s: node joined (%d nodes)", self.name, len(self.nodes))

    def leave(self, node: _Node) -> None:
        if node in self.nodes:
            self.nodes.remove(node)
        node.tx.clear()
        self.congested(node, False)

    def submit(self, sender: _Node, records: list[bytes]) -> None:
        """Frames from ``sender``: straight through, or onto the emulated wire."""
        if self.bitrate is None:
            self.frames += len(records)
            if self.faults.spec.active or self._held:
                for record in records:
                    self.deliver(sender, record)
            else:
                self.forward(sender, b"".join(records))
            return
        now = asyncio.get_running_loop().time()
        for record in records:
            msg = wire.decode(record)
            key = ((msg.arbitration_id >> 18) if msg.is_extended_id else msg.arbitration_id,
                   1 if msg.is_extended_id else 0)
            sender.tx.append((key, frame_time(msg, self.bitrate, self.data_bitrate), now, record))
        if len(sender.tx) >= TX_QUEUE and not sender.tx_paused and sender.transport is not None:
            sender.tx_paused = True
            sender.transport.pause_reading()
        if self._timer is None:
            self._pump()

    def _next_frame(self) -> _Node | None:
        """The node whose head frame takes the wire next, and the instant it starts (in ``_bus_free_at``).

        Frames that had arrived when the bus went free arbitrate: the lowest
        identifier wins. If none had, the bus idled until the earliest arrival.
        """
        waiting = [n for n in self.nodes if n.tx]
        if not waiting:
            return None
        ready = [n for n in waiting if n.tx[0][2] <= self._bus_free_at]
        if not ready:
            first = min(n.tx[0][2] for n in waiting)
            self._bus_free_at = first
            ready = [n for n in waiting if n.tx[0][2] <= first]
        return min(ready, key=lambda n: n.tx[0][0])

    def _pump(self) -> None:
        """Put waiting frames on the wire, in arbitration order, up to the present."""
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        while True:
            # a frame that has started on the wire keeps it: arbitration is over
            winner = self._on_wire if self._on_wire is not None and self._on_wire.tx else self._next_frame()
            if winner is None:
                self._on_wire = None
                return
            _, seconds, _, record = winner.tx[0]
            end = self._bus_free_at + seconds
            if end > now:
                self._on_wire = winner
                self._timer = loop.call_at(end, self._pump)
                return
            self._on_wire = None
            winner.tx.popleft()
            self._bus_free_at = end
            self.frames += 1
            self.busy_seconds += seconds
            self.deliver(winner, record)
            if winner.tx_paused and len(winner.tx) < TX_QUEUE // 2 and winner.transport is not None:
                winner.tx_paused = False
                if not self._congested:
                    winner.transport.resume_reading()

    def deliver(self, sender: _Node, record: bytes) -> None:
        """One frame leaves the wire: through the fault injector, in channel order, to the other nodes."""
        verdict = self.faults.judge(record)
        if verdict.record is None:
            return
        if verdict.hold <= 0 and not self._held:
            self.forward(sender, verdict.record)
            return
        loop = asyncio.get_running_loop()
        release = loop.time() + verdict.hold
        if verdict.kind == "error" and self.bitrate is not None:
            # the error frame and the retransmission occupy the emulated wire
            self._bus_free_at += verdict.hold
            self.busy_seconds += verdict.hold
        if self._held:
            release = max(release, self._held[-1][0])
        self._held.append((release, sender, verdict.record))
        if self._held_timer is None:
            self._release_held()

    def _release_held(self) -> None:
        self._held_timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._held and self._held[0][0] <= now:
            _, sender, record = self._held.popleft()
            self.forward(sender, record)
        if self._held:
            self._held_timer = loop.call_at(self._held[0][0], self._release_held)

    def forward(self, sender: _Node, data: bytes) -> None:
        records: list[bytes] | None = None
        for node in self.nodes:
            if node is sender or node.transport is None:
                continue
            if node.overrun:
                node.dropped += 1
                continue
            out = data
            if node.filters is not None:
                records = wire.split(bytearray(data)) if records is None else records
                out = b"".join(r for r in records if wire.matches(r, node.filters))
                if not out:
                    continue
            node.transport.write(out)

    def congested(self, node: _Node, on: bool) -> None:
        timer = self._stall_timers.pop(node, None)
        if timer is not None:
            timer.cancel()
        if on:
            self._stall_timers[node] = asyncio.get_running_loop().call_later(
                self.stall_limit, self._overrun, node)
        elif node.overrun:
            node.overrun = False
            log.warning("bench bus %s: node reads again after %d dropped writes", self.name, node.dropped)
        self._set_congested(node, on)

    def _overrun(self, node: _Node) -> None:
        self._stall_timers.pop(node, None)
        node.overrun = True
        log.warning("bench bus %s: a node has not read for %.1f s; dropping its frames (overrun)",
                    self.name, self.stall_limit)
        self._set_congested(node, False)

    def _set_congested(self, node: _Node, on: bool) -> None:
        was = bool(self._congested)
        if on:
            self._congested.add(node)
        else:
            self._congested.discard(node)
        now = bool(self._congested)
        if was == now:
            return
        for n in self.nodes:
            if n.transport is None or n.transport.is_closing():
                continue
            if now:
                n.transport.pause_reading()
            elif not n.tx_paused:
                n.transport.resume_reading()


class Hub:
    """Serve bench bus channels from an asyncio loop.

    ``timing`` maps a channel to ``(bitrate, data_bitrate)`` for the channels
    whose wire is emulated; the others relay as fast as the nodes go.
    ``faults`` maps a channel to its fault injection at start; each channel
    also gets a control socket (:mod:`bench.canbus.control`) to change it.
    """

    def __init__(self, channels: Iterable[str], *, stall_limit: float = STALL_LIMIT,
                 timing: dict[str, tuple[int, int | None]] | None = None,
                 faults: dict[str, FaultSpec] | None = None) -> None:
        timing = timing or {}
        faults = faults or {}
        self.channels = {}
        for name in channels:
            bitrate, data_bitrate = timing.get(name, (None, None))
            self.channels[name] = _Channel(name, stall_limit, bitrate, data_bitrate, faults=faults.get(name))
        unknown = sorted(set(faults) - set(self.channels))
        if unknown:
            raise ConfigurationError(f"bus faults for channel {unknown[0]!r}, which this hub does not serve "
                                     f"({', '.join(self.channels)})")
        self._servers: list[asyncio.AbstractServer] = []
        self._controls: list[IpcServer] = []
        self.paths: dict[str, Path] = {}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for name, channel in self.channels.items():
            path = socket_path(name)
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            server = await loop.create_unix_server(functools.partial(_Node, channel), str(path))
            os.chmod(path, 0o660)
            self._servers.append(server)
            self.paths[name] = path
            control = IpcServer(control_path(name), control_handlers(channel), CONTROL_PROTOCOL, mode=0o600)
            await control.start()
            self._controls.append(control)
            log.info("bench bus %s on %s", name, path)

    async def stop(self) -> None:
        for control in self._controls:
            await control.close(timeout=1.0)
        self._controls = []
        for server in self._servers:
            server.close()
        for channel in self.channels.values():
            for node in list(channel.nodes):
                if node.transport is not None:
                    node.transport.close()
        for server in self._servers:
            await server.wait_closed()
        for path in self.paths.values():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


class HubThread:
    """A hub running on its own event loop thread, for embedding in a process."""

    def __init__(self, channels: Iterable[str], *, stall_limit: float = STALL_LIMIT,
                 timing: dict[str, tuple[int, int | None]] | None = None,
                 faults: dict[str, FaultSpec] | None = None) -> None:
        self.hub = Hub(channels, stall_limit=stall_limit, timing=timing, faults=faults)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="bench-hub", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.hub.start())
        except BaseException as e:  # reported to start()
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self.hub.stop())
        self._loop.close()

    def start(self, timeout: float = 10.0) -> HubThread:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("bench hub did not start")
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def stats(self, channel: str) -> tuple[int, float]:
        """(frames carried, seconds of emulated wire time) on ``channel`` so far."""
        ch = self.hub.channels[channel]
        return ch.frames, ch.busy_seconds

    def fault_counters(self, channel: str) -> dict[str, int]:
        """Frames judged and faults injected per kind on ``channel`` so far."""
        return self.hub.channels[channel].faults.counters()

    def __enter__(self) -> HubThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class HubProcess:
    """A hub in a child process of its own, so it never competes for its owner's GIL.

    The child asks the kernel to end it when its parent dies (``PR_SET_PDEATHSIG``),
    so a killed bench leaves no hub behind.
    """

    def __init__(self, channels: Iterable[str], *, stall_limit: float = STALL_LIMIT,
                 timing: dict[str, tuple[int, int | None]] | None = None,
                 faults: dict[str, FaultSpec] | None = None) -> None:
        self.channels = list(channels)
        self._args = [sys.executable, "-m", "bench.canbus.hub", "--stall-limit", str(stall_limit)]
        for name in self.channels:
            self._args += ["--channel", name]
        for name, (bitrate, data_bitrate) in (timing or {}).items():
            self._args += ["--timing", f"{name}={bitrate}" + (f":{data_bitrate}" if data_bitrate else "")]
        if faults:
            self._args += ["--faults-json", json.dumps({name: spec.as_dict() for name, spec in faults.items()})]
        self._proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 30.0) -> HubProcess:
        self._proc = subprocess.Popen(self._args, stdout=subprocess.PIPE, text=True,
                                      preexec_fn=_die_with_parent)
        ready = threading.Event()
        line: list[str] = []

        def read() -> None:
            assert self._proc is not None and self._proc.stdout is not None
            line.append(self._proc.stdout.readline())
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(timeout) or not line[0].startswith("hub ready"):
            self.stop()
            raise TimeoutError(f"bench hub did not start within {timeout} s: {line[0] if line else ''!r}")
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> HubProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _parse_timing(spec: str) -> tuple[str, tuple[int, int | None]]:
    name, _, rates = spec.partition("=")
    bitrate, _, data = rates.partition(":")
    return name, (int(bitrate), int(data) if data else None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.canbus.hub", description="Run the bench CAN hub.")
    parser.add_argument("--channel", action="append", required=True, help="channel to serve (repeatable)")
    parser.add_argument("--timing", action="append", default=[], metavar="CHANNEL=BITRATE[:DATA_BITRATE]",
                        help="emulate the wire of a channel at this bitrate")
    parser.add_argument("--stall-limit", type=float, default=STALL_LIMIT)
    parser.add_argument("--faults-json", default=None, metavar="JSON",
                        help='fault injection per channel: {"CHANNEL": {"drop": 0.01, "seed": 1, ...}}')
    args = parser.parse_args(argv)
    timing = dict(_parse_timing(spec) for spec in args.timing)
    faults = parse_channels(json.loads(args.faults_json), source="--faults-json") if args.faults_json else None

    async def serve() -> None:
        hub = Hub(args.channel, stall_limit=args.stall_limit, timing=timing, faults=faults)
        await hub.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"hub ready: {','.join(args.channel)}", flush=True)
        await stop.wait()
        await hub.stop()

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
