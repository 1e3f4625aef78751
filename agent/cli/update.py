"""``otactl update [--yes] [--no-follow]``: start a campaign and follow it to its end.

The exit code says how it ended: 0 succeeded (or nothing to do), 3 rolled back to the
old vehicle version, 4 partially installed, 5 cancelled, 6 postponed or declined by the
driver, 1 failed.
"""

from __future__ import annotations

import argparse
from typing import Any

from agent.cli._engine import engine_client
from agent.cli.watch import follow

ORDER = 12


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("update", help="check, download and install the next vehicle version (ota-agent)")
    p.add_argument("--yes", action="store_true", help="do not ask the driver for consent (bench, workshop)")
    p.add_argument("--no-follow", action="store_true", help="start the campaign and return at once")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from agent.cli._console import console

    with engine_client() as client, client.subscribe("agent.campaign.state", "agent.campaign.progress") as events:
        cid = client.call("agent.update", {"yes": bool(args.yes)})["campaign_id"]
        console().print(f"campaign {cid} started")
        if args.no_follow:
            return 0
        return follow(client, events, cid)
