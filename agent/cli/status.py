"""``otactl status [--json]``: the engine's running campaign (phase, versions, per-ECU state), or idle."""

from __future__ import annotations

import argparse
import json
from typing import Any

from agent.cli._engine import campaign_header, ecu_table, engine_client

ORDER = 10


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("status", help="the running campaign, or idle and the last result (ota-agent)")
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from agent.cli._console import console

    with engine_client() as client:
        status = client.call("agent.status")
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    campaign = status["campaign"]
    if campaign is None:
        console().print("idle")
        if status["last"]:
            console().print("last " + campaign_header(status["last"]))
        return 0
    console().print(campaign_header(campaign))
    if campaign["ecus"]:
        console().print(ecu_table(campaign))
    return 0
