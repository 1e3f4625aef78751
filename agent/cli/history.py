"""``otactl history [--limit N] [--json]``: the engine's campaigns, newest first."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from agent.cli._engine import engine_client

ORDER = 16


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("history", help="past campaigns and their results (ota-agent)")
    p.add_argument("--limit", type=int, default=20, help="at most this many campaigns (default 20)")
    p.add_argument("--json", action="store_true", help="print the campaigns as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from agent.cli._console import console

    with engine_client() as client:
        campaigns = client.call("agent.history", {"limit": max(1, min(args.limit, 1000))})["campaigns"]
    if args.json:
        print(json.dumps(campaigns, indent=2))
        return 0
    table = Table(title="campaigns")
    for col in ("id", "started", "kind", "from", "to", "result", "ECUs", "detail"):
        table.add_column(col)
    for c in campaigns:
        ecus = ", ".join(f"{e}:{s['outcome']}" for e, s in sorted(c["ecus"].items()))
        table.add_row(c["id"], time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(c["created"])), c["kind"],
                      c["from_version"] or "-", c["to_version"] or "-", c["result"] or c["phase"], ecus or "-",
                      (c["detail"] or "")[:80])
    console().print(table)
    return 0
