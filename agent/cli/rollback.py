"""``otactl rollback [--yes]``: roll the vehicle back to its previous vehicle version."""

from __future__ import annotations

import argparse
from typing import Any

from agent.cli._engine import engine_client
from agent.cli.watch import follow

ORDER = 15


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("rollback", help="roll the vehicle back to the previous vehicle version (ota-agent)")
    p.add_argument("--yes", action="store_true", help="do not ask the driver for consent")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from agent.cli._console import console

    with engine_client() as client, client.subscribe("agent.campaign.state", "agent.campaign.progress") as events:
        cid = client.call("agent.rollback", {"yes": bool(args.yes)})["campaign_id"]
        console().print(f"campaign {cid} started")
        return follow(client, events, cid)
