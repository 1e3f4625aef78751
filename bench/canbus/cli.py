"""``otactl bench bus-faults``: set or show a running bench hub channel's fault injection.

Found by :mod:`agent.cli.bench`. Talks to the channel's control socket
(:mod:`bench.canbus.control`); the channel is a name under the hub directory
(``$OTA_BENCH_HUB_DIR``) as for ``can.Bus(interface="benchhub")``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from bench.canbus.faults import KINDS

ORDER = 30


def _ids(text: str) -> list[int]:
    try:
        return [int(part, 0) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected arbitration IDs like 0x7E0,0x7E8, got {text!r}") from None


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "bus-faults", help="set or show the fault injection of a running bench bus channel",
        description="Drop, delay, error (detected: retransmitted late) or corrupt (undetected: one data bit "
                    "flipped) frames on a bench bus channel at a seeded rate per frame. Without a rate or "
                    "--off it shows the setting and the counters of injected faults.")
    p.add_argument("--channel", required=True, help="bench bus channel (e.g. powertrain)")
    for kind in KINDS:
        p.add_argument(f"--{kind}", type=float, default=None, metavar="RATE", help=f"{kind} rate per frame (0..1)")
    p.add_argument("--delay-time", type=float, default=None, metavar="S", help="seconds a delayed frame waits")
    p.add_argument("--ids", type=_ids, default=None, metavar="ID,ID", help="only frames with these arbitration IDs")
    p.add_argument("--seed", type=int, default=None, help="seed of the channel's random generator")
    p.add_argument("--off", action="store_true", help="stop injecting (the counters stay)")
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bench.canbus.control import fault_status, set_faults

    spec: dict[str, Any] = {kind: getattr(args, kind) for kind in KINDS if getattr(args, kind) is not None}
    for key in ("delay_time", "ids", "seed"):
        if getattr(args, key) is not None:
            spec[key] = getattr(args, key)
    if args.off and spec:
        from agent.errors import ConfigurationError

        raise ConfigurationError("--off takes no rates: it turns every fault off")
    status = set_faults(args.channel, **spec) if spec or args.off else fault_status(args.channel)
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    faults = status["faults"]
    rates = ", ".join(f"{k} {faults[k]:g}" for k in KINDS if faults[k]) or "off"
    ids = "every frame" if faults["ids"] is None else ", ".join(f"{i:#x}" for i in faults["ids"])
    counters = status["counters"]
    print(f"channel {status['channel']}: {rates} (delay {faults['delay_time']:g} s, seed {faults['seed']}, {ids})")
    print(f"frames carried {status['carried']}, judged {counters['frames']}, injected: "
          + ", ".join(f"{k} {counters[k]}" for k in KINDS))
    return 0
