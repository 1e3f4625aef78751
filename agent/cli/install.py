"""``otactl install DIR [--yes]``: a campaign from a local release directory (``otactl release build``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from agent.cli._engine import engine_client
from agent.cli.watch import follow
from agent.errors import ConfigurationError

ORDER = 13


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("install", help="install a local release directory (ota-agent; workshop, bench)")
    p.add_argument("release_dir", metavar="DIR", help="a release directory built by 'otactl release build'")
    p.add_argument("--release", help="the release to install when the directory holds several")
    p.add_argument("--yes", action="store_true", help="do not ask the driver for consent")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from agent.cli._console import console

    release = Path(args.release_dir).resolve()
    if not release.is_dir():
        raise ConfigurationError(f"not a directory: {release}", source=str(release))
    with engine_client() as client, client.subscribe("agent.campaign.state", "agent.campaign.progress") as events:
        params = {"release_dir": str(release), "yes": bool(args.yes)}
        if args.release:
            params["release"] = args.release
        cid = client.call("agent.install", params)["campaign_id"]
        console().print(f"campaign {cid} started")
        return follow(client, events, cid)
