"""Campaign overhead: the demo campaign's total time against its pure transfer times, and idle daemons.

Runs the demo's bench (:class:`bench.scenario.Scenario` with the demo's default options, its
64 KiB images among them) and the five daemons (:class:`agent.runtime.supervisor.Supervisor`),
then the demo's campaigns along the route (``agent.update {yes: true}``: BV OS D 1.0.0 -> 1.1.0
-> 1.2.0), as ``otactl demo`` does, and measures in the same run:

total
    from the ``agent.update`` call to the terminal ``agent.campaign.state`` event (``done``),
    on this process's monotonic clock.
download transfer (per target)
    how long dmclient spent in the ``downloading`` state of that target, from the
    ``dmclient.download.state`` events stamped on receipt here (a target served from the
    cache never downloads and counts 0). The download phase's transfer time is the union of
    those intervals (the wall time during which at least one target was on the wire; with
    every target concurrent that is the longest one); the max is shown too.
flash transfer (per ECU)
    the update agent's job result of the ECU's ``flash`` step, as the engine journalled it:
    ``download_s``, the sum of the script's ``download`` steps (RequestDownload 0x34,
    TransferData 0x36, RequestTransferExit 0x37); the whole script time is shown beside it.
    The install phase's transfer time is the max over buses of the sum over that bus's ECUs
    (buses in parallel, ECUs on a bus one after another).

``campaign_overhead_ratio = total / (download transfer + install transfer)`` (goal <= 1.10).
A table of the journal's steps (check, download, consent - absent with ``yes: true`` -,
preconditions, ota_mode_on, flash per ECU, verify, ota_mode_off, report) with start offsets
and durations explains where the rest goes; the time between journal steps (the engine
deciding, journalling with fsync, its IPC) is shown as "between steps".

After the campaign(s), the read-only calls the check and verify steps are made of
(versions read over UDS, baseline match, ``dmclient.check``) are timed one by one, so the
fixed costs have names. The daemons sit idle for ``--idle-seconds`` (default 60) twice: right
after they start (as after boot: a daemon that has not been asked anything yet, the UDS, CAN
and TLS libraries not loaded) and again after the campaign(s) (those libraries stay loaded:
Python does not unload modules). Per daemon the RSS at the end (``VmRSS`` of ``/proc/<pid>/status``, split into anon and
file-backed, with the thread count) and the CPU used over the window (``utime + stime`` of
``/proc/<pid>/stat`` at both ends) against the goals (<= 30 MiB, <= 0.5 % CPU). The journal
is read directly (SQLite, read-only URI: the engine stays its only writer). The daemons run
with ``MALLOC_ARENA_MAX=2`` as the systemd units set it (the supervisor's environment).

Prints figures and exits 0; never fails on time (exit 1 only if a campaign does not succeed,
as then there is nothing to measure). Last line: ``campaign_overhead_ratio=<x.xx>``: total
time over critical-path transfer time, summed over the campaigns run. The bench's images are
the demo's (``otactl demo --image-size``, 64 KiB) unless ``--image-size`` says otherwise; the
ratio falls as images grow, since most of the overhead is a fixed cost per campaign.
``--also-image-size BYTES`` first runs the same campaign(s) on a second bench with images of
that size and prints that ratio too (the ratio's definition is the same; the last line stays
the ``--image-size`` bench's).

    python benchmarks/campaign_overhead.py [--idle-seconds 60] [--campaigns 1|2] [--keep]
                                           [--image-size BYTES] [--also-image-size BYTES]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.cli.demo_campaign import DEMO_IMAGE_SIZE
from agent.config.node import load_yaml
from agent.config.vehicle import load_vehicle_config
from agent.errors import OtaTimeoutError
from agent.ipc.client import IpcClient
from agent.ipc.subscription import EventMessage
from agent.runtime.supervisor import Supervisor
from bench.scenario import Scenario, ScenarioOptions

CAMPAIGN_TIMEOUT = 300.0
RSS_GOAL_MIB = 30.0
CPU_GOAL_PERCENT = 0.5
RATIO_GOAL = 1.10
CLK_TCK = os.sysconf("SC_CLK_TCK")


def say(text: str) -> None:
    print(text, flush=True)


@dataclass
class TargetTiming:
    """One download target as dmclient's state events showed it (monotonic s, this process)."""

    name: str
    states: list[tuple[float, str]] = field(default_factory=list)
    source: str | None = None

    def intervals(self) -> list[tuple[float, float]]:
        """The spans spent in ``downloading`` (a retry or resume may give more than one)."""
        spans: list[tuple[float, float]] = []
        start: float | None = None
        for t, state in self.states:
            if state == "downloading" and start is None:
                start = t
            elif state != "downloading" and start is not None:
                spans.append((start, t))
                start = None
        return spans

    @property
    def transfer(self) -> float:
        return sum(b - a for a, b in self.intervals())


@dataclass
class CampaignRun:
    campaign_id: str
    from_version: str
    to_version: str
    started: float  # monotonic
    started_wall: float
    ended: float = 0.0
    result: str | None = None
    states: list[tuple[float, str]] = field(default_factory=list)
    targets: dict[str, TargetTiming] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return self.ended - self.started


def union_length(spans: Iterable[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(spans):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


# -- running a campaign ---------------------------------------------------------------------------
async def run_campaign(rt: Path, previous_ids: set[str]) -> CampaignRun | None:
    """One ``agent.update {yes: true}`` with its state events and dmclient's download states stamped."""
    engine = IpcClient.for_daemon("agent", runtime_dir=rt, call_timeout=180.0, reconnect=False)
    dm = IpcClient.for_daemon("dmclient", runtime_dir=rt, call_timeout=60.0, reconnect=False)
    async with engine, dm:
        check = await engine.call("agent.check")
        if check["status"] == "nothing":
            say(f"  the route ends at {check['vehicle_version']}: nothing more to install")
            return None
        say(f"  campaign {check['vehicle_version']} -> {check['target_vehicle_version']}: "
            + ", ".join(f"{e['ecu']} {e['software_version']} ({e['length']} B)" for e in check["ecus"]))
        ended = asyncio.Event()
        states: list[tuple[float, dict[str, Any]]] = []  # every campaign state event, stamped on receipt
        downloads: list[tuple[float, dict[str, Any]]] = []
        cid = ""
        origin = time.monotonic()

        def on_state(event: EventMessage) -> None:
            now = time.monotonic()
            states.append((now, event.params))
            if cid and event.params.get("campaign_id") == cid:
                shown(now, event.params)

        def shown(now: float, p: dict[str, Any]) -> None:
            say(f"  +{now - origin:7.3f} s  state {p['state']}" + (f" ({p['ending']})" if p.get("ending") else ""))
            if p["state"] == "done":
                ended.set()

        await engine.subscribe("agent.campaign.state", callback=on_state)
        await dm.subscribe("dmclient.download.state",
                           callback=lambda event: downloads.append((time.monotonic(), event.params["target"])))
        origin, started_wall = time.monotonic(), time.time()
        cid = (await engine.call("agent.update", {"yes": True}))["campaign_id"]
        say(f"  campaign {cid} started")
        for when, p in list(states):  # what arrived before the call returned
            if p.get("campaign_id") == cid:
                shown(when, p)
        try:
            await asyncio.wait_for(ended.wait(), CAMPAIGN_TIMEOUT)
        except TimeoutError:
            raise OtaTimeoutError(f"campaign {cid} did not end within {CAMPAIGN_TIMEOUT:g} s") from None
        mine = [(t, p) for t, p in states if p.get("campaign_id") == cid]
        run = CampaignRun(cid, check["vehicle_version"], check["target_vehicle_version"], origin, started_wall,
                          ended=next(t for t, p in mine if p["state"] == "done"),
                          result=next(p.get("result") for _t, p in mine if p["state"] == "done"),
                          states=[(t, p["state"]) for t, p in mine])
        for when, target in downloads:
            if target["id"] in previous_ids:
                continue
            timing = run.targets.setdefault(target["id"], TargetTiming(target["name"]))
            timing.states.append((when, target["state"]))
            timing.source = target.get("source") or timing.source
        return run


# -- the journal ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class StepRecord:
    step: str
    ecu: str | None
    state: str
    started: float  # wall
    ended: float | None
    result: dict[str, Any] | None


def journal_steps(journal: Path, campaign_id: str) -> list[StepRecord]:
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=10.0)
    try:
        rows = db.execute("SELECT step, ecu, state, started, ended, result FROM steps WHERE campaign = ? "
                          "ORDER BY id", (campaign_id,)).fetchall()
    finally:
        db.close()
    return [StepRecord(r[0], r[1], r[2], float(r[3]), float(r[4]) if r[4] is not None else None,
                       json.loads(r[5]) if r[5] else None) for r in rows]


@dataclass(frozen=True)
class FlashTiming:
    ecu: str
    bus: str
    script_s: float
    download_s: float
    bytes: int
    steps: list[dict[str, Any]]


def flash_timings(steps: list[StepRecord], bus_of: dict[str, str]) -> list[FlashTiming]:
    out = []
    for s in steps:
        if s.step != "flash" or s.state != "done" or s.ecu is None:
            continue
        job = (s.result or {}).get("job") or {}
        job_steps = list(job.get("steps") or [])
        download = sum(float(j["duration_s"]) for j in job_steps if j.get("action") == "download")
        out.append(FlashTiming(s.ecu, bus_of[s.ecu], float(job.get("duration_s", 0.0)),
                               download or float(job.get("download_s", 0.0)), int(job.get("bytes", 0)), job_steps))
    return out


# -- report ---------------------------------------------------------------------------------------
def report_campaign(run: CampaignRun, steps: list[StepRecord], bus_of: dict[str, str]) -> tuple[float, float]:
    say("")
    say(f"campaign {run.campaign_id} {run.from_version} -> {run.to_version}: {run.result}, "
        f"total {run.total:.3f} s")
    t0 = run.started_wall
    say(f"  {'step':<14} {'ecu':<7} {'start s':>8} {'dur s':>8}  note")
    covered: list[tuple[float, float]] = []
    flashes = {f.ecu: f for f in flash_timings(steps, bus_of)}
    for s in steps:
        end = s.ended if s.ended is not None else s.started
        covered.append((s.started, end))
        note = "" if s.state == "done" else s.state
        if s.step == "flash" and s.ecu in flashes:
            f = flashes[s.ecu]
            other = ", ".join(f"{j['name']} {float(j['duration_s']):.3f}" for j in f.steps
                              if j.get("action") != "download" and float(j["duration_s"]) >= 0.005)
            note = (f"bus {f.bus}: script {f.script_s:.3f} s, 0x34/36/37 {f.download_s:.3f} s "
                    f"({f.bytes} B); IPC/job {end - s.started - f.script_s:.3f} s; other script steps: {other}")
        say(f"  {s.step:<14} {s.ecu or '':<7} {s.started - t0:8.3f} {end - s.started:8.3f}  {note}")
    last_end = max((b for _a, b in covered), default=t0)
    between = run.total - union_length(covered)
    say(f"  {'(between steps: engine decisions, journal fsyncs, IPC)':<40} {between:8.3f}")
    say(f"  {'(after the last step until the done event arrived)':<40} "
        f"{run.started_wall + run.total - last_end:8.3f}")

    say("  download transfers (dmclient 'downloading' state):")
    spans: list[tuple[float, float]] = []
    for tid, t in sorted(run.targets.items(), key=lambda kv: kv[1].name):
        iv = t.intervals()
        spans.extend(iv)
        first = f"from +{iv[0][0] - run.started:.3f} s" if iv else "no transfer"
        say(f"    {t.name:<40} source {t.source or '?':<6} {t.transfer:7.3f} s  {first}  [{tid}]")
    download_union = union_length(spans)
    download_max = max((t.transfer for t in run.targets.values()), default=0.0)
    say(f"    download phase transfer: union {download_union:.3f} s (longest target {download_max:.3f} s)")

    per_bus: dict[str, float] = {}
    for f in flashes.values():
        per_bus[f.bus] = per_bus.get(f.bus, 0.0) + f.download_s
    install = max(per_bus.values(), default=0.0)
    say("  install transfers (0x34/0x36/0x37, ECUs on a bus in sequence): "
        + ", ".join(f"{bus} {v:.3f} s" for bus, v in sorted(per_bus.items())) + f" -> max {install:.3f} s")
    scripts_bus: dict[str, float] = {}
    for f in flashes.values():
        scripts_bus[f.bus] = scripts_bus.get(f.bus, 0.0) + f.script_s
    say("  whole flash scripts per bus: " + ", ".join(f"{b} {v:.3f} s" for b, v in sorted(scripts_bus.items()))
        + f" -> max {max(scripts_bus.values(), default=0.0):.3f} s")
    critical = download_union + install
    ratio = run.total / critical if critical > 0 else float("inf")
    say(f"  critical path of pure transfers: {download_union:.3f} + {install:.3f} = {critical:.3f} s; "
        f"overhead {run.total - critical:.3f} s; ratio {ratio:.2f} (goal <= {RATIO_GOAL:.2f})")
    return run.total, critical


# -- the fixed costs, one call at a time ---------------------------------------------------------
async def probe_fixed_costs(rt: Path, baseline: str, repeat: int = 3) -> None:
    """Time, outside any campaign, the read-only calls the check and verify steps are made of."""
    ua = IpcClient.for_daemon("update_agent", runtime_dir=rt, call_timeout=60.0, reconnect=False)
    dm = IpcClient.for_daemon("dmclient", runtime_dir=rt, call_timeout=120.0, reconnect=False)
    say("")
    say(f"what the check and verify steps are made of (each call alone, best of {repeat}):")
    async with ua, dm:
        match = await ua.call("update_agent.baseline.match", {"software_baseline": baseline, "refresh": True})
        version = match.get("vehicle_version")
        calls: list[tuple[str, IpcClient, str, dict[str, Any]]] = [
            ("versions read over UDS (every ECU)", ua, "update_agent.versions.read", {}),
            ("baseline match, refresh (versions read + match)", ua, "update_agent.baseline.match",
             {"software_baseline": baseline, "refresh": True}),
            ("baseline match, cached versions", ua, "update_agent.baseline.match",
             {"software_baseline": baseline, "refresh": False}),
            ("dmclient.check (manifest, Uptane metadata refresh)", dm, "dmclient.check", {"vehicle_version": version}),
        ]
        for label, client, method, params in calls:
            best = float("inf")
            notes: list[str] = []
            for _ in range(repeat):
                t = time.monotonic()
                result = await client.call(method, params)
                best = min(best, time.monotonic() - t)
                notes = list(result.get("notes") or [])
            say(f"  {label:<52} {best:7.3f} s" + (f"  notes: {'; '.join(notes)}" if notes else ""))


# -- idle daemons ---------------------------------------------------------------------------------
def proc_cpu_ticks(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "; fields[0] is state (field 3)
    return int(fields[11]) + int(fields[12])  # utime (14), stime (15)


def proc_status(pid: int) -> dict[str, int]:
    """The kB / count fields of /proc/<pid>/status this report uses (VmRSS, RssAnon, RssFile, Threads)."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "Threads"):
            out[key] = int(value.split()[0])
    return out


def measure_idle(pids: dict[str, int], seconds: float, when: str) -> None:
    say("")
    say(f"idle daemons {when}, over {seconds:g} s (goals: RSS <= {RSS_GOAL_MIB:g} MiB, CPU <= {CPU_GOAL_PERCENT:g} %)")
    start = {name: proc_cpu_ticks(pid) for name, pid in pids.items()}
    t0 = time.monotonic()
    time.sleep(seconds)  # the measurement window itself
    elapsed = time.monotonic() - t0
    say(f"  {'daemon':<14} {'pid':>7} {'RSS MiB':>8} {'CPU %':>7} {'anon MiB':>9} {'file MiB':>9} {'threads':>8}")
    for name, pid in pids.items():
        cpu = (proc_cpu_ticks(pid) - start[name]) / CLK_TCK / elapsed * 100.0
        st = proc_status(pid)
        rss = st.get("VmRSS", 0) / 1024.0
        flags = [w for w, bad in (("RSS over goal", rss > RSS_GOAL_MIB), ("CPU over goal", cpu > CPU_GOAL_PERCENT))
                 if bad]
        say(f"  {name:<14} {pid:>7} {rss:8.1f} {cpu:7.2f} {st.get('RssAnon', 0) / 1024:9.1f} "
            f"{st.get('RssFile', 0) / 1024:9.1f} {st.get('Threads', 0):8d}  {'; '.join(flags) or 'ok'}")
    say("  (anon: heap, stacks; file: mapped interpreter and shared libraries, OpenSSL among them)")


# -- main -----------------------------------------------------------------------------------------
def run_bench(image_size: int, campaigns: int, keep: bool,
              idle_seconds: float | None) -> list[tuple[float, float]] | None:
    """One bench and its daemons: the campaign(s) with their figures, then (``idle_seconds``) the
    idle windows. Returns (total, critical path) per campaign, None if a campaign did not succeed."""
    say(f"building the bench (PKI, releases, route, backend, simulated ECUs; images of {image_size} B)...")
    scenario = Scenario(ScenarioOptions(image_size=image_size, keep=keep))
    scenario.up()
    ratios: list[tuple[float, float]] = []  # (total, critical path) per campaign
    ok = True
    try:
        say(f"bench in {scenario.dir}")
        sup = Supervisor(scenario.stack_config, env=scenario.env, say=lambda text: say(f"  {text}"))
        say(f"starting the daemons (environment MALLOC_ARENA_MAX={sup.env.get('MALLOC_ARENA_MAX', 'unset')})...")
        reports = sup.up()
        pids = {r.name: r.pid for r in reports if r.pid is not None}
        try:
            if idle_seconds is not None:  # as after boot: nothing asked of the stack yet
                measure_idle(pids, idle_seconds, "after start, before any campaign")
            journal = Path(load_yaml(scenario.stack_config).child("agent").get("journal", str))
            vehicle = load_vehicle_config(scenario.vehicle_config)
            bus_of = {name: ecu.bus for name, ecu in vehicle.ecus.items()}
            seen: set[str] = set()
            for _ in range(campaigns):
                run = asyncio.run(run_campaign(scenario.runtime_dir, seen))
                if run is None:
                    break
                seen.update(run.targets)
                if run.result != "succeeded":
                    say(f"campaign {run.campaign_id} ended {run.result}: no figures")
                    ok = False
                    break
                ratios.append(report_campaign(run, journal_steps(journal, run.campaign_id), bus_of))
            if ok:
                baseline = load_yaml(scenario.stack_config).child("agent").get("baseline", str)
                asyncio.run(probe_fixed_costs(scenario.runtime_dir, baseline))
                if idle_seconds is not None:
                    measure_idle(pids, idle_seconds, "after the campaign(s)")
        finally:
            say("stopping the daemons...")
            sup.down()
    finally:
        scenario.down()
        say("bench kept in " + str(scenario.dir) if keep else "bench removed")
    return ratios if ok else None


def ratio_of(ratios: list[tuple[float, float]]) -> float:
    total, critical = sum(t for t, _c in ratios), sum(c for _t, c in ratios)
    if len(ratios) > 1:
        say(f"{len(ratios)} campaigns: {total:.3f} s in all against {critical:.3f} s of pure transfers")
    return total / critical if critical > 0 else float("inf")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--idle-seconds", type=float, default=60.0,
                    help="each idle window for RSS and CPU, before and after the campaign (default 60)")
    ap.add_argument("--campaigns", type=int, choices=(1, 2), default=2,
                    help="campaigns along the route (default 2: the demo's whole route)")
    ap.add_argument("--keep", action="store_true", help="keep the bench directory (logs, journal)")
    ap.add_argument("--image-size", type=int, default=DEMO_IMAGE_SIZE,
                    help=f"bytes of every application image (default the demo's, {DEMO_IMAGE_SIZE})")
    ap.add_argument("--also-image-size", type=int, default=None, metavar="BYTES",
                    help="first run the same campaign(s) on a second bench with images of BYTES (a realistic "
                         "size) and print its ratio; the last line stays the --image-size bench's")
    args = ap.parse_args(argv)
    if args.idle_seconds <= 0:
        ap.error(f"--idle-seconds must be more than 0, got {args.idle_seconds:g}")
    for flag, size in (("--image-size", args.image_size), ("--also-image-size", args.also_image_size)):
        if size is not None and size < 256:
            ap.error(f"{flag} must be at least 256 bytes, got {size}")

    if args.also_image_size is not None:
        other = run_bench(args.also_image_size, args.campaigns, args.keep, None)
        if other:
            say(f"images of {args.also_image_size} B: campaign_overhead_ratio={ratio_of(other):.2f}")
        say("")
    ratios = run_bench(args.image_size, args.campaigns, args.keep, args.idle_seconds)
    if not ratios:
        return 1
    say(f"campaign_overhead_ratio={ratio_of(ratios):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
