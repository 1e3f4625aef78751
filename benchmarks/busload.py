"""Background bus load: periodic CAN frames taking a given share of a bus's bit time.

Run as its own process next to the flasher and the simulated ECUs::

    python benchmarks/busload.py --interface benchhub --channel powertrain --bitrate 500000 --load 0.10

It sends 8-byte frames (id 0x100 by default: higher priority than diagnostics,
as the periodic traffic of a real vehicle is) with a period such that their
bit-accurate length (stuffing included, see :mod:`bench.canbus.bittime`) fills ``--load``
of the bus. Frames are scheduled on absolute times, so jitter does not drift
the rate. It reads (and drops) what the bus carries, as every bench-hub node
must, or the lossless hub would hold the bus for it. It prints ``load ready``
once connected and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import threading
import time
from pathlib import Path

import can

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench.canbus.bittime import frame_time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--interface", default="benchhub")
    p.add_argument("--channel", required=True)
    p.add_argument("--bitrate", type=int, default=500_000)
    p.add_argument("--load", type=float, required=True, help="share of the bus bit time, e.g. 0.05")
    p.add_argument("--id", type=lambda s: int(s, 0), default=0x100)
    args = p.parse_args(argv)
    if not 0 < args.load < 1:
        p.error("--load must be between 0 and 1")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    rng = random.Random(0x100)
    payloads = [rng.randbytes(8) for _ in range(256)]
    frames = [can.Message(arbitration_id=args.id, data=d, is_extended_id=False) for d in payloads]
    mean = sum(frame_time(m, args.bitrate) for m in frames) / len(frames)
    period = mean / args.load
    with can.Bus(interface=args.interface, channel=args.channel) as bus:
        # a bench hub node must read what the bus carries, or the hub holds the bus for it
        threading.Thread(target=_drain, args=(bus, stop), name="drain", daemon=True).start()
        print(f"load ready: {args.load:.0%} of {args.bitrate} bit/s, one frame every {period * 1e3:.3f} ms",
              flush=True)
        sent = 0
        start = time.perf_counter()
        while not stop.is_set():
            due = start + sent * period
            delay = due - time.perf_counter()
            if delay > 0:
                stop.wait(delay)
                continue
            bus.send(can.Message(arbitration_id=args.id, data=payloads[sent % 256], is_extended_id=False))
            sent += 1
    return 0


def _drain(bus: can.BusABC, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            bus.recv(0.1)
        except can.CanError:
            return


if __name__ == "__main__":
    sys.exit(main())
