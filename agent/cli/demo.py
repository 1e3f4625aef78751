"""``otactl demo``: the OTA stack on a temporary bench in one command.

By default the full demo (:mod:`agent.cli.demo_campaign`): a bench with PKI, two
releases, the route, the HTTPS backend and simulated ECUs on two buses; the five
daemons; campaigns along the route with live per-ECU progress; the vehicle version
before and after; ``--fail-ecu NAME`` makes one ECU fail and the car roll back.

``--flash-only`` runs the earlier, smaller demo: the simulated ECUs of the bench
vehicle (or ``--config``) as a separate process on a private bench bus, the versions of
every ECU, a new application image flashed over UDS into one single-bank and one A/B
ECU with progress, each ECU's summary and the versions after, then cleanup.
"""

from __future__ import annotations

import argparse
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from rich.console import Console

from agent.cli._console import console
from agent.cli._library_logs import quiet_uds_libraries
from agent.cli.demo_campaign import DEMO_IMAGE_SIZE, add_arguments, run_full
from agent.cli.flash import ProgressBar, print_summary
from agent.cli.versions import print_versions
from agent.config.locate import vehicle_config_path
from agent.config.vehicle import VehicleConfig, load_vehicle_config
from agent.errors import ConfigurationError, OtaError, TransportError
from bench.appimage import build_image, to_hex
from bench.canbus.paths import ENV_DIR
from update_agent.flashing import flash_ecu
from update_agent.images import load_image
from update_agent.result import FlashResult
from update_agent.versions import EcuVersions, read_versions

ORDER = 5
READY_TIMEOUT = 60.0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("demo", help="run the bench demo: backend, ECUs, daemons, campaigns with rollback",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--flash-only", action="store_true",
                   help="the small demo: simulated ECUs, versions, two direct flashes (no daemons, no backend)")
    p.add_argument("--config", metavar="FILE",
                   help="--flash-only: vehicle config (default: $OTA_VEHICLE_CONFIG, else the packaged bench vehicle)")
    p.add_argument("--image-size", type=int, default=DEMO_IMAGE_SIZE, metavar="BYTES",
                   help=f"size of the application images (default: {DEMO_IMAGE_SIZE})")
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.flash_only:
        if args.config:
            raise ConfigurationError("--config applies to --flash-only; the full demo builds its own bench vehicle")
        return run_full(args)
    return run_flash_only(args)


def run_flash_only(args: argparse.Namespace) -> int:
    config = vehicle_config_path(args.config)
    vehicle = load_vehicle_config(config)
    single = next((e.name for e in vehicle.ecus.values() if e.banks == "single" and e.sim is not None), None)
    ab = next((e.name for e in vehicle.ecus.values() if e.banks == "ab" and e.sim is not None), None)
    if single is None or ab is None:
        raise ConfigurationError("the demo needs a simulated single-bank ECU and a simulated A/B ECU",
                                 source=vehicle.source)
    quiet_uds_libraries(vehicle.ecus, verbose=args.debug or args.verbose)
    out = console()
    with tempfile.TemporaryDirectory(prefix="ota-demo-") as tmp:
        work = Path(tmp)
        (work / "hub").mkdir()
        previous = os.environ.get(ENV_DIR)
        os.environ[ENV_DIR] = str(work / "hub")  # our bus connections and the bench's share it
        bench = _start_bench(config, work)
        try:
            out.rule("[bold]bench started")
            before = read_versions(vehicle)
            print_versions(out, before)
            results = [_flash(out, vehicle, name, before, work, args.image_size) for name in (single, ab)]
            out.rule("[bold]versions after")
            print_versions(out, read_versions(vehicle))
        finally:
            _stop_bench(bench)
            if previous is None:
                os.environ.pop(ENV_DIR, None)
            else:
                os.environ[ENV_DIR] = previous
        out.rule("[bold]bench stopped, temporary files removed")
    for result in results:
        result.raise_for_error()
    return 0


def _start_bench(config: Path, work: Path) -> subprocess.Popen[str]:
    log = (work / "bench.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli.main", "bench", "ecus", "--config", str(config),
         "--state-dir", str(work / "state")],
        stdout=subprocess.PIPE, stderr=log, text=True, env=dict(os.environ))
    log.close()
    lines: queue.Queue[str | None] = queue.Queue()
    assert proc.stdout is not None
    out = proc.stdout

    def pump() -> None:
        for line in out:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, name="bench-stdout", daemon=True).start()
    while True:
        try:
            line = lines.get(timeout=READY_TIMEOUT)
        except queue.Empty:
            _stop_bench(proc)
            raise TransportError(f"the bench did not get ready within {READY_TIMEOUT:g} s: "
                                 f"{_tail(work / 'bench.log')}") from None
        if line is None:
            code = proc.wait()
            raise TransportError(f"the bench exited with {code}: {_tail(work / 'bench.log')}")
        if line.startswith("bench ready:"):
            return proc


def _stop_bench(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _tail(path: Path) -> str:
    text = path.read_text(errors="replace").strip() if path.exists() else ""
    return text.splitlines()[-1] if text else "(no output)"


def next_version(version: str) -> str:
    """``1.0.0`` -> ``1.0.1``; anything else gets ``.1`` appended."""
    head, _, last = version.rpartition(".")
    return f"{head}.{int(last) + 1}" if head and last.isdigit() else f"{version}.1"


def _flash(out: Console, vehicle: VehicleConfig, name: str, before: list[EcuVersions], work: Path,
           size: int) -> FlashResult:
    ecu = vehicle.ecu(name)
    found = next(v for v in before if v.ecu == name)
    if not found.answering:
        raise OtaError(f"{name} does not answer: {found.error}")
    version = next_version(found.values.get("software_version", "0.0.0"))
    part = found.values.get("part_number", name.upper())
    region = ecu.memory.regions[0]
    path = work / f"{name}-{version}.hex"
    path.write_text(to_hex(build_image(version, part, min(size, region.size)), region.start))
    out.rule(f"[bold]flash {name} ({ecu.banks} bank): {found.values.get('software_version')} -> {version}")
    image = load_image(path)
    with ProgressBar(console(stderr=True), image.size) as bar:
        result = flash_ecu(vehicle, name, image, progress=bar)
    print_summary(out, result)
    return result
