"""Reliability report: the full torture set on the demo's bench, one table.

Runs on one bench (:mod:`tests.torture.harness`: the whole bench of :mod:`bench.scenario`, each
simulated ECU in its own process, the five daemons as processes) and prints one table:

transitions
    SIGKILL of the engine, of the update agent and of every daemon together at every journal
    transition of the V2 -> V3 campaign (the engine kill kit, :func:`tests.engine.killkit.cover`),
    restart, invariants;
random cuts
    ``--cuts`` power cuts (default 200) at event-chosen instants (seeded: ``--seed``, printed) of
    campaigns forth and back: every daemon together with every ECU power-cycled, one daemon
    alone, one ECU's supply alone;
bus
    ``--bus`` campaigns (default 5) whose first flash attempts run over faulty bench buses
    (frames of the ECUs' diagnostic traffic dropped, delayed, errored, corrupted; seeded), and one
    whose simulated ECUs answer NRC 0x72, 0x73, a 0x78 storm and reset mid-transfer;
network
    one of each backend fault (drop mid-body, Range ignored, stall, 503, 429) on a fresh download;
full disk
    dmclient's cache on a small tmpfs filling up during the downloads, then space back; and
    on a second bench started at V1 (the bench's one delta is the engine's V1 -> V2 image),
    filling up while the delta's patched image is written, then space back (each skipped, and
    said so, where a tmpfs cannot be mounted);
watchdog
    the engine hung (debug hook) under systemd's watchdog as the bench keeper plays it;
soak
    ``--soak`` campaigns (default 100) forth and back with no restart; per daemon RSS and open
    fds after the first and the last campaign.

Columns: runs (campaigns), faults injected, outcomes (completed / rolled back / other) and
invariant violations (goal 0; each one is listed below the table). Soak growth goal: none.
``--quick`` scales everything down (a few minutes). Figures only: exits 0 whatever it finds.

    python benchmarks/reliability_report.py            # the full set (an hour or more)
    python benchmarks/reliability_report.py --quick    # 10 cuts, 6 soak campaigns, started transitions only
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.engine.killkit import VICTIMS as KILL_VICTIMS  # noqa: E402
from tests.engine.killkit import campaign_transitions, cover  # noqa: E402
from tests.torture.harness import (  # noqa: E402
    BUS_FAULTS,
    DOWNLOADS,
    ECU_FAULTS,
    SMALL_FS_LEFT,
    V1,
    V3,
    VICTIMS,
    RunRecord,
    SoakResult,
    TortureBench,
    fill,
    plan_cuts,
    run_with_bus_faults,
    run_with_ecu_faults,
    run_with_engine_hang,
    run_with_full_disk_in_delta,
    run_with_network_faults,
    small_cache,
    soak,
    torture_bench,
)


@dataclass
class Row:
    name: str
    runs: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    note: str = ""

    def add(self, run: RunRecord, *, expected_failure: bool = False) -> None:
        self.runs += 1
        self.outcomes[run.outcome] += 1
        for cut in run.cuts_done:
            self.faults[cut.split("@", 1)[0]] += 1
        ignored = "campaign ended 'failed'" if expected_failure else None
        self.violations += [f"{run.kind} {run.campaign}: {v}" for v in run.violations
                            if ignored is None or not v.startswith(ignored)]


def transitions(bench: TortureBench, started_only: bool) -> Row:
    row = Row("journal transitions x victims")
    targets = [t for t in campaign_transitions() if t.edge == "started" or not started_only]
    for victim in KILL_VICTIMS:
        by_target = cover(bench, victim, targets, max_campaigns=len(targets))
        seen: set[str] = set()
        for target, kill_run in by_target.items():
            row.faults[f"kill {victim}"] += 1
            if kill_run.campaign_id in seen:
                continue
            seen.add(kill_run.campaign_id)
            row.runs += 1
            result = kill_run.record.get("result")
            row.outcomes[{"succeeded": "completed", "rolled_back": "rolled back"}.get(str(result), "other")] += 1
            row.violations += [f"kill {victim} at {target}: {v}" for v in kill_run.violations]
        bench.goto(bench.start_version)
    return row


def random_cuts(bench: TortureBench, rng: random.Random, cuts: int, per_campaign: int) -> Row:
    row = Row("random power cuts")
    first = bench.run("update")
    row.add(first)
    fired = 0
    while fired < cuts and row.runs < 4 * cuts + 2:
        kind = "rollback" if bench.vehicle_version() == V3 else "update"
        run = bench.run(kind, plan_cuts(rng, min(per_campaign, cuts - fired), max_event=first.events,
                                        victims=VICTIMS))
        row.add(run)
        fired += len(run.cuts_done)
    return row


def bus(bench: TortureBench, seed: int, campaigns: int) -> Row:
    row = Row("bus and ECU faults")
    for i in range(campaigns):
        run, injected = run_with_bus_faults(bench, BUS_FAULTS, seed + i)
        row.add(run)
        for kind, n in injected.items():
            if n:
                row.faults[f"bus {kind}"] += n
    run, fired = run_with_ecu_faults(bench, ECU_FAULTS)
    row.add(run)
    for fault in fired:
        row.faults["ECU " + fault.split(": ", 1)[1].split(":", 1)[0]] += 1
    if len(fired) != sum(len(knobs) for knobs in ECU_FAULTS.values()):
        row.violations.append(f"ECU faults: not every fault fired: {fired}")
    return row


def network(bench: TortureBench) -> Row:
    row = Row("network faults")
    run, served = run_with_network_faults(bench)
    row.add(run)
    for reqs in served.values():
        for r in reqs:
            if r["fault"]:
                kinds = [k for k in r["fault"] if k not in ("path", "times")]
                row.faults["+".join(sorted(kinds))] += 1
    return row


def disk(bench: TortureBench) -> Row:
    row = Row("full disk (download, delta)")
    with small_cache(bench) as filler:
        if filler is None:
            row.note = "skipped: cannot mount a tmpfs here"
            return row
        fill(filler, SMALL_FS_LEFT)
        run = bench.run("update")
        row.faults["disk full in download (tmpfs)"] += 1
        row.add(run, expected_failure=True)
        if run.result != "failed" or run.vehicle_version != run.from_version:
            row.violations.append(f"full disk: expected a clean failure on the old version: {run.describe()}")
        row.note = f"download: {run.result}: {run.detail[:60]}"
        filler.unlink()
        row.add(bench.run("update"))
    with torture_bench(start_version=V1, image_size=2048, stack_overrides={"dmclient": {"downloads": DOWNLOADS}}) \
            as v1_bench:
        delta = run_with_full_disk_in_delta(v1_bench)
    if delta is None:
        row.note += "; delta: skipped, cannot mount a tmpfs here"
        return row
    row.faults["disk full in delta reconstruction (tmpfs)"] += 1
    for run in (delta.full, delta.recovery):  # their violations are among the findings
        row.runs += 1
        row.outcomes[run.outcome] += 1
    row.violations += [f"full disk in the delta: {f}" for f in delta.findings]
    row.note += f"; delta: {delta.full.result}, then {delta.recovery.result}"
    return row


def watchdog(bench: TortureBench) -> Row:
    row = Row("watchdog (hung engine)")
    with bench.kept(2.0) as keeper:
        hang = run_with_engine_hang(bench, keeper)
    row.add(hang.run)
    row.faults["engine hang"] += 1
    if [(r.daemon, r.reason) for r in hang.restarts] != [("agent", "watchdog")]:
        row.violations.append(f"watchdog: restarts {hang.restarts}")
    return row


def soak_row(bench: TortureBench, campaigns: int) -> tuple[Row, SoakResult]:
    row = Row(f"soak ({campaigns} campaigns)")
    result = soak(bench, campaigns)
    for run in result.runs:
        row.add(run)
    return row, result


def table(rows: list[Row]) -> str:
    head = f"{'set':32} {'runs':>5} {'faults':>7} {'completed':>10} {'rolled back':>12} {'other':>6} " \
           f"{'violations':>11}"
    lines = [head, "-" * len(head)]
    total = Row("total")
    for row in [*rows, total]:
        if row is not total:
            total.runs += row.runs
            total.faults.update(row.faults)
            total.outcomes.update(row.outcomes)
            total.violations += row.violations
        lines.append(f"{row.name:32} {row.runs:>5} {sum(row.faults.values()):>7} {row.outcomes['completed']:>10} "
                     f"{row.outcomes['rolled back']:>12} {row.outcomes['other']:>6} {len(row.violations):>11}"
                     + (f"  ({row.note})" if row.note else ""))
    lines.append("")
    lines.append("faults injected by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(total.faults.items())))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="scaled down: 10 cuts, 6 soak campaigns, "
                        "each step's start only for the transitions")
    parser.add_argument("--cuts", type=int, default=None, help="random power cuts (default 200, quick 10)")
    parser.add_argument("--soak", type=int, default=None, help="soak campaigns (default 100, quick 6)")
    parser.add_argument("--bus", type=int, default=None, help="campaigns over faulty buses (default 5, quick 1)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the random cuts (default: a fresh one)")
    parser.add_argument("--skip", action="append", default=[],
                        choices=["transitions", "cuts", "bus", "network", "disk", "watchdog", "soak"],
                        help="leave a set out (repeatable)")
    args = parser.parse_args(argv)
    cuts = args.cuts if args.cuts is not None else (10 if args.quick else 200)
    campaigns = args.soak if args.soak is not None else (6 if args.quick else 100)
    bus_campaigns = args.bus if args.bus is not None else (1 if args.quick else 5)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    print(f"reliability report: seed {seed} (--seed {seed} replays the cuts), {cuts} random cuts, "
          f"{campaigns} soak campaigns", flush=True)
    started = time.monotonic()
    rows: list[Row] = []
    soak_result: SoakResult | None = None
    with torture_bench(image_size=2048, stack_overrides={"agent": {"watchdog": {"debug_hang": True}},
                                                         "dmclient": {"downloads": DOWNLOADS}}) as bench:
        steps: list[tuple[str, Callable[[], Row]]] = [
            ("transitions", lambda: transitions(bench, started_only=args.quick)),
            ("cuts", lambda: random_cuts(bench, random.Random(seed), cuts, per_campaign=2)),
            ("bus", lambda: bus(bench, seed, bus_campaigns)),
            ("network", lambda: network(bench)),
            ("disk", lambda: disk(bench)),
            ("watchdog", lambda: watchdog(bench))]
        for name, step in steps:
            if name in args.skip:
                continue
            t0 = time.monotonic()
            try:
                row = step()
            except Exception as e:  # a set that cannot finish is a finding, not a crash of the report
                row = Row(name, violations=[f"{name}: the set stopped: {type(e).__name__}: {str(e)[:300]}"])
            rows.append(row)
            print(f"  {row.name}: {row.runs} runs in {time.monotonic() - t0:.0f} s", flush=True)
        if "soak" not in args.skip:
            t0 = time.monotonic()
            row, soak_result = soak_row(bench, campaigns)
            rows.append(row)
            print(f"  {row.name}: {time.monotonic() - t0:.0f} s", flush=True)
    print()
    print(table(rows))
    if soak_result is not None and soak_result.samples:
        print()
        print("soak growth per daemon (after the first -> after the last campaign; goal: none)")
        rss, fds = soak_result.rss_growth(), soak_result.fd_growth()
        for daemon in soak_result.samples[0]:
            first, last = soak_result.samples[0][daemon], soak_result.samples[-1][daemon]
            print(f"  {daemon:13} RSS {first[0] / 1024:6.1f} -> {last[0] / 1024:6.1f} MiB ({rss[daemon]:+d} KiB)   "
                  f"fds {first[1]} -> {last[1]} ({fds[daemon]:+d})")
    violations = [v for row in rows for v in row.violations]
    print()
    print(f"invariant violations: {len(violations)} (goal 0)")
    for v in violations:
        print(f"  - {v[:400]}")
    print(f"seed {seed}; {time.monotonic() - started:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
