"""``otactl bench ecus`` and ``otactl bench bus``: the simulated ECUs and the bench bus in the foreground.

Found by :mod:`agent.cli.bench`, which collects the ``cli`` module of every
``bench`` sub-package. Heavy imports (python-can, can-isotp) happen when a
command runs, so ``otactl --help`` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ORDER = 10
STATE_ENV = "OTA_BENCH_STATE_DIR"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "ecus", help="run the simulated ECUs (UDS bootloaders) of a vehicle config",
        description="Run the simulated ECU bootloaders of a vehicle config in the foreground. Prints "
                    "'bench ready: <ecus>' when every ECU listens; SIGTERM / Ctrl-C stop it cleanly.")
    p.add_argument("--config", required=True, type=Path, help="vehicle config (YAML) with sim: sections")
    p.add_argument("--state-dir", type=Path, default=None,
                   help=f"where flash contents persist (default: ${STATE_ENV}, else "
                        "~/.local/state/ota-bench/<config name>)")
    p.add_argument("--ecu", action="append", dest="ecus", metavar="NAME",
                   help="simulate only this ECU (repeatable; default: every ECU with a sim: section)")
    p.add_argument("--no-hub", action="store_true",
                   help="join a bench hub that is already running instead of starting one")
    p.set_defaults(func=run_ecus)

    p = subparsers.add_parser(
        "bus", help="run only the bench hub for the config's benchhub buses",
        description="Run the bench CAN hub for every bus of the config whose interface is benchhub. "
                    "Prints 'bench bus ready: <channels>' when it listens.")
    p.add_argument("--config", required=True, type=Path, help="vehicle config (YAML)")
    p.add_argument("--faults", type=Path, default=None, metavar="FILE",
                   help="fault injection per channel (YAML: {CHANNEL: {drop: 0.01, delay: 0, error: 0, "
                        "corrupt: 0, delay_time: 0.005, ids: [0x7E0], seed: 1}}); change it at run time "
                        "with 'otactl bench bus-faults'")
    p.set_defaults(func=run_bus)


def default_state_dir(config: Path) -> Path:
    env = os.environ.get(STATE_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "ota-bench" / config.stem


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[threading.Event]:
    """Set ``stop`` on SIGTERM / SIGINT while the block runs (from before start-up on)."""

    def handler(signum: int, frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _wait(stop: threading.Event) -> None:
    while not stop.wait(1.0):
        pass


def run_ecus(args: argparse.Namespace) -> int:
    from agent.config.vehicle import load_vehicle_config
    from agent.errors import TransportError
    from bench.ecu.host import BenchHost

    config = load_vehicle_config(args.config)
    state_dir = args.state_dir or default_state_dir(args.config)
    host = BenchHost(config, state_dir, ecus=args.ecus, hub=not args.no_hub)
    with _stop_on_signals(host.stop_event) as stop:  # a failing bus sets it too (host.failure says why)
        host.start()
        try:
            if not stop.is_set():
                print(f"bench ready: {','.join(host.names)}", flush=True)
                print(f"state in {state_dir}", file=sys.stderr, flush=True)
            _wait(stop)
        finally:
            host.stop()
    if host.failure:
        raise TransportError(host.failure)
    return 0


def run_bus(args: argparse.Namespace) -> int:
    from agent.config.vehicle import load_vehicle_config
    from agent.errors import ConfigurationError
    from bench.ecu.host import hub_channels, start_hub

    config = load_vehicle_config(args.config)
    channels = hub_channels(config)
    if not channels:
        raise ConfigurationError("no bus uses the benchhub interface", source=config.source)
    faults = None
    if args.faults is not None:
        from agent.config.node import load_yaml
        from bench.canbus.faults import parse_channels

        faults = parse_channels(load_yaml(args.faults).data, source=str(args.faults))
        unknown = sorted(set(faults) - set(channels))
        if unknown:
            raise ConfigurationError(f"faults for channel {unknown[0]!r}, not a benchhub bus of "
                                     f"{config.source} ({', '.join(channels)})", source=str(args.faults))
    with _stop_on_signals(threading.Event()) as stop:
        hub = start_hub(channels, faults)
        try:
            if not stop.is_set():
                print(f"bench bus ready: {','.join(channels)}", flush=True)
            _wait(stop)
        finally:
            hub.stop()
    return 0
