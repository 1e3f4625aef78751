"""``otactl config list|get|set``: remote configuration of ECU features, without flashing.

``list`` shows the configuration items (``configs/bench-config-items.yaml``, or
``--items`` / ``$OTA_CONFIG_ITEMS``): how each is written (diagnostic: UDS
WriteDataByIdentifier per ECU; broadcast: one CAN message of the DBC) and the
ECUs and minimum software versions it needs. ``get`` reads the values every ECU
concerned holds now. ``set NAME=VALUE ...`` applies a change with the same
checks as a campaign: every ECU must run the minimum software version (else
nothing is written, exit 6), every ECU is read back, and if one refuses or does
not confirm, every ECU goes back to its previous value (exit 4 when an ECU
refused, 5 when a value did not read back).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.table import Table

from agent.cli._console import console
from agent.cli._library_logs import quiet_uds_libraries
from agent.config.locate import vehicle_config_path
from agent.config.vehicle import load_vehicle_config
from agent.errors import ConfigurationError, ProtocolError, VerificationError
from update_agent.remote_config.access import VehicleAccess, read_value
from update_agent.remote_config.change import ChangeResult, apply_change, plan_change
from update_agent.remote_config.items import Catalog, ConfigItem, items_path, load_items

ORDER = 35


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("config", help="remote configuration: list, read and set ECU feature switches",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="config_command", metavar="list|get|set")
    sub.required = True

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--config", metavar="FILE",
                       help="vehicle config (default: $OTA_VEHICLE_CONFIG, else the packaged bench vehicle)")
        q.add_argument("--items", metavar="FILE",
                       help="configuration items (default: $OTA_CONFIG_ITEMS, else the packaged bench items)")
        q.add_argument("--json", action="store_true", help="print the result as JSON on stdout")

    q = sub.add_parser("list", help="the configuration items and how each is written")
    common(q)
    q.set_defaults(func=run_list)
    q = sub.add_parser("get", help="read the values the ECUs hold now")
    q.add_argument("names", nargs="*", metavar="NAME", help="items (default: every item)")
    q.add_argument("--ecu", action="append", metavar="NAME", help="only this ECU (repeatable)")
    common(q)
    q.set_defaults(func=run_get)
    q = sub.add_parser("set", help="apply NAME=VALUE to every ECU concerned, read back, roll back on failure")
    q.add_argument("assignments", nargs="+", metavar="NAME=VALUE")
    q.add_argument("--ecu", action="append", metavar="NAME",
                   help="only this ECU (repeatable; diagnostic items only: a broadcast reaches all its ECUs)")
    common(q)
    q.set_defaults(func=run_set)


def _load(args: argparse.Namespace) -> tuple[Any, Catalog]:
    vehicle = load_vehicle_config(vehicle_config_path(args.config))
    return vehicle, load_items(items_path(args.items), vehicle)


def _item_row(item: ConfigItem) -> dict[str, Any]:
    how = f"{item.broadcast.message}.{item.broadcast.signal}" if item.broadcast else f"0x2E DID {item.did:04X}"
    return {"name": item.name, "method": item.method, "how": how, "read_back_did": f"{item.did:04X}",
            "values": item.encoding.describe(), "ecus": dict(item.ecus), "description": item.description}


def run_list(args: argparse.Namespace) -> int:
    _, catalog = _load(args)
    rows = [_item_row(item) for item in catalog]
    if args.json:
        print(json.dumps({"items_file": catalog.source, "items": rows}, indent=2))
        return 0
    table = Table(title=f"configuration items ({catalog.source})", title_justify="left")
    for column in ("item", "method", "written as", "values", "ECUs (minimum software)"):
        table.add_column(column)
    for r in rows:
        table.add_row(r["name"], r["method"], r["how"], r["values"],
                      ", ".join(f"{e} >= {v}" for e, v in r["ecus"].items()))
    console().print(table)
    return 0


def run_get(args: argparse.Namespace) -> int:
    vehicle, catalog = _load(args)
    items = [catalog.item(n) for n in args.names] if args.names else list(catalog)
    for name in args.ecu or []:
        vehicle.ecu(name)
    quiet_uds_libraries(list(vehicle.ecus), verbose=args.debug or args.verbose)
    with VehicleAccess(vehicle, catalog) as access:
        values = [read_value(access, item, ecu) for item in items for ecu in item.ecus
                  if not args.ecu or ecu in args.ecu]
    failed = [f"{v['item']}@{v['ecu']}: {v['error']}" for v in values if v["error"] is not None]
    if args.json:
        print(json.dumps({"values": values}, indent=2))
    else:
        table = Table(title="configuration values (UDS 0x22)", title_justify="left")
        for column in ("item", "ECU", "value", "raw"):
            table.add_column(column)
        for v in values:
            table.add_row(v["item"], v["ecu"], v["value"] if v["error"] is None else f"[red]{v['error']}",
                          v["raw"] or "-")
        console().print(table)
    if failed:
        raise ProtocolError("not read: " + "; ".join(failed))
    return 0


def parse_assignments(texts: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for text in texts:
        name, sep, value = text.partition("=")
        if not sep or not name or not value:
            raise ConfigurationError(f"expected NAME=VALUE, got {text!r}")
        pairs.append((name.strip(), value.strip()))
    return pairs


def run_set(args: argparse.Namespace) -> int:
    vehicle, catalog = _load(args)
    plan = plan_change(catalog, parse_assignments(args.assignments), args.ecu)
    quiet_uds_libraries(list(vehicle.ecus), verbose=args.debug or args.verbose)
    with VehicleAccess(vehicle, catalog) as access:
        result = apply_change(access, plan)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print_result(result)
    if not result.ok:
        refused = any(o.state == "refused" for o in result.outcomes)
        error = ProtocolError if refused else VerificationError
        raise error(f"change not applied ({result.state}): {result.reason}")
    return 0


def print_result(result: ChangeResult) -> None:
    table = Table(title=f"configuration change: {result.state}", title_justify="left")
    for column in ("item", "ECU", "previous", "wanted", "read back", "state"):
        table.add_column(column)
    for o in result.outcomes:
        table.add_row(o.item, o.ecu, o.previous or "-", o.wanted or "-", o.read_back or "-",
                      o.state + (f" ({o.error})" if o.error else ""))
    console().print(table)
