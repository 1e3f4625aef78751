"""``otactl bench stack [--daemons] [--fail-ecu NAME] [--start VERSION] [--keep]``: the whole bench, held open.

Builds :class:`bench.scenario.Scenario` (PKI, releases, route, HTTPS backend, bench bus,
simulated ECUs, the rendered stack config), optionally starts the five daemons with the
bench supervisor, prints the environment to join it (``export OTA_STACK_CONFIG=...``:
then ``otactl daemons status``, ``otactl consent ...`` and the engine's commands work
from another shell), then ``bench stack ready: <stack config>``, and holds everything
until SIGINT / SIGTERM, when it stops the daemons and the bench and removes the directory.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import threading
from typing import Any

from bench.scenario import ECU_VERSIONS, ROUTE, V1, Scenario, ScenarioOptions, failing_flash

ORDER = 30
SHOWN_ENV = ("OTA_STACK_CONFIG", "OTA_RUNTIME_DIR", "OTA_BENCH_HUB_DIR", "OTA_VEHICLE_CONFIG",
             "OTA_SW_BASELINE", "OTA_HW_BASELINE", "OTA_UPDATE_AGENT_STATE_DIR")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("stack", help="the whole bench (backend, releases, ECUs, stack config), held open",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--daemons", action="store_true", help="also start the five daemons (otactl daemons up)")
    p.add_argument("--fail-ecu", metavar="NAME", choices=sorted(ECU_VERSIONS[V1]),
                   help="give this ECU a wrong-CRC fault on every flash")
    p.add_argument("--start", metavar="VERSION", choices=ROUTE, default=V1,
                   help=f"the vehicle version the ECUs start at (default {V1!r})")
    p.add_argument("--image-size", type=int, default=16 * 1024, metavar="BYTES")
    p.add_argument("--keep", action="store_true", help="keep the directory after stopping")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from agent.runtime.supervisor import Supervisor

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda signum, frame: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        faults = {args.fail_ecu: failing_flash()} if args.fail_ecu else {}
        with Scenario(ScenarioOptions(start_version=args.start, faults=faults, image_size=args.image_size,
                                      keep=args.keep)) as scenario:
            supervisor = None
            if args.daemons:
                supervisor = Supervisor(scenario.stack_config, env=scenario.env, say=print)
                supervisor.up()
            try:
                env = scenario.env
                for name in SHOWN_ENV:
                    print(f"export {name}={shlex.quote(env[name])}")
                print(f"bench stack ready: {scenario.stack_config}", flush=True)
                stop.wait()
            finally:
                if supervisor is not None:
                    supervisor.down()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
