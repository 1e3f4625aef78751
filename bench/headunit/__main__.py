"""``python -m bench.headunit --config STACK.yaml [--address IP] [--answer A]... [--until-result] [--record FILE]``.

A head unit as its own process on the bench: reads the HMI agent's ``hmi_agent.someip``
section of the stack config (SD group and port, service and instance id), becomes a SOME/IP
node at ``--address`` (default 127.0.0.30), finds the service, subscribes, prints
``headunit ready: HOST:PORT`` (the service's TCP endpoint) and then one JSON line per thing
that happened, also appended to ``--record``:

* ``{"kind": "offer" | "progress" | "result", "value": {...}}``: a notification, decoded;
* ``{"kind": "answer", "action": ..., "consent": {...}}``: an answer the service took;
* ``{"kind": "refused", "action": ..., "code": 34, "error": "E_POSTPONE_LIMIT (0x22): ..."}``.

When an offer becomes pending it answers with the next ``--answer`` (``accept``,
``postpone``, ``decline``, ``schedule=WINDOW``); a refused answer is followed by the next one,
as a driver would try again. ``--until-result`` exits 0 at the first result event; SIGTERM
ends it too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.cli.daemons import stack_config
from agent.cli.hmi import parse_answer
from agent.errors import OtaError, SomeIpError
from agent.runtime.config import load_config
from bench.headunit.client import HeadUnitClient
from hmi_agent.config import HmiConfig

DEFAULT_ADDRESS = "127.0.0.30"


class Recorder:
    def __init__(self, path: Path | None) -> None:
        self.file = path.open("a", encoding="utf-8") if path is not None else None

    def __call__(self, **entry: Any) -> None:
        line = json.dumps(entry, sort_keys=True)
        print(line, flush=True)
        if self.file is not None:
            self.file.write(line + "\n")
            self.file.flush()


async def answer_offer(client: HeadUnitClient, campaign_id: str, answers: Iterator[str], record: Recorder) -> None:
    """Answer a pending offer with the next answers until one is taken (or none is left)."""
    for text in answers:
        action, window = parse_answer(text)
        try:
            consent = await client.answer(action, window, campaign_id)
        except SomeIpError as e:
            record(kind="refused", action=action, code=e.return_code, error=str(e))
            continue
        record(kind="answer", action=action, consent=consent)
        return
    record(kind="unanswered", campaign_id=campaign_id)


async def serve(args: argparse.Namespace) -> int:
    settings = load_config(HmiConfig, "hmi_agent", stack_config(args.config)).someip
    if not settings.enabled:
        print(f"error: hmi_agent.someip is not enabled in {stack_config(args.config)}", file=sys.stderr)
        return 2
    for text in args.answer:
        parse_answer(text)  # a bad --answer fails now, not when the offer comes
    record = Recorder(args.record)
    answers = iter(args.answer)
    client = HeadUnitClient(settings, args.address)
    await client.start(timeout=args.timeout)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    endpoint = client.provider
    print(f"headunit ready: {endpoint[0]}:{endpoint[1]}" if endpoint else "headunit ready: ?", flush=True)
    decisions: dict[str, str] = {}
    try:
        while not stop.is_set():
            updates = asyncio.ensure_future(client.next_update(timeout=args.timeout))
            stopping = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({updates, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if updates not in done:
                updates.cancel()
                break
            stopping.cancel()
            update = updates.result()
            record(kind=update.kind, value=update.value)
            consent = (update.view or {}).get("consent") if update.kind == "offer" else None
            if consent is not None:
                cid = consent["campaign_id"]
                if consent["decision"] == "pending" and decisions.get(cid) != "pending":
                    await answer_offer(client, cid, answers, record)
                decisions[cid] = consent["decision"]
            if update.kind == "result" and args.until_result:
                return 0
    finally:
        await client.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.headunit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", metavar="STACK.yaml", help="the stack config (default: $OTA_STACK_CONFIG)")
    parser.add_argument("--address", default=DEFAULT_ADDRESS, help=f"this node's IPv4 address ({DEFAULT_ADDRESS})")
    parser.add_argument("--answer", action="append", default=[], metavar="ANSWER",
                        help="answer the next pending offer: accept | postpone | decline | schedule=WINDOW")
    parser.add_argument("--until-result", action="store_true", help="exit at the first result event")
    parser.add_argument("--record", type=Path, metavar="FILE", help="append every line to FILE (JSON lines)")
    parser.add_argument("--timeout", type=float, default=3600.0, metavar="S",
                        help="fail if the service is not found, or nothing arrives, for S seconds")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(serve(args))
    except (OtaError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 2)


if __name__ == "__main__":
    raise SystemExit(main())
