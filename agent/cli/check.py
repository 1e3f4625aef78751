"""``otactl check [--json]``: ECU versions, baseline match and the Uptane check; nothing is installed."""

from __future__ import annotations

import argparse
import json
from typing import Any

from agent.cli._engine import engine_client, human_bytes

ORDER = 11


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("check", help="check for an update for this vehicle (ota-agent)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from agent.cli._console import console

    with engine_client() as client:
        result = client.call("agent.check")
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    if result["status"] == "nothing":
        console().print(f"vehicle version {result['vehicle_version']}: up to date, nothing to install")
        return 0
    if result.get("kind") == "configuration":
        console().print(f"configuration campaign available for {result['vehicle_version']} (the version stays)")
    else:
        console().print(f"update available: {result['vehicle_version']} -> {result['target_vehicle_version']}")
    for e in result["ecus"]:
        console().print(f"  {e['ecu']:<12} {e['software_version']:<10} {human_bytes(e['length']):>10}  "
                      f"({e['release']})")
    for item, value in sorted((result.get("config") or {}).items()):
        console().print(f"  configure {item} = {value}")
    return 0
