"""``otactl baseline``: collect the ECU versions and match them against the baselines.

Reads every ECU's versions over UDS (DIDs F187/F189/F191/F18C or the ECU's
``version_dids``) and, when the vehicle config has a ``version_frames``
section, listens to the ECUs' periodic version frames at the same time; stores
every reading in the update agent's version store; then checks the hardware
baseline and matches the software baseline from the highest sequence down.

Prints the vehicle hardware version, the vehicle software version, a table
per ECU (expected, found, source, age) and, when nothing matched, why.

Baseline files: ``--hw-baseline`` / ``--sw-baseline``, else
``$OTA_HW_BASELINE`` / ``$OTA_SW_BASELINE``, else the bench vehicle's files
shipped in ``configs/``.

Exit code: 0 the vehicle matched a vehicle software version; 5 it did not
(hardware or software baseline not matched); 2 a bad config or baseline
file; 3 the bus could not be used.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from agent.config.locate import config_file, vehicle_config_path
from agent.config.vehicle import load_vehicle_config
from agent.errors import ConfigurationError, VerificationError
from update_agent.baseline import (
    EcuRow,
    MatchReport,
    check_pair,
    load_hardware_baseline,
    load_software_baseline,
    match,
)
from update_agent.state_dir import state_dir
from update_agent.version_reading import VersionReading
from update_agent.version_store import VersionStore

ORDER = 40
ENV_HW = "OTA_HW_BASELINE"
ENV_SW = "OTA_SW_BASELINE"
BENCH_HW = "bench-hw-baseline.xml"
BENCH_SW = "bench-sw-baseline.xml"
EXIT_NO_MATCH = VerificationError.exit_code


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("baseline", help="collect ECU versions and match the vehicle baselines",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="FILE",
                   help="vehicle config (default: $OTA_VEHICLE_CONFIG, else the packaged bench vehicle)")
    p.add_argument("--hw-baseline", metavar="FILE", help=f"hardware baseline XML (default: ${ENV_HW}, "
                   "else the bench vehicle's)")
    p.add_argument("--sw-baseline", metavar="FILE", help=f"software baseline XML (default: ${ENV_SW}, "
                   "else the bench vehicle's)")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.add_argument("--no-uds", action="store_true", help="do not read versions over UDS")
    p.add_argument("--no-frames", action="store_true", help="do not listen to version frames")
    p.add_argument("--listen", type=_seconds, metavar="S",
                   help="seconds to wait for version frames (default: version_frames.listen)")
    p.add_argument("--timeout", type=_seconds, metavar="S",
                   help="UDS answer timeout per ECU (default: each ECU's timing.request_timeout)")
    p.add_argument("--stored", action="store_true",
                   help="match the latest stored readings instead of collecting (no bus access)")
    p.add_argument("--state-dir", metavar="DIR",
                   help="update agent state directory holding the version store (default: "
                        "$OTA_UPDATE_AGENT_STATE_DIR, $STATE_DIRECTORY, ~/.local/state/ota-update-agent)")
    p.set_defaults(func=run)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= 600:
        raise argparse.ArgumentTypeError(f"must be in (0, 600] seconds, got {text}")
    return value


def run(args: argparse.Namespace) -> int:
    hw_path = config_file(args.hw_baseline, ENV_HW, BENCH_HW)
    sw_path = config_file(args.sw_baseline, ENV_SW, BENCH_SW)
    hardware = load_hardware_baseline(hw_path)
    software = load_software_baseline(sw_path)
    check_pair(hardware, software)
    store_dir = state_dir(args.state_dir)
    notes: list[str] = []
    with VersionStore.in_dir(store_dir) as store:
        if args.stored:
            readings: dict[str, VersionReading] = store.latest()
            if not readings:
                raise ConfigurationError("no stored version readings yet; run without --stored first",
                                         source=store.path)
        else:
            readings, notes = _collect(args, store)
    report = match(hardware, software, readings)
    now = time.time()
    if args.json:
        out = report.as_dict(now)
        out.update(hardware_baseline=str(hw_path), software_baseline=str(sw_path), notes=notes,
                   store=str(store_dir))
        print(json.dumps(out, indent=2))
    else:
        console = Console()
        if not console.is_terminal:  # a log or a pipe: do not wrap the table at 80 columns
            console = Console(width=200)
        print_report(console, report, now, hw_path=hw_path, sw_path=sw_path, notes=notes)
    return 0 if report.ok else EXIT_NO_MATCH


def _collect(args: argparse.Namespace, store: VersionStore) -> tuple[dict[str, VersionReading], list[str]]:
    from agent.cli._library_logs import quiet_uds_libraries
    from update_agent.version_collection import collect

    vehicle = load_vehicle_config(vehicle_config_path(args.config))
    passive = not args.no_frames and vehicle.version_frames is not None
    if args.no_uds and not passive:
        raise ConfigurationError("--no-uds leaves nothing to collect with: the vehicle config has no "
                                 "version_frames section (or --no-frames was given)",
                                 source=vehicle.source)
    quiet_uds_libraries(vehicle.ecus, verbose=args.debug or args.verbose)
    result = collect(vehicle, uds=not args.no_uds, passive=passive, listen=args.listen,
                     uds_timeout=args.timeout, store=store)
    return result.readings, result.notes


# -- text output ---------------------------------------------------------------

def _age(seconds: float) -> str:
    if seconds < 0:
        return "0 s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _expected(values: frozenset[str] | None) -> str:
    return "-" if values is None else ",".join(sorted(values))


def _status(row: EcuRow) -> Text:
    if row.findings:
        return Text("; ".join(f.problem for f in row.findings), style="red")
    if not row.in_baseline:
        return Text("not in baseline", style="yellow")
    return Text("ok", style="green")


def ecu_table(report: MatchReport, now: float) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for column in ("ECU", "hw expected", "hw found", "sw expected", "sw found", "source", "age", "status"):
        table.add_column(column, no_wrap=True)
    for row in report.rows():
        r = row.reading
        found_hw = found_sw = "-"
        if r is not None and r.answered:
            found_hw = r.hardware_version or "?"
            found_sw = r.software_version or "?"
        elif r is not None:
            found_hw = found_sw = "no answer"
        table.add_row(row.ecu, _expected(row.expected_hardware), found_hw, _expected(row.expected_software),
                      found_sw, r.source if r else "-", _age(now - r.read_at) if r else "-", _status(row))
    return table


def print_report(console: Console, report: MatchReport, now: float, *, hw_path: Path, sw_path: Path,
                 notes: list[str]) -> None:
    hw, sw = report.hardware, report.software
    console.print(f"hardware baseline  {hw_path}", highlight=False)
    console.print(f"software baseline  {sw_path}", highlight=False)
    if hw.matched:
        console.print(f"vehicle hardware   [green]{hw.matched.version}[/]", highlight=False)
    else:
        near = f" (nearest {hw.nearest.version})" if hw.nearest else ""
        console.print(f"vehicle hardware   [red]NOT MATCHED[/]{near}", highlight=False)
    if sw.matched:
        console.print(f"vehicle software   [green]{sw.matched.version}[/] (sequence {sw.matched.sequence})",
                      highlight=False)
    elif sw.status == "no-match":
        near = f" (nearest {sw.nearest.version}, sequence {sw.nearest.sequence})" if sw.nearest else ""
        console.print(f"vehicle software   [red]NO MATCH[/]{near}", highlight=False)
    else:
        console.print(f"vehicle software   [yellow]{sw.status}[/]", highlight=False)
    console.print()
    console.print(ecu_table(report, now))
    reasons = report.reasons()
    if reasons:
        console.print()
        console.print("[bold]why not matched[/]")
        for reason in reasons:
            console.print(f"  - {reason}", highlight=False, markup=False)
    for note in notes:
        console.print(f"note: {note}", style="yellow", highlight=False, markup=False)

