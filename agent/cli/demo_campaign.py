"""The full ``otactl demo``: a whole bench, the five daemons, campaigns along the route, live progress.

Steps, each visible in the output:

1. :class:`bench.scenario.Scenario` in a temporary directory: bench PKI, two releases built
   with the release builder, the route ``BV OS D 1.0.0 -> 1.1.0 -> 1.2.0``, the bench
   backend (HTTPS, mutual TLS), the simulated ECUs on two buses (brake on A/B banks);
   ``--fail-ecu NAME`` gives that ECU a fault that fails its flash (wrong CRC);
2. the daemons as processes (:class:`agent.runtime.supervisor.Supervisor`), each awaited
   on its ``daemon.ping``;
3. the ECU versions and the vehicle version before (``update_agent.versions.read``,
   ``update_agent.baseline.match``);
4. campaigns (``agent.update {yes: true}``) while the check finds a next node on the route,
   with live per-ECU progress from ``agent.campaign.progress`` and the phases from
   ``agent.campaign.state``; after each, the per-ECU summary. A campaign that fails rolls
   the car back to its old vehicle version (all or nothing) and ends the walk;
5. the versions and vehicle version after; daemons stopped; the directory removed.

Exit code 0 when every campaign ended as expected: succeeded, or with ``--fail-ecu``
rolled back to the old vehicle version; 1 otherwise. Lines the tests read:
``vehicle version before: ...`` and ``vehicle version after: ...``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import yaml
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from agent.cli._console import console
from agent.errors import ConfigurationError, OtaTimeoutError
from agent.ipc.sync import SyncClient
from agent.runtime.supervisor import Supervisor
from bench.scenario import ECU_VERSIONS, STACK_TEMPLATE, V1, VEHICLE_TEMPLATE, Scenario, ScenarioOptions, failing_flash

CAMPAIGN_TIMEOUT = 300.0
MAX_CAMPAIGNS = 5
#: the demo's application images (``--image-size``): what ``benchmarks/campaign_overhead.py`` measures too
DEMO_IMAGE_SIZE = 64 * 1024
OUTCOME_STYLE = {"installed": "green", "rolled_back": "yellow", "untouched": "dim", "flash_failed": "red",
                 "rollback_failed": "bold red"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fail-ecu", metavar="NAME", choices=sorted(ECU_VERSIONS[V1]),
                   help="make this ECU's flash fail: the campaign rolls the car back")
    p.add_argument("--keep", action="store_true", help="keep the bench directory (logs, journal) for a look after")
    p.add_argument("--linux-ecu", action="store_true",
                   help="add the Linux ECU ivi (its own dmclient and update agent on SOME/IP): it downloads "
                        "its package from the backend itself, in the same campaign")


def run_full(args: argparse.Namespace) -> int:
    out = console()
    started = time.monotonic()
    faults: dict[str, dict[str, Any]] = {}
    if args.fail_ecu:
        faults[args.fail_ecu] = _fault_for(args.fail_ecu)
    options = ScenarioOptions(image_size=args.image_size, faults=faults, keep=args.keep,
                              log_level="debug" if args.debug else "info", linux_ecu=args.linux_ecu)
    out.rule("[bold]bench")
    with out.status("building the bench: PKI, releases, route, backend, simulated ECUs..."):
        scenario = Scenario(options)
        scenario.up()
    try:
        out.print(f"bench in {scenario.dir}: backend {scenario.backend_url}, ECUs engine + brake (A/B) on "
                  f"powertrain, body on body" + ("; Linux ECU ivi on SOME/IP (independent download)"
                                                 if args.linux_ecu else "")
                  + (f"; [red]{args.fail_ecu} will fail to flash[/]"
                                                 if args.fail_ecu else ""), highlight=False)
        sup = Supervisor(scenario.stack_config, env=scenario.env,
                         say=lambda text: out.print(f"  {text}", highlight=False))
        out.rule("[bold]daemons")
        sup.up()
        try:
            ok = _walk(out, scenario, args.fail_ecu)
        finally:
            out.rule("[bold]stopping")
            sup.down()
    finally:
        scenario.down()
    where = f"kept in {scenario.dir}" if args.keep else "temporary files removed"
    out.print(f"bench stopped, {where} ({time.monotonic() - started:.1f} s in all)", highlight=False)
    return 0 if ok else 1


def _fault_for(ecu: str) -> dict[str, Any]:
    """Always for an A/B ECU (its rollback flashes nothing: it finds the ECU still on its old bank, the
    failed flash never activated the new one, or switches banks); a single-bank ECU's rollback reflashes, so
    the fault must stop after the engine's flash attempts (2 in configs/bench-stack.yaml)."""
    stack = yaml.safe_load(STACK_TEMPLATE.read_text())
    attempts = int(stack.get("agent", {}).get("campaign", {}).get("flash_attempts", 2))
    banks = yaml.safe_load(VEHICLE_TEMPLATE.read_text())["ecus"][ecu]["banks"]
    return failing_flash("always" if banks == "ab" else attempts)


def _walk(out: Console, scenario: Scenario, fail_ecu: str | None) -> bool:
    rt = scenario.runtime_dir
    with SyncClient(rt / "update_agent.sock", daemon="update_agent", call_timeout=60) as ua, \
            SyncClient(rt / "agent.sock", daemon="agent", call_timeout=180) as engine:
        out.rule("[bold]before")
        before = _versions(out, ua)
        out.print(f"vehicle version before: {before}", highlight=False)
        ok = True
        for _ in range(MAX_CAMPAIGNS):
            check = engine.call("agent.check")
            if check["status"] == "nothing":
                out.print(f"the route ends at {check['vehicle_version']}: nothing more to install", highlight=False)
                break
            ecus = ", ".join(f"{e['ecu']} {e['software_version']}" for e in check["ecus"])
            out.rule(f"[bold]campaign {check['vehicle_version']} -> {check['target_vehicle_version']}")
            out.print(f"assignment: {ecus}", highlight=False)
            campaign = _campaign(out, engine)
            _summary(out, campaign)
            result = campaign.get("result")
            if result != "succeeded":
                expected = fail_ecu is not None and result == "rolled_back"
                ok = ok and expected
                break
        out.rule("[bold]after")
        after = _versions(out, ua)
        out.print(f"vehicle version after: {after}", highlight=False)
        if fail_ecu is None and after == before:
            ok = False
    return ok


def _versions(out: Console, ua: SyncClient) -> str:
    readings = ua.call("update_agent.versions.read")["ecus"]
    table = Table()
    for column in ("ECU", "part number", "software version", "answered"):
        table.add_column(column)
    for name, r in sorted(readings.items()):
        table.add_row(name, r.get("part_number") or "", r.get("software_version") or "",
                      "yes" if r["answered"] else f"[red]no[/] {r.get('error') or ''}")
    out.print(table)
    match = ua.call("update_agent.baseline.match", {"refresh": False})
    return str(match.get("vehicle_version")) if match["matched"] else "(no vehicle version matches)"


def _campaign(out: Console, engine: SyncClient) -> dict[str, Any]:
    """Start a campaign and show it live until it ends; returns its final record."""
    with engine.subscribe("agent.campaign.state", "agent.campaign.progress") as events:
        campaign_id = engine.call("agent.update", {"yes": True})["campaign_id"]
        out.print(f"campaign {campaign_id} started", highlight=False)
        tasks: dict[str, TaskID] = {}
        shown_ending: str | None = None
        with Progress(TextColumn("{task.description:<12}"), BarColumn(), DownloadColumn(),
                      TextColumn("{task.fields[step]}"), TimeElapsedColumn(), console=out) as progress:
            deadline = time.monotonic() + CAMPAIGN_TIMEOUT
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise OtaTimeoutError(f"campaign {campaign_id} did not end within {CAMPAIGN_TIMEOUT:g} s")
                event = events.get(timeout=remaining)
                p = event.params
                if p.get("campaign_id") != campaign_id:
                    continue
                if event.event == "agent.campaign.progress":
                    key = p["ecu"] or "download"
                    if key not in tasks:
                        tasks[key] = progress.add_task("download" if p["ecu"] is None else f"ECU {p['ecu']}",
                                                       total=None, step="")
                    progress.update(tasks[key], completed=p["bytes_done"], total=p["bytes_total"] or None,
                                    step=p["step"])
                    continue
                state = p["state"]
                why = f": [yellow]{p['ending']}[/]" if p.get("ending") and p["ending"] != shown_ending else ""
                shown_ending = p.get("ending") or shown_ending
                if state == "done":
                    progress.console.print(f"  done: [bold]{p.get('result')}[/]", highlight=False)
                    break
                progress.console.print(f"  {state}{why}", highlight=False)
    status = engine.call("agent.status")
    last: dict[str, Any] = status.get("last") or {}
    if last.get("id") != campaign_id:
        raise ConfigurationError(f"the engine reports no end for campaign {campaign_id}")
    return last


def _summary(out: Console, campaign: dict[str, Any]) -> None:
    out.print(f"campaign {campaign['id']}: {campaign['from_version']} -> {campaign['to_version']}: "
              f"[bold]{campaign.get('result')}[/]", highlight=False)
    table = Table()
    notes = any(ecu.get("note") for ecu in campaign["ecus"].values())
    for column in ("ECU", "outcome", "flash attempts", *(("how",) if notes else ())):
        table.add_column(column)
    for name, ecu in sorted(campaign["ecus"].items()):
        style = OUTCOME_STYLE.get(ecu["outcome"], "")
        # a rolled-back ECU's note says how: "rolled back: bank switched" / "... already on previous bank"
        how = (ecu.get("note") or "",) if notes else ()
        table.add_row(name, f"[{style}]{ecu['outcome']}[/]" if style else ecu["outcome"], str(ecu["attempts"]),
                      *how)
    out.print(table)
    if campaign.get("detail"):
        out.print(f"detail: {campaign['detail']}", highlight=False)

