"""``otactl watch``: live progress of the running campaign, one bar per ECU (rich).

Also what ``otactl update`` / ``install`` / ``rollback`` use to follow the campaign
they started: events ``agent.campaign.state`` and ``agent.campaign.progress`` from
the engine, until the campaign ends; the exit code is the campaign's result.
"""

from __future__ import annotations

import argparse
from typing import Any

from agent.cli._engine import RESULT_EXIT, campaign_header, ecu_table, engine_client

ORDER = 17


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("watch", help="live progress of the running campaign (ota-agent)")
    p.set_defaults(func=run)


def follow(client: Any, events: Any, campaign_id: str) -> int:
    """Show the campaign's phases and per-ECU progress bars until it ends; its result's exit code."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    from agent.cli._console import console

    tasks: dict[str, Any] = {}
    with Progress(TextColumn("{task.description:<24}"), BarColumn(), DownloadColumn(),
                  TextColumn("{task.fields[step]}"), console=console(), transient=False) as bars:
        # the campaign may have moved before we subscribed: start from its status
        status = client.call("agent.status")
        current = status["campaign"]
        if current is None or current["id"] != campaign_id:
            last = status["last"]
            if last is not None and last["id"] == campaign_id:
                console().print(campaign_header(last))
                return RESULT_EXIT.get(last["result"], 1)
        for event in events:
            p = event.params
            if p["campaign_id"] != campaign_id:
                continue
            if event.event == "agent.campaign.progress":
                name = p["ecu"] or "download"
                # an ECU's bar: its flash, or the download of a Linux ECU that downloads its package itself
                label = f"{'download' if p['step'] == 'download' else 'flash'} {name}" if p["ecu"] else "download"
                if name not in tasks:
                    tasks[name] = bars.add_task(label, total=p["bytes_total"] or None, step=p["step"])
                bars.update(tasks[name], completed=p["bytes_done"], total=p["bytes_total"] or None, step=p["step"])
                continue
            if p["state"] == "done":
                break
            console().print(f"[bold]{p['state']}[/bold]" + (f"  ({p['ending']})" if p.get("ending") else ""))
    final = client.call("agent.history", {"limit": 5})["campaigns"]
    record = next((c for c in final if c["id"] == campaign_id), None)
    if record is None:
        console().print(f"campaign {campaign_id}: the engine went away before it ended")
        return 1
    console().print(campaign_header(record))
    if record["ecus"]:
        console().print(ecu_table(record))
    return RESULT_EXIT.get(record["result"], 1)


def run(args: argparse.Namespace) -> int:
    from agent.cli._console import console

    with engine_client() as client, client.subscribe("agent.campaign.state", "agent.campaign.progress") as events:
        status = client.call("agent.status")
        if status["campaign"] is None:
            console().print("idle: no campaign is running")
            return 0
        console().print(campaign_header(status["campaign"]))
        return follow(client, events, status["campaign"]["id"])
