"""``otactl download URL --sha256 H --length N``: fetch one image into the package cache.

The command talks to the running ``ota-dmclient`` over IPC (``$OTA_RUNTIME_DIR``/
``dmclient.sock``): it sends a one-target download order, follows the target's progress
events with a progress bar (bytes, rate, ETA) and ends with the verified image's cache
path. With ``--json`` it prints the target's final status as one JSON object instead.

There is deliberately no in-process fallback when the daemon is not running: only
``ota-dmclient`` holds the vehicle's network credentials (client key, OEM CA) and the
package cache, as the architecture says, and a second writer of the cache and the state
database would race the daemon. The command says how to start the daemon instead.

Interrupting the command (Ctrl-C) does not stop the download: the daemon carries on, and
``otactl downloads`` shows it. ``--no-wait`` queues the order and returns at once.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import agent.errors
import dmclient.errors
from agent.errors import OtaError, TransportError
from agent.ipc.paths import socket_path

ORDER = 40
DAEMON = "dmclient"
_FINAL = ("done", "failed", "cancelled")


@contextmanager
def dmclient_client() -> Iterator[Any]:
    """A connected blocking IPC client for ota-dmclient, or a clear error if it is not running."""
    from agent.ipc.sync import SyncClient

    path = socket_path(DAEMON)
    client = SyncClient(path, daemon=DAEMON, call_timeout=60.0)
    try:
        client.connect()
    except TransportError as e:
        client.close()
        raise TransportError(f"ota-dmclient is not running (no answer on {path}: {e}); start it with "
                             "'ota-dmclient --config FILE' (and set $OTA_RUNTIME_DIR if it uses another "
                             "runtime directory)") from e
    try:
        yield client
    finally:
        client.close()


def error_of(status: dict[str, Any]) -> OtaError:
    """The project error a failed target's ``error`` text names (``"VerificationError: ..."``)."""
    text = status.get("error") or f"download {status.get('state')}"
    kind, _, message = text.partition(": ")
    cls = getattr(dmclient.errors, kind, None) or getattr(agent.errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, OtaError):
        try:
            return cls(f"{status['name']}: {message}")
        except TypeError:  # leaves with extra constructor fields
            pass
    return OtaError(f"{status['name']}: {text}")


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def follow(client: Any, sub: Any, target_id: str, *, show_progress: bool) -> dict[str, Any]:
    """Wait for the target's final state; a rich progress bar on the terminal meanwhile."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    status: dict[str, Any] = client.call("dmclient.download.status", {"ids": [target_id]})["targets"][0]
    if status["state"] in _FINAL:
        return status
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(binary_units=True),
               TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not show_progress, transient=False) as bar:
        task = bar.add_task(f"{status['name']} ({status['state']})", total=status["total"] or None)
        for event in sub:
            if event.event == "dmclient.download.progress":
                for t in event.params["targets"]:
                    if t["id"] == target_id:
                        bar.update(task, completed=t["bytes"], total=t["total"],
                                   description=f"{t['name']} ({t['state']})")
            elif event.params["target"]["id"] == target_id:
                status = event.params["target"]
                bar.update(task, description=f"{status['name']} ({status['state']})")
                if status["state"] in _FINAL:
                    if status["state"] == "done":
                        bar.update(task, completed=status["total"], total=status["total"])
                    return status
    raise TransportError("ota-dmclient went away before the download ended; it resumes the download "
                         "when it restarts ('otactl downloads' shows it)")


def run(args: argparse.Namespace) -> int:
    hashes = {"sha256": args.sha256.lower()}
    if args.sha512:
        hashes["sha512"] = args.sha512.lower()
    target: dict[str, Any] = {"url": args.url, "length": args.length, "hashes": hashes}
    if args.name:
        target["name"] = args.name
    params: dict[str, Any] = {"targets": [target]}
    if args.pin:
        params["pin"] = args.pin
    with dmclient_client() as client:
        if args.no_wait:
            result = client.call("dmclient.download.start", params)
            print(json.dumps(result, indent=2) if args.json else
                  f"queued {result['targets'][0]['id']} (order {result['order']})")
            return 0
        with client.subscribe("dmclient.download.progress", "dmclient.download.state") as sub:
            result = client.call("dmclient.download.start", params)
            target_id = result["targets"][0]["id"]
            try:
                status = follow(client, sub, target_id, show_progress=not args.json and sys.stderr.isatty())
            except KeyboardInterrupt:
                print(f"\nthe download continues in ota-dmclient as {target_id}; 'otactl downloads' shows it",
                      file=sys.stderr)
                raise
    if args.json:
        print(json.dumps(status, indent=2))
    if status["state"] != "done":
        if args.json:
            return error_of(status).exit_code
        raise error_of(status)
    if not args.json:
        for note in status["notes"]:
            print(f"note: {note}")
        print(f"{status['path']}  ({human_bytes(status['length'])}, {status['source']}, sha256 verified"
              f"{', sha512 verified' if args.sha512 else ''})")
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("download", help="download one image into the package cache (via ota-dmclient)",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="https:// URL, or a path on the backend configured in ota-dmclient")
    parser.add_argument("--sha256", required=True, help="expected SHA-256 (hex)")
    parser.add_argument("--length", required=True, type=int, help="expected length in bytes (hard cap)")
    parser.add_argument("--sha512", help="expected SHA-512 (hex), checked too")
    parser.add_argument("--name", help="a label for the target (default: start of the SHA-256)")
    parser.add_argument("--pin", metavar="OWNER", help="pin the image in the cache, e.g. campaign:42")
    parser.add_argument("--no-wait", action="store_true", help="queue the download and return")
    parser.add_argument("--json", action="store_true", help="print the final status as JSON (no progress bar)")
    parser.set_defaults(func=run)
