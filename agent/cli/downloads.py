"""``otactl downloads``: the download manager's targets (and ``--cache``: the package cache).

Talks to the running ``ota-dmclient`` over IPC (see :mod:`agent.cli.download`). Without
options it lists every target with its state, bytes, rate and ETA; ``--pause``,
``--resume`` and ``--cancel`` take target or order ids (repeatable) and then list those;
``--cache`` lists the verified images in the cache with their pins. ``--json`` prints the
data as JSON for scripts.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from agent.cli.download import dmclient_client, human_bytes

ORDER = 41


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    m, s = divmod(int(seconds), 60)
    return f"{m}:{s:02d}"


def _targets_table(targets: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(title="downloads", show_lines=False)
    table.add_column("id", no_wrap=True, min_width=14)
    for col in ("name", "state", "bytes", "rate", "eta", "source / error"):
        table.add_column(col, justify="right" if col in ("bytes", "rate", "eta") else "left")
    for t in targets:
        done = f"{human_bytes(t['bytes'])} / {human_bytes(t['total'])}" if t["total"] else "-"
        rate = f"{human_bytes(t['rate'])}/s" if t["rate"] else "-"
        detail = t["error"] or t["source"] or ""
        table.add_row(t["id"], t["name"], t["state"], done, rate, _eta(t["eta"]), detail)
    return table


def _cache_table(cache: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title=f"package cache: {human_bytes(cache['used'])} of {human_bytes(cache['budget'])}")
    for col in ("sha256", "size", "pins", "path"):
        table.add_column(col, justify="right" if col == "size" else "left")
    for e in cache["entries"]:
        table.add_row(e["sha256"][:16], human_bytes(e["size"]), ", ".join(e["pins"]) or "-", e["path"])
    return table


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    with dmclient_client() as client:
        if args.cache:
            data: Any = client.call("dmclient.cache.list")
            table = _cache_table(data)
        else:
            targets = None
            for action, ids in (("pause", args.pause), ("resume", args.resume), ("cancel", args.cancel)):
                if ids:
                    targets = client.call(f"dmclient.download.{action}", {"ids": ids})["targets"]
            if targets is None:
                targets = client.call("dmclient.download.status", {})["targets"]
            data = {"targets": targets}
            table = _targets_table(targets)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        Console().print(table)
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("downloads", help="list, pause, resume or cancel downloads; list the cache",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--pause", action="append", metavar="ID", help="pause a target or order (repeatable)")
    parser.add_argument("--resume", action="append", metavar="ID", help="resume (or retry) a target or order")
    parser.add_argument("--cancel", action="append", metavar="ID", help="cancel a target or order")
    parser.add_argument("--cache", action="store_true", help="list the package cache instead")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=run)
