"""``otactl flash --ecu NAME FILE``: flash one ECU over UDS, with progress and a summary.

The exit code says what failed, by error branch (see :mod:`agent.errors`):
0 flashed; 2 bad input (config, image, unknown ECU); 3 the ECU or the bus did
not answer; 4 the ECU refused (a negative response); 5 a check failed (CRC,
dependencies); 6 the ECU refused the vehicle state (preconditions).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from agent.cli._console import console
from agent.cli._library_logs import quiet_uds_libraries
from agent.config.locate import vehicle_config_path
from agent.config.vehicle import load_vehicle_config
from update_agent.flashing import flash_ecu
from update_agent.images import FORMATS, load_image
from update_agent.result import FlashResult, ProgressEvent

ORDER = 30


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("flash", help="flash one ECU over UDS with its flash script",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ecu", required=True, metavar="NAME", help="ECU name from the vehicle config")
    p.add_argument("file", metavar="FILE", help="image: Intel HEX, Motorola S-record or raw binary")
    p.add_argument("--config", metavar="FILE",
                   help="vehicle config (default: $OTA_VEHICLE_CONFIG, else the packaged bench vehicle)")
    p.add_argument("--format", choices=FORMATS, help="image format (default: from the file name)")
    p.add_argument("--base-address", metavar="A", type=_address,
                   help="load address of a raw binary image (e.g. 0x10000)")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.set_defaults(func=run)


def _address(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an address: {text!r} (use e.g. 0x10000)") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"address must be >= 0, got {text}")
    return value


def run(args: argparse.Namespace) -> int:
    vehicle = load_vehicle_config(vehicle_config_path(args.config))
    vehicle.ecu(args.ecu)  # unknown ECU: refused before the image is even read
    image = load_image(args.file, fmt=args.format, base_address=args.base_address)
    quiet_uds_libraries([args.ecu], verbose=args.debug or args.verbose)
    err = console(stderr=True)
    show_bar = not args.json and err.is_terminal
    if show_bar:
        with ProgressBar(err, image.size) as bar:
            result = flash_ecu(vehicle, args.ecu, image, progress=bar)
    else:
        log = None if args.json else _StepLog(err)
        result = flash_ecu(vehicle, args.ecu, image, progress=log)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print_summary(console(), result)
    if result.error is not None:
        raise result.error
    return 0


class ProgressBar:
    """A rich progress bar over the download, its label the current step."""

    def __init__(self, out: Console, total: int) -> None:
        self.progress = Progress(TextColumn("{task.description:<32}"), BarColumn(),
                                 DownloadColumn(binary_units=True), TransferSpeedColumn(), TimeElapsedColumn(),
                                 console=out)
        self.task = self.progress.add_task("starting", total=total)

    def __enter__(self) -> ProgressBar:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind == "bytes":
            self.progress.update(self.task, completed=event.bytes_done)
        elif event.kind == "step_started":
            label = f"{event.ecu} [{event.index + 1}/{event.total_steps}] {event.step}"
            self.progress.update(self.task, description=label)
        elif event.kind == "step_failed":
            self.progress.update(self.task, description=f"[red]{event.ecu}: {event.step} failed")


class _StepLog:
    """Without a terminal: one line per finished step on stderr."""

    def __init__(self, out: Console) -> None:
        self.out = out

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind in ("step_finished", "step_failed", "step_skipped"):
            word = {"step_finished": "ok", "step_failed": "FAILED", "step_skipped": "skipped"}[event.kind]
            extra = f" ({event.bytes_done} bytes)" if event.step == "download" else ""
            self.out.print(f"{event.ecu}: {event.step} {word}{extra}", highlight=False)


def print_summary(out: Console, result: FlashResult) -> None:
    table = Table(title=f"flash {result.ecu} ({result.script})", title_justify="left")
    for column in ("step", "status", "time s", "detail", "NRCs"):
        table.add_column(column, justify="right" if column == "time s" else "left")
    styles = {"ok": "green", "failed": "red", "skipped": "dim"}
    for step in (*result.steps, *result.cleanup):
        nrcs = " ".join(f"{code:#04x}x{n}" for code, n in sorted(step.nrcs.items()))
        retries = f"; {step.retries} re-send(s)" if step.retries else ""
        name = step.name if step in result.steps else f"(on failure) {step.name}"
        table.add_row(name, f"[{styles.get(step.status, '')}]{step.status}", f"{step.duration:.3f}",
                      ((step.error or "") if step.status == "failed" else step.detail) + retries, nrcs)
    out.print(table)
    kib_s = result.throughput / 1024
    out.print(f"image {result.image}: {result.image_size} bytes in {result.segments} segment(s), "
                  f"CRC-32 {result.image_crc32:08x}", highlight=False)
    out.print(f"download: {result.bytes_transferred} bytes in {result.blocks} blocks, "
                  f"{result.download_time:.2f} s, {kib_s:.1f} KiB/s; total {result.duration:.2f} s",
                  highlight=False)
    if result.ok:
        now = result.versions_after.get("software_version", "?")
        out.print(f"[green]{result.ecu}: flashed[/green]; software version now {now}", highlight=False)
    else:
        out.print(f"[red]{result.ecu}: FAILED[/red] at step '{result.failed_step}'", highlight=False)
