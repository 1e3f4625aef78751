"""``otactl daemons up|down|status [--config STACK.yaml] [--json]``: the bench supervisor.

Starts the stack's five daemons (``ota-update-agent``, ``ota-dmclient``,
``ota-system-agent``, ``ota-hmi-agent``, ``ota-agent``) as processes with the stack
config, waits for each one's ``daemon.ping``, records pids and logs in the runtime dir
(see :mod:`agent.runtime.supervisor`); ``down`` stops them (SIGTERM, then SIGKILL with
a message); ``status`` pings each. Bench only: on a board systemd runs the units in
``configs/systemd/``. The config defaults to ``$OTA_STACK_CONFIG``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from rich.table import Table

from agent.cli._console import console
from agent.errors import ConfigurationError
from agent.runtime.supervisor import DaemonReport, Supervisor

ORDER = 40
ENV_STACK = "OTA_STACK_CONFIG"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("daemons", help="start, stop or check the stack's daemons (bench supervisor)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("up", "down", "status"))
    p.add_argument("--config", metavar="STACK.yaml", help=f"the stack config (default: ${ENV_STACK})")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S",
                   help="up: s to wait for each daemon's ping; down: s between SIGTERM and SIGKILL (default 30)")
    p.set_defaults(func=run)


def stack_config(option: str | None) -> Path:
    value = option or os.environ.get(ENV_STACK)
    if not value:
        raise ConfigurationError(f"no stack config: give --config STACK.yaml or set ${ENV_STACK}")
    return Path(value)


def run(args: argparse.Namespace) -> int:
    out = console()
    say = (lambda text: None) if args.json else (lambda text: out.print(text, highlight=False))
    sup = Supervisor(stack_config(args.config), ready_timeout=args.timeout, grace=args.timeout, say=say)
    reports: list[DaemonReport] = getattr(sup, args.action)()
    if args.json:
        print(json.dumps({"runtime_dir": str(sup.runtime_dir), "daemons": [r.to_json() for r in reports]},
                         indent=2))
    else:
        table = Table(title=f"daemons ({sup.runtime_dir})")
        for column in ("daemon", "state", "pid", "detail", "log"):
            table.add_column(column)
        for r in reports:
            table.add_row(r.name, r.state, str(r.pid or ""), r.detail, r.log or "")
        out.print(table)
    bad = {"missing", "failed"} if args.action != "down" else set()
    if args.action == "status":
        bad.add("not-running")
    return 1 if any(r.state in bad for r in reports) else 0
