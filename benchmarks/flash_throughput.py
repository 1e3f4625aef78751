"""Flash throughput on the bench: a 200 KB Intel HEX image over UDS / ISO-TP, STmin 0.

The FAW paper's test, three ways (the flasher runs in this process, the
simulated ECU in its own ``otactl bench ecus`` process, on the bench hub):

(a) Unthrottled, cross-process: how fast the flasher and the simulator move
    frames when nothing paces them. Reported as KiB/s, CAN frames/s and the
    ratio to a saturated 500 kbit/s classic CAN bus.

(b) The bus emulated at 500 kbit/s under 0 %, 5 % and 10 % background load
    (``busload.py``, a separate process on the same bus, 8-byte frames with a
    higher-priority id). Reported: flash time and its ratio to the physical
    limit for that load.

    The physical limit counts the bus time of every frame of the download
    (tester FF/CF/SF and the ECU's flow controls and responses), bit-accurate
    with stuffing (:mod:`bench.canbus.bittime`): an ISO-TP consecutive frame is 8 data bytes
    in about 116 bits on the wire (111 unstuffed, 47 of them frame overhead:
    SOF, id, control, CRC, ACK, EOF, intermission), so classic CAN carries
    data bits at ~0.55 x the bitrate and ISO-TP payload at ~0.48 x. The limit
    for a load L is that bus time divided by (1 - L), L as measured on the bus
    during the download.

    Pacing uses can-isotp's rate-limiter hook (``TransportLayer.rate_limiter``:
    ``allowed_bytes`` / ``inform_byte_sent`` / ``update``). Its stock
    ``RateLimiter`` counts data bits only, in a sliding window: set to 0.55 x
    the bitrate it gets the mean rate right for full frames, but it knows
    nothing of the other nodes' frames and it lets a sender catch up any idle
    time shorter than its window (0.2 s by default), which hides exactly the
    protocol gaps this figure is about. The limiter here (:class:`BusClock`)
    keeps a serial-bus clock instead: every frame on the bus - ours, the ECU's,
    the load generator's - occupies it for its bit-accurate time, idle time is
    lost as on a real bus, and the tester may queue at most ~1 ms ahead (a CAN
    controller's transmit FIFO).

(c) CAN FD, 500 kbit/s arbitration / 2 Mbit/s data, 64-byte frames, paced the
    same way (no background load), and unthrottled.

Prints figures and exits 0; never fails on time. Last line:
``flash_200k_500k_ratio_to_limit=<x.xx>`` (the worst of the (b) loads).
"""

from __future__ import annotations

import collections
import functools
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import can
import isotp
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from agent.config.vehicle import VehicleConfig, load_vehicle_config  # noqa: E402
from bench.appimage import build_image, to_hex  # noqa: E402
from bench.canbus.bittime import frame_bits, frame_time  # noqa: E402
from bench.canbus.paths import ENV_DIR  # noqa: E402
from update_agent.flashing import flash_ecu  # noqa: E402
from update_agent.images import FlashImage, load_image  # noqa: E402
from update_agent.result import FlashResult, ProgressEvent  # noqa: E402
from update_agent.uds.transport import FlasherCanStack  # noqa: E402

IMAGE_SIZE = 200 * 1024
BITRATE = 500_000
DATA_BITRATE = 2_000_000
ECU = "engine"
LOADS = (0.0, 0.05, 0.10)
TX_LEAD = 0.001  # s a frame may be queued ahead of the bus (controller TX FIFO)


# -- frame timing ------------------------------------------------------------------
@dataclass(frozen=True)
class BusTiming:
    bitrate: int
    data_bitrate: int | None = None

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - a few hundred distinct frames, one instance per run
    def frame_time(self, arbitration_id: int, data: bytes, extended: bool, fd: bool) -> float:
        msg = can.Message(arbitration_id=arbitration_id, data=data, is_extended_id=extended, is_fd=fd,
                          bitrate_switch=fd)
        return frame_time(msg, self.bitrate, self.data_bitrate)

    def of(self, msg: can.Message | isotp.CanMessage) -> float:
        extended = bool(getattr(msg, "is_extended_id", False))
        return self.frame_time(msg.arbitration_id, bytes(msg.data), extended, bool(msg.is_fd))


# -- metering ----------------------------------------------------------------------
@dataclass
class Meter:
    """Frames on the bus during the download step: ours (tx), the ECU's, the load's."""

    ecu_id: int
    active: bool = False
    tx: list[can.Message | isotp.CanMessage] = field(default_factory=list)
    rx: list[can.Message] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0

    def progress(self, event: ProgressEvent) -> None:
        if event.step != "download":
            return
        if event.kind == "step_started":
            self.tx.clear()
            self.rx.clear()
            self.started = time.perf_counter()
            self.active = True
        elif event.kind in ("step_finished", "step_failed"):
            self.ended = time.perf_counter()
            self.active = False

    def on_tx(self, msg: isotp.CanMessage) -> None:
        if self.active:
            self.tx.append(msg)

    def on_rx(self, msg: can.Message) -> None:
        if self.active:
            self.rx.append(msg)

    @property
    def ecu_frames(self) -> list[can.Message]:
        return [m for m in self.rx if m.arbitration_id == self.ecu_id]

    @property
    def load_frames(self) -> list[can.Message]:
        return [m for m in self.rx if m.arbitration_id != self.ecu_id]


class _RxTap(can.Listener):
    def __init__(self, callback: Callable[[can.Message], None]) -> None:
        self.callback = callback

    def on_message_received(self, msg: can.Message) -> None:
        self.callback(msg)


class BusClock(isotp.protocol.RateLimiter):
    """can-isotp's rate-limiter hook driven by a serial-bus clock (see the module docstring)."""

    def __init__(self, timing: BusTiming, own_frame_time: Callable[[int], float]) -> None:
        super().__init__(mean_bitrate=1.0, window_size_sec=1.0)
        self.timing = timing
        self.own_frame_time = own_frame_time
        self.free_at = 0.0
        #: (seen at, bus time) of the other nodes' frames, from the notifier thread
        self.foreign: collections.deque[tuple[float, float]] = collections.deque()
        self.enabled = True

    def enable(self) -> None:
        self.enabled = True

    def reset(self) -> None:
        super().reset()
        self.free_at = getattr(self, "free_at", 0.0)

    def update(self) -> None:  # called by the transport's main thread on every process()
        while self.foreign:
            seen, duration = self.foreign.popleft()
            self.free_at = max(self.free_at, seen) + duration

    def allowed_bytes(self) -> int:
        return 0xFFFFFFFF if time.perf_counter() >= self.free_at - TX_LEAD else 0

    def inform_byte_sent(self, datalen: int) -> None:
        self.free_at = max(self.free_at, time.perf_counter()) + self.own_frame_time(datalen)

    def wait_time(self) -> float:
        return max(0.0, self.free_at - TX_LEAD - time.perf_counter())


def stack_factory(meter: Meter, timing: BusTiming | None, own_frame_time: Callable[[int], float] | None,
                  ) -> Callable[..., FlasherCanStack]:
    """NotifierBasedCanStack with a frame tap, and with the bus clock when ``timing`` is given."""

    class Stack(FlasherCanStack):
        def __init__(self, bus: can.BusABC, notifier: can.Notifier, **kwargs: Any) -> None:
            super().__init__(bus, notifier, **kwargs)
            send = self.txfn

            def txfn(msg: isotp.CanMessage) -> None:
                meter.on_tx(msg)
                send(msg)

            self.txfn = txfn
            self.clock: BusClock | None = None
            if timing is not None and own_frame_time is not None:
                clock = BusClock(timing, own_frame_time)
                self.rate_limiter = clock
                self.clock = clock

                def foreign(msg: can.Message) -> None:
                    meter.on_rx(msg)
                    clock.foreign.append((time.perf_counter(), timing.of(msg)))

                notifier.add_listener(_RxTap(foreign))
            else:
                notifier.add_listener(_RxTap(meter.on_rx))

        def next_cf_delay(self) -> float | None:
            delay = super().next_cf_delay()
            if delay == 0 and self.clock is not None:
                return self.clock.wait_time()  # sleep until the bus is free instead of spinning
            return delay

    return Stack


# -- the bench -----------------------------------------------------------------------
def write_config(work: Path, *, fd: bool) -> Path:
    data = yaml.safe_load((REPO / "configs" / "bench-vehicle.yaml").read_text())
    frames = data.get("version_frames")
    if isinstance(frames, dict) and not os.path.isabs(frames.get("dbc", "/")):
        frames["dbc"] = str(REPO / "configs" / frames["dbc"])
    ecu = data["ecus"][ECU]
    ecu["isotp"]["params"] = {"stmin": 0, "blocksize": 0, "tx_padding": 0xCC}
    if fd:
        bus = data["buses"][ecu["bus"]]
        bus.update(fd=True, data_bitrate=DATA_BITRATE)
        ecu["isotp"]["params"].update(can_fd=True, bitrate_switch=True, tx_data_length=64)
    ecu["timing"] = {"p2": 0.05, "p2_star": 5.0, "request_timeout": 2.0, "transfer_retries": 2}
    ecu["sim"].update(erase_time=0.05, response_pending_interval=0.02, max_block_length=0x0FFF,
                      stmin=0, blocksize=0)
    path = work / ("vehicle-fd.yaml" if fd else "vehicle.yaml")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class Process:
    """A child process started with a command line, ready once it prints ``ready_prefix``."""

    def __init__(self, argv: list[str], ready_prefix: str, log: Path) -> None:
        with log.open("w") as err:
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True)
        lines: collections.deque[str] = collections.deque()
        ready = threading.Event()
        assert self.proc.stdout is not None
        out = self.proc.stdout

        def pump() -> None:
            for line in out:
                lines.append(line)
                if line.startswith(ready_prefix):
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(60) or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError(f"{argv[2:4]} did not start: {log.read_text()[-2000:]}")
        self.ready_line = next((line for line in lines if line.startswith(ready_prefix)), "").strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_bench(config: Path, work: Path) -> Process:
    return Process([sys.executable, "-m", "agent.cli.main", "bench", "ecus", "--config", str(config),
                    "--state-dir", str(work / "state"), "--ecu", ECU], "bench ready:", work / "bench.log")


def start_load(vehicle: VehicleConfig, load: float, work: Path) -> Process:
    bus = vehicle.bus_of(vehicle.ecu(ECU))
    return Process([sys.executable, str(Path(__file__).with_name("busload.py")), "--interface", bus.interface,
                    "--channel", bus.channel, "--bitrate", str(bus.bitrate), "--load", str(load)],
                   "load ready", work / f"load-{load}.log")


# -- one measured flash -------------------------------------------------------------
@dataclass
class Run:
    label: str
    result: FlashResult
    meter: Meter
    timing: BusTiming

    @property
    def download_s(self) -> float:
        return self.meter.ended - self.meter.started

    @property
    def flasher_frames(self) -> int:
        return len(self.meter.tx) + len(self.meter.ecu_frames)

    @property
    def flasher_bus_s(self) -> float:
        return sum(self.timing.of(m) for m in self.meter.tx) + sum(self.timing.of(m) for m in self.meter.ecu_frames)

    @property
    def load_share(self) -> float:
        return sum(self.timing.of(m) for m in self.meter.load_frames) / self.download_s

    @property
    def limit_s(self) -> float:
        return self.flasher_bus_s / (1 - self.load_share)


def own_frame_timer(timing: BusTiming, image: FlashImage, tx_id: int, frame_len: int) -> Callable[[int], float]:
    """Mean bus time of the tester's frames by length, over the image's real consecutive frames."""
    data = b"".join(s.data for s in image.segments)
    step = frame_len - 1
    sample = [bytes([0x20 | (i & 0x0F)]) + data[o:o + step].ljust(step, b"\xcc")
              for i, o in enumerate(range(0, min(len(data), 4000 * step), step))]
    fd = frame_len > 8
    full = sum(timing.frame_time(tx_id, f, False, fd) for f in sample) / len(sample)
    per_length: dict[int, float] = {frame_len: full}

    def frame_time(datalen: int) -> float:
        if datalen not in per_length:
            per_length[datalen] = timing.frame_time(tx_id, bytes(datalen), False, fd)
        return per_length[datalen]

    return frame_time


def flash_once(vehicle: VehicleConfig, image: FlashImage, label: str, *, paced: bool) -> Run:
    ecu = vehicle.ecu(ECU)
    bus = vehicle.bus_of(ecu)
    timing = BusTiming(bus.bitrate, bus.data_bitrate if bus.fd else None)
    assert ecu.isotp.rx_id is not None and ecu.isotp.tx_id is not None
    meter = Meter(ecu_id=ecu.isotp.rx_id)
    frame_len = int(ecu.isotp.params.get("tx_data_length", 8))
    own = own_frame_timer(timing, image, ecu.isotp.tx_id, frame_len) if paced else None
    factory = stack_factory(meter, timing if paced else None, own)
    result = flash_ecu(vehicle, ECU, image, progress=meter.progress, stack_factory=factory)
    if not result.ok:
        print(f"  {label}: flash failed: {result.error}")
    return Run(label, result, meter, timing)


# -- report --------------------------------------------------------------------------
def saturated_classic(timing: BusTiming, tx_id: int) -> tuple[float, float]:
    """Frames/s of a bus full of 8-byte frames: unstuffed (111 bits), and stuffed as random data is."""
    rng = random.Random(7)
    stuffed = sum(frame_bits(can.Message(arbitration_id=tx_id, data=rng.randbytes(8), is_extended_id=False))[0]
                  for _ in range(2000)) / 2000
    return timing.bitrate / 111, timing.bitrate / stuffed


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="ota-flash-bench-") as tmp:
        work = Path(tmp)
        (work / "hub").mkdir()
        os.environ[ENV_DIR] = str(work / "hub")
        data = build_image("9.0.0", "ENG-4711", IMAGE_SIZE, seed="benchmark")
        hex_path = work / "app-200k.hex"
        config = write_config(work, fd=False)
        vehicle = load_vehicle_config(config)
        region = vehicle.ecu(ECU).memory.regions[0]
        hex_path.write_text(to_hex(data, region.start))
        image = load_image(hex_path)
        print(f"image: {hex_path.name}, {image.size} bytes ({image.size / 1024:.0f} KiB) Intel HEX, "
              f"STmin 0, block size 0, maxNumberOfBlockLength 0x0FFF")
        logging_quiet()

        bench = start_bench(config, work)
        try:
            a = flash_once(vehicle, image, "unthrottled", paced=False)
            loaded: list[Run] = []
            for load in LOADS:
                gen = start_load(vehicle, load, work) if load > 0 else None
                try:
                    loaded.append(flash_once(vehicle, image, f"{load:.0%} load", paced=True))
                finally:
                    if gen is not None:
                        gen.stop()
        finally:
            bench.stop()

        fd_config = write_config(work, fd=True)
        fd_vehicle = load_vehicle_config(fd_config)
        bench = start_bench(fd_config, work)
        try:
            c_paced = flash_once(fd_vehicle, image, "CAN FD 500k/2M", paced=True)
            c_free = flash_once(fd_vehicle, image, "CAN FD unthrottled", paced=False)
        finally:
            bench.stop()

    report(a, loaded, c_paced, c_free, vehicle)
    return 0


def logging_quiet() -> None:
    for name in ("isotp", "UdsClient", f"UdsClient[{ECU}]", f"Connection[{ECU}]"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def report(a: Run, loaded: list[Run], c_paced: Run, c_free: Run, vehicle: VehicleConfig) -> None:
    ecu = vehicle.ecu(ECU)
    assert ecu.isotp.tx_id is not None
    timing = BusTiming(BITRATE)
    unstuffed_fps, stuffed_fps = saturated_classic(timing, ecu.isotp.tx_id)
    cf_bits = sum(timing.of(m) for m in a.meter.tx) / max(1, len(a.meter.tx)) * BITRATE
    print()
    print("(a) unthrottled, cross-process (bench hub, no bit timing)")
    fps = a.flasher_frames / a.download_s
    print(f"    download {a.result.bytes_transferred} bytes in {a.download_s:.2f} s: "
          f"{a.result.bytes_transferred / 1024 / a.download_s:.1f} KiB/s, {fps:.0f} frames/s "
          f"({len(a.meter.tx)} tester + {len(a.meter.ecu_frames)} ECU frames); whole flash {a.result.duration:.2f} s")
    print(f"    a saturated 500 kbit/s classic bus carries {stuffed_fps:.0f} frames/s of 8 bytes "
          f"({BITRATE / stuffed_fps:.1f} bits each with stuffing; {unstuffed_fps:.0f}/s unstuffed at 111 bits)")
    print(f"    ratio to the saturated bus: {fps / stuffed_fps:.2f} x frames/s; its ISO-TP payload limit is "
          f"{stuffed_fps * 7 / 1024:.1f} KiB/s, "
          f"so {a.result.bytes_transferred / a.download_s / (stuffed_fps * 7):.2f} x")
    print()
    print("(b) bus emulated at 500 kbit/s (bit-accurate frame times, stuffing included)")
    print(f"    one consecutive frame: {cf_bits:.1f} bits on the wire for 64 data bits "
          f"(data bits = {64 / cf_bits:.2f} x bitrate; ISO-TP payload {56 / cf_bits:.2f} x)")
    print(f"    {'load':>6} {'measured':>9} {'download':>9} {'limit':>8} {'ratio':>6} {'frames':>7} {'flash':>7}")
    for run in loaded:
        print(f"    {run.label.split()[0]:>6} {run.load_share:>8.1%} {run.download_s:>8.2f}s {run.limit_s:>7.2f}s "
              f"{run.download_s / run.limit_s:>6.3f} {run.flasher_frames:>7} {run.result.duration:>6.2f}s")
    print("    limit = bus time of the download's frames (tester + ECU) / (1 - measured load)")
    print()
    print("(c) CAN FD, 500 kbit/s arbitration, 2 Mbit/s data, 64-byte frames")
    print(f"    paced: download {c_paced.download_s:.2f} s, limit {c_paced.limit_s:.2f} s, "
          f"ratio {c_paced.download_s / c_paced.limit_s:.3f}, "
          f"{c_paced.result.bytes_transferred / 1024 / c_paced.download_s:.1f} KiB/s, {c_paced.flasher_frames} frames")
    print(f"    unthrottled: download {c_free.download_s:.2f} s, "
          f"{c_free.result.bytes_transferred / 1024 / c_free.download_s:.1f} KiB/s, "
          f"{c_free.flasher_frames / c_free.download_s:.0f} frames/s")
    worst = max(run.download_s / run.limit_s for run in loaded)
    print()
    print(f"flash_200k_500k_ratio_to_limit={worst:.2f}")


if __name__ == "__main__":
    sys.exit(main())
