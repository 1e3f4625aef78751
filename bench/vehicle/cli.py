"""``otactl bench vehicle``: the vehicle simulator in the foreground (see :mod:`bench.vehicle.simulator`)."""

from __future__ import annotations

import argparse
import contextlib
import threading
from pathlib import Path
from typing import Any

ORDER = 20


def register(subparsers: Any) -> None:
    from bench.vehicle.scenarios import SCENARIOS

    p = subparsers.add_parser(
        "vehicle", help="run the vehicle simulator: speed, gear, battery, ignition, doors on the bench buses",
        description="Send the vehicle's signals (DBC messages) on every bus of a vehicle config, play a "
                    "scripted scenario, and react to OTA mode (gateway power hold, head unit, body "
                    "controller). Prints 'bench vehicle ready: <scenario>' once it sends; SIGTERM stops it. "
                    "Scenarios: " + "; ".join(f"{s.name}: {s.doc}" for s in SCENARIOS.values()))
    p.add_argument("--config", required=True, type=Path, help="vehicle config (YAML): its buses")
    p.add_argument("--dbc", type=Path, default=None,
                   help="DBC with the vehicle messages (default: the config's version_frames DBC)")
    p.add_argument("--scenario", default="parked", choices=sorted(SCENARIOS), help="scripted scenario")
    p.add_argument("--state-file", type=Path, default=None,
                   help="YAML signal: value; when given its values are sent (re-read when it changes)")
    p.add_argument("--power-hold", type=Path, default=None, metavar="FILE",
                   help="the keep-awake request file the gateway honours (the system agent's power_hold_file)")
    p.add_argument("--status", type=Path, default=None, metavar="FILE", help="write what happened here (JSON)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import can

    from agent.config.vehicle import load_vehicle_config
    from agent.errors import ConfigurationError
    from bench.ecu.cli import _stop_on_signals, _wait
    from bench.ecu.host import open_bus
    from bench.vehicle.scenarios import scenario
    from bench.vehicle.simulator import VehicleSimulator
    from update_agent.version_frame import load_dbc

    config = load_vehicle_config(args.config)
    dbc = args.dbc
    if dbc is None:
        if config.version_frames is None:
            raise ConfigurationError("no --dbc and no version_frames DBC in the vehicle config", source=config.source)
        dbc = config.version_frames.dbc
    db = load_dbc(dbc)
    request_ids = {ecu.isotp.tx_id for ecu in config.ecus.values() if ecu.isotp.tx_id is not None}
    with _stop_on_signals(threading.Event()) as stop:
        buses: dict[str, can.BusABC] = {}
        try:
            for name, bus_config in config.buses.items():
                buses[name] = open_bus(bus_config)
            sim = VehicleSimulator(buses, db, scenario(args.scenario), request_ids=request_ids,
                                   state_file=args.state_file, power_hold_file=args.power_hold,
                                   status_file=args.status)
            sim.start()
            try:
                if not stop.is_set():
                    print(f"bench vehicle ready: {args.scenario}", flush=True)
                _wait(stop)
            finally:
                sim.stop()
        finally:
            for bus in buses.values():
                with contextlib.suppress(Exception):
                    bus.shutdown()
    return 0
