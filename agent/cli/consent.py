"""``otactl consent accept|postpone|schedule WINDOW|decline|status [--campaign ID] [--json]``: answer an offer.

Talks to ``ota-hmi-agent`` (``hmi_agent.consent.answer``), as an engineer at the bench
or in the workshop would; without ``--campaign`` it answers the one offer waiting.
``schedule`` takes a window: ``02:00-04:00`` (daily, local time) or an ISO 8601
interval ``2026-11-22T02:00:00+01:00/2026-11-22T04:00:00+01:00``; the update is
accepted when it opens. The answer is kept in the HMI agent's audit trail with its
source (``cli:<user>`` and the caller's uid as the kernel reports it). ``status``
shows offers, the rules (postpone limit, maintenance windows) and the audit trail.
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
ANSWERS = {"accept": "accepted", "postpone": "postponed", "schedule": "scheduled", "decline": "declined"}


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("consent", help="answer or show campaign consent (ota-hmi-agent)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=(*ANSWERS, "status"))
    p.add_argument("window", nargs="?",
                   help="schedule: the window, right after the word schedule (HH:MM-HH:MM daily, or ISO START/END)")
    p.add_argument("--campaign", metavar="ID", help="the campaign (default: the one offer waiting)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def user_source(prefix: str) -> str:
    """``prefix:<login name>`` as an audit source."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "unknown"
    return f"{prefix}:" + ("".join(c for c in name if c.isalnum() or c in "._-")[:40] or "unknown")


def answer_params(action: str, window: str | None, source: str, campaign: str | None = None) -> dict[str, Any]:
    """The ``hmi_agent.consent.answer`` params of an ``accept|postpone|schedule|decline`` action."""
    params: dict[str, Any] = {"decision": ANSWERS[action], "source": source}
    if window is not None:
        params["window"] = window
    if campaign:
        params["campaign_id"] = campaign
    return params


def when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t is not None else ""


def decision_text(c: dict[str, Any]) -> str:
    """``scheduled 02:00-04:00 (opens ...)``, ``postponed until ...``: a decision with its time."""
    text = str(c["decision"])
    if c["decision"] == "scheduled":
        text += f" {c.get('window')} (opens {when(c.get('not_before'))})"
    elif c["decision"] == "postponed":
        text += f" until {when(c.get('not_before'))}"
    return text


def run(args: argparse.Namespace) -> int:
    out = console()
    if args.action == "schedule" and not args.window:
        out.print("error: schedule needs a WINDOW (HH:MM-HH:MM or ISO START/END)", style="red")
        return 2
    if args.action not in ("schedule",) and args.window:
        out.print(f"error: {args.action} takes no window", style="red")
        return 2
    with SyncClient.for_daemon("hmi_agent") as hmi:
        if args.action == "status":
            params = {"campaign_id": args.campaign} if args.campaign else {}
            result = hmi.call("hmi_agent.consent.status", params)
        else:
            result = hmi.call("hmi_agent.consent.answer",
                              answer_params(args.action, args.window, user_source("cli"), args.campaign))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    if args.action != "status":
        out.print(f"campaign {result['campaign_id']}: {decision_text(result)} ({result['source']})", highlight=False)
        return 0
    rules = result.get("rules") or {}
    title = f"consent (policy {result['policy']}"
    if rules:
        title += (f"; postpone up to {rules['postpone_limit']}x for {rules['postpone_interval']:g} s"
                  f"; maintenance windows: {', '.join(rules['maintenance_windows']) or 'none'}")
    table = Table(title=title + ")")
    for column in ("campaign", "decision", "source", "to version", "postponed", "mandatory"):
        table.add_column(column)
    for c in result["consents"]:
        mandatory = f"yes, due {when(c.get('deadline'))}" if c.get("mandatory") else "no"
        table.add_row(c["campaign_id"], decision_text(c), c["source"], str(c["offer"].get("to_version", "")),
                      str(c["postponements"]), mandatory)
    out.print(table)
    trail = Table(title="audit trail (newest first)")
    for column in ("time", "campaign", "decision", "source", "detail"):
        trail.add_column(column)
    for a in result["audit"]:
        trail.add_row(when(a["at"]), a["campaign_id"], a["decision"], a["source"], a["detail"] or "")
    out.print(trail)
    return 0
