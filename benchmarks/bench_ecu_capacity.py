"""How fast the bench ECU simulator takes a download: prints figures, never fails on time.

Starts ``otactl bench ecus`` (with its bench hub) as its own process for the
bench vehicle's ``engine``, then downloads a 200 KiB image into it from this
process with a plain udsoncan client over can-isotp (STmin 0, block size 0,
2 KiB TransferData blocks) on the bench hub, and prints: throughput, the frame
rate and its ratio to a saturated 500 kbit/s classic CAN bus (8-byte frames of
111 bits without stuffing: 4,504 frames/s), and the CPU time the simulator
process spent per frame (the simulator's own capacity, whatever the tester).

    python benchmarks/bench_ecu_capacity.py [--size KIB]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import can
import isotp
import udsoncan
from udsoncan import MemoryLocation
from udsoncan.client import Client
from udsoncan.connections import PythonIsoTpConnection

from agent.config.vehicle import load_vehicle_config
from bench.appimage import build_image

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "bench-vehicle.yaml"
SATURATED_500K = 500_000 / 111  # 8-byte classic frames per second, no stuff bits


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=200, help="image size in KiB (default 200)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-ecu-capacity-"))
    env = dict(os.environ, OTA_BENCH_HUB_DIR=str(work / "hub"))
    os.environ["OTA_BENCH_HUB_DIR"] = env["OTA_BENCH_HUB_DIR"]
    sim = subprocess.Popen([sys.executable, "-m", "agent.cli.main", "bench", "ecus", "--config", str(CONFIG),
                            "--state-dir", str(work / "state"), "--ecu", "engine"],
                           env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert sim.stdout is not None
        ready = sim.stdout.readline().strip()
        if ready != "bench ready: engine":
            print(f"simulator did not start (got {ready!r})", file=sys.stderr)
            return 1
        ecu = load_vehicle_config(CONFIG).ecu("engine")
        region = ecu.memory.regions[0]
        image = build_image("9.9.9", "ENG-4711", args.size * 1024)
        bus = can.Bus(interface="benchhub", channel="powertrain")
        notifier = can.Notifier(bus, [])
        assert ecu.isotp.tx_id is not None and ecu.isotp.rx_id is not None
        stack = isotp.NotifierBasedCanStack(
            bus, notifier, address=isotp.Address(isotp.AddressingMode.Normal_11bits, txid=ecu.isotp.tx_id,
                                                 rxid=ecu.isotp.rx_id),
            params={"blocking_send": True, "stmin": 0, "blocksize": 0})
        config = dict(udsoncan.configs.default_client_config)
        sec = ecu.security
        config.update(use_server_timing=False, p2_timeout=5.0, request_timeout=60.0,
                      security_algo=lambda level, seed, params: sec.load()(seed, level, sec.params))
        with Client(PythonIsoTpConnection(stack), config=config) as client:  # type: ignore[arg-type]
            client.change_session(3)
            client.change_session(2)
            client.unlock_security_access(sec.level)
            client.start_routine(0xFF00, bytes([0x44]) + region.start.to_bytes(4, "big")
                                 + region.size.to_bytes(4, "big"))
            location = MemoryLocation(region.start, len(image), address_format=32, memorysize_format=32)
            block = client.request_download(location).service_data.max_length - 2
            cpu0, t0 = _cpu_seconds(sim.pid), time.perf_counter()
            for n, offset in enumerate(range(0, len(image), block), start=1):
                client.transfer_data(n & 0xFF, image[offset:offset + block])
            elapsed, cpu = time.perf_counter() - t0, _cpu_seconds(sim.pid) - cpu0
            client.request_transfer_exit()
            status = client.start_routine(0x0202, zlib.crc32(image).to_bytes(4, "big"))
            crc_ok = status.service_data.routine_status_record == b"\x00"
        notifier.stop()
        bus.shutdown()
    finally:
        sim.send_signal(signal.SIGTERM)
        sim.wait(30)
    frames = sum(1 + -(-(min(block, len(image) - o) + 2 - 6) // 7) for o in range(0, len(image), block))
    print(f"image {len(image)} bytes in {elapsed:.2f} s, CRC check {'ok' if crc_ok else 'FAILED'}")
    print(f"throughput_kib_s={len(image) / 1024 / elapsed:.1f}")
    print(f"frames_per_s={frames / elapsed:.0f}")
    print(f"ratio_to_saturated_500k={frames / elapsed / SATURATED_500K:.2f}")
    print(f"simulator_cpu_us_per_frame={cpu / frames * 1e6:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
