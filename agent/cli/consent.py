"""``otactl consent accept|postpone|decline|status [--campaign ID] [--json]``: answer a campaign offer.

Talks to ``ota-hmi-agent`` (``hmi_agent.consent.answer``), as an engineer at the bench
or in the workshop would; without ``--campaign`` it answers the one offer waiting. The
answer is kept in the HMI agent's audit trail with its source (``cli:<user>`` and the
caller's uid as the kernel reports it). ``status`` shows offers and the audit trail.
"""

from __future__ import annotations

import argparse
import getpass
import json
import time
from typing import Any

from rich.table import Table

from agent.cli._console import console
from agent.ipc.sync import SyncClient

ORDER = 45
ANSWERS = {"accept": "accepted", "postpone": "postponed", "decline": "declined"}


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("consent", help="answer or show campaign consent (ota-hmi-agent)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=(*ANSWERS, "status"))
    p.add_argument("--campaign", metavar="ID", help="the campaign (default: the one offer waiting)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def _user() -> str:
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "unknown"
    return "".join(c for c in name if c.isalnum() or c in "._-")[:40] or "unknown"


def run(args: argparse.Namespace) -> int:
    out = console()
    with SyncClient.for_daemon("hmi_agent") as hmi:
        if args.action == "status":
            params = {"campaign_id": args.campaign} if args.campaign else {}
            result = hmi.call("hmi_agent.consent.status", params)
        else:
            params = {"decision": ANSWERS[args.action], "source": f"cli:{_user()}"}
            if args.campaign:
                params["campaign_id"] = args.campaign
            result = hmi.call("hmi_agent.consent.answer", params)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    if args.action != "status":
        out.print(f"campaign {result['campaign_id']}: {result['decision']} ({result['source']})", highlight=False)
        return 0
    table = Table(title=f"consent (policy {result['policy']})")
    for column in ("campaign", "decision", "source", "to version", "postponed"):
        table.add_column(column)
    for c in result["consents"]:
        table.add_row(c["campaign_id"], c["decision"], c["source"], str(c["offer"].get("to_version", "")),
                      str(c["postponements"]))
    out.print(table)
    trail = Table(title="audit trail (newest first)")
    for column in ("time", "campaign", "decision", "source", "detail"):
        trail.add_column(column)
    for a in result["audit"]:
        trail.add_row(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(a["at"])), a["campaign_id"], a["decision"],
                      a["source"], a["detail"] or "")
    out.print(trail)
    return 0
