"""``otactl versions``: the version DIDs of every configured ECU, read over UDS.

ECUs that do not answer are listed as such and the others are still shown;
the exit code is then 3 (transport branch), so a script sees that the
picture is incomplete.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console
from rich.table import Table

from agent.cli._console import console
from agent.cli._library_logs import quiet_uds_libraries
from agent.config.locate import vehicle_config_path
from agent.config.vehicle import load_vehicle_config
from agent.errors import ConfigurationError, OtaTimeoutError
from update_agent.versions import EcuVersions, read_versions, select_ecus

ORDER = 20


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("versions", help="read ECU versions over UDS", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ecu", action="append", metavar="NAME",
                   help="only this ECU (repeatable; default: every configured ECU)")
    p.add_argument("--config", metavar="FILE",
                   help="vehicle config (default: $OTA_VEHICLE_CONFIG, else the packaged bench vehicle)")
    p.add_argument("--timeout", type=float, metavar="S",
                   help="per-ECU answer timeout (default: each ECU's timing.request_timeout)")
    p.add_argument("--json", action="store_true", help="print the versions as JSON on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    vehicle = load_vehicle_config(vehicle_config_path(args.config))
    ecus = select_ecus(vehicle, args.ecu)  # unknown ECU: ConfigurationError
    if args.timeout is not None and args.timeout <= 0:
        raise ConfigurationError(f"--timeout must be > 0, got {args.timeout:g}")
    quiet_uds_libraries([e.name for e in ecus], verbose=args.debug or args.verbose)
    found = read_versions(vehicle, [e.name for e in ecus], timeout=args.timeout)
    if args.json:
        print(json.dumps({"config": vehicle.source, "ecus": [v.to_dict() for v in found]}, indent=2))
    else:
        print_versions(console(), found)
    silent = [v for v in found if not v.answering]
    if silent:
        raise OtaTimeoutError("not answering: " + "; ".join(f"{v.ecu} ({v.error})" for v in silent))
    return 0


def print_versions(out: Console, found: list[EcuVersions]) -> None:
    names: list[str] = []
    for v in found:
        names += [n for n in (*v.values, *v.errors) if n not in names]
    table = Table(title="ECU versions (UDS 0x22)", title_justify="left")
    table.add_column("ECU")
    table.add_column("bus")
    for name in names:
        table.add_column(name.replace("_", " "))
    table.add_column("status")
    for v in found:
        cells = [v.values.get(n, "[dim]-" if n not in v.errors else "[yellow]refused") for n in names]
        status = "[green]ok" if v.answering else f"[red]not answering[/red] ({v.error})"
        table.add_row(v.ecu, v.bus, *cells, status)
    out.print(table)
