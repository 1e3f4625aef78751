"""``otactl cancel``: cancel the running campaign at a safe point (else the engine says why not)."""

from __future__ import annotations

import argparse
from typing import Any

from agent.cli._engine import engine_client

ORDER = 14


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("cancel", help="cancel the running campaign at a safe point (ota-agent)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from agent.cli._console import console

    with engine_client() as client:
        answer = client.call("agent.cancel")
    console().print(f"campaign {answer['campaign_id']}: {answer['detail']}")
    return 0
