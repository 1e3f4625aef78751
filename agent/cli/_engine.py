"""Shared by the campaign subcommands (``otactl status|check|update|install|watch|cancel|rollback|history``).

A blocking IPC client for ``ota-agent`` with a clear error when the engine is not
running, and the rich renderings of a campaign (header, per-ECU table, progress
bars) that ``status``, ``update`` and ``watch`` share.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from agent.errors import TransportError
from agent.ipc.paths import socket_path

DAEMON = "agent"
#: how each campaign result maps to otactl's exit code
RESULT_EXIT = {"succeeded": 0, "nothing": 0, "rolled_back": 3, "partial": 4, "failed": 1, "cancelled": 5,
               "postponed": 6, "declined": 6}


@contextmanager
def engine_client(call_timeout: float = 180.0) -> Iterator[Any]:
    """A connected blocking client of ota-agent, or ``error: ota-agent is not running ...``."""
    from agent.ipc.sync import SyncClient

    path = socket_path(DAEMON)
    client = SyncClient(path, daemon=DAEMON, call_timeout=call_timeout)
    try:
        client.connect()
    except TransportError as e:
        client.close()
        raise TransportError(f"ota-agent is not running (no answer on {path}: {e}); start the stack with "
                             "'otactl daemons up --config STACK.yaml' or 'ota-agent --config FILE' (and set "
                             "$OTA_RUNTIME_DIR if it uses another runtime directory)") from e
    try:
        yield client
    finally:
        client.close()


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def campaign_header(c: Mapping[str, Any]) -> str:
    line = (f"campaign {c['id']} ({c['kind']}): {c['from_version'] or '?'} -> {c['to_version'] or '?'}  "
            f"[{c['phase'] if c['state'] == 'running' else c['result']}]")
    if c.get("ending"):
        line += f"  ending: {c['ending']}"
    if c.get("detail") and c["state"] == "ended":
        line += f"\n  {c['detail']}"
    return line


def ecu_table(c: Mapping[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title=None, show_lines=False)
    for col in ("ECU", "state", "step", "progress", "attempts", "job"):
        table.add_column(col, justify="right" if col in ("progress", "attempts") else "left")
    for ecu, s in sorted(c["ecus"].items()):
        total = s["bytes_total"]
        progress = f"{100 * s['bytes_done'] / total:.0f}% of {human_bytes(total)}" if total else "-"
        state = f"{s['outcome']} ({s['note']})" if s.get("note") else s["outcome"]
        table.add_row(ecu, state, s["step"] or "-", progress, str(s["attempts"]), s["job_id"] or "-")
    return table
