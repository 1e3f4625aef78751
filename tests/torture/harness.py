"""The torture harness: the demo's bench, power cuts at event-chosen instants, faults, invariant checks.

:class:`TortureBench` is the engine kill kit's bench (:class:`tests.engine.killkit.KillBench`:
the whole bench of :mod:`bench.scenario` - HTTPS backend, bench bus, three simulated UDS ECUs
on two buses, brake A/B - and the five daemons under the supervisor; SIGKILL and restart,
journal rows, wait for a campaign's end, its invariants) plus what torture needs:

* each simulated ECU in a process of its own (``bench ecus --ecu NAME --no-hub``), so
  :meth:`TortureBench.power_cycle` cuts one ECU's power: SIGKILL (no clean shutdown; what was
  half-programmed stays half-programmed in its persisted flash), then power-up from its store;
* a *power cut* (:class:`Cut`): ``all`` (the vehicle lost power: every daemon dies and every
  ECU is power-cycled, as a real power loss resets the ECU being flashed) or one daemon alone
  (a crash; the ECUs keep their power); then the supervisor starts what is not running, in
  parallel, as systemd does at boot;
* the instant of a cut is an *event*, not a time: the campaign's events (``agent.campaign.state``,
  ``.step`` - each a committed journal transition - and ``.progress``) are counted and the cut
  falls on event number ``at``, drawn from a seeded :class:`random.Random`; a seed reproduces
  the plan and nothing depends on how fast the machine is;
* campaigns both ways (``update`` V2 -> V3, ``rollback`` V3 -> V2), the backend's fault knobs
  (admin port), per-daemon RSS and open fds.

After each run :func:`check_invariants` adds to the kill kit's invariants
(:func:`tests.engine.killkit.invariant_violations`: old or new version, result consistent, no
row left ``started``, no step redone after ``done``, OTA mode off) what it reads from the real
stores: each ECU's active flash bank byte for byte an image of the release (CRC-32 in the
message) and of the vehicle version matched; the campaign completed or rolled back and
reported; dmclient's cache (each entry hashes to its name, pins and verified targets kept).

The fault campaigns the tests and ``benchmarks/reliability_report.py`` share: network faults
(:func:`run_with_network_faults`), bus faults during the first flash attempts and ECUs answering
NRC 0x72 / 0x73 / 0x78 storms / resetting mid-transfer (:func:`run_with_bus_faults`,
:func:`run_with_ecu_faults`), a full disk during the downloads (:func:`small_cache`, :func:`fill`)
and during the delta reconstruction (:func:`run_with_full_disk_in_delta`, on a bench started at V1),
and a hung engine under its watchdog (:func:`run_with_engine_hang`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import requests

from agent.errors import OtaError
from agent.ipc.protocol import PROTOCOL
from agent.runtime.keeper import Restart, WatchdogKeeper
from agent.runtime.supervisor import DAEMONS
from bench.readyproc import ReadyProcess
from bench.scenario import ECU_VERSIONS, REPO, V1, V2, V3, Scenario, ScenarioOptions
from tests.engine.killkit import KillBench, KillRun, invariant_violations

DAEMON_NAMES = tuple(d.name for d in DAEMONS)
#: who a cut hits: every daemon together (power loss), one alone (a crash), one ECU's supply
VICTIMS = ("all", *DAEMON_NAMES, *(f"ecu:{e}" for e in ECU_VERSIONS[V2]))
ECUS = tuple(ECU_VERSIONS[V2])
GOOD_RESULTS = ("succeeded", "rolled_back")
#: the campaign's events a cut can fall on (``.step``: each journal transition)
CAMPAIGN_EVENTS = tuple(e for e in ("agent.campaign.state", "agent.campaign.step", "agent.campaign.progress")
                        if e in PROTOCOL.for_daemon("agent").events)
#: dmclient's download settings on the torture benches: no free-space reserve, so that on the disk tests' small
#: filesystem the kernel's ENOSPC is reached
DOWNLOADS = {"concurrency": 2, "chunk_bytes": "64KiB", "checkpoint_bytes": "1MiB", "min_free_bytes": 0,
             "progress_interval": 0.2}
#: ``otactl bench ecus`` without otactl's start-up (it imports every subcommand): an ECU powers up in
#: well under a second, so a power cut costs little
ECU_MAIN = ("import argparse, sys\nfrom bench.ecu import cli\np = argparse.ArgumentParser()\n"
            "cli.register(p.add_subparsers())\nargs = p.parse_args()\nsys.exit(args.func(args))")


@dataclass(frozen=True)
class Cut:
    """A power cut: SIGKILL ``victim`` when the campaign's event number ``at`` arrives."""

    victim: str
    at: int


@dataclass
class RunRecord:
    """One campaign under torture and what the checks found."""

    kind: str
    campaign: str
    cuts_planned: list[Cut] = field(default_factory=list)
    #: cuts that fired, with the event they fell on (e.g. "all@step flash brake started")
    cuts_done: list[str] = field(default_factory=list)
    result: str = ""
    detail: str = ""
    from_version: str = ""
    to_version: str = ""
    vehicle_version: str | None = None
    violations: list[str] = field(default_factory=list)
    #: campaign events seen (a clean run's count bounds where cuts can fall)
    events: int = 0
    #: faults other than cuts that fired in this run (network faults served, a hang)
    faults_injected: int = 0

    @property
    def outcome(self) -> str:
        return {"succeeded": "completed", "rolled_back": "rolled back"}.get(self.result, "other")

    def describe(self) -> str:
        return (f"{self.kind} {self.campaign} {self.from_version} -> {self.to_version}: {self.result} "
                f"({self.detail}); cuts {self.cuts_done}; vehicle {self.vehicle_version}; "
                f"violations {self.violations}")


def plan_cuts(rng: random.Random, count: int, *, max_event: int,
              victims: tuple[str, ...] = VICTIMS) -> list[Cut]:
    """``count`` cuts at event numbers in 1..``max_event``, victims drawn from ``victims``."""
    return [Cut(rng.choice(victims), rng.randint(1, max(1, max_event))) for _ in range(count)]


def describe_event(event: str, params: dict[str, Any]) -> str:
    if event == "agent.campaign.step":
        return f"step {params['step']} {params.get('ecu') or '-'} {params['state']}"
    if event == "agent.campaign.state":
        return f"state {params['state']}"
    return f"progress {params.get('step')} {params.get('ecu') or 'order'} {params['bytes_done']}B"


class TortureBench(KillBench):
    """The kill kit's bench plus one process per ECU, power cycles, backend knobs, resource use."""

    def __init__(self, options: ScenarioOptions | None = None) -> None:  # the kit's part once the bench is up
        self.scenario = Scenario(options or ScenarioOptions(start_version=V2))
        self.ecu_procs: dict[str, ReadyProcess] = {}
        self.admin_url = ""
        self.http = requests.Session()
        self.http.trust_env = False

    # -- lifecycle ----------------------------------------------------------------------------------
    def __enter__(self) -> TortureBench:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def up(self) -> None:
        self.scenario.up()
        try:
            super().__init__(self.scenario)
            self.admin_url = self._admin_url()
            self.scenario.stop_ecus()  # one process per ECU instead, so one ECU can lose power alone
            self.start_ecus(*ECUS)
            self.sup.up(parallel=True)
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        try:
            if hasattr(self, "sup"):
                self.sup.down()
        finally:
            self.stop_ecus(*self.ecu_procs)
            self.scenario.down()
            self.http.close()

    def _admin_url(self) -> str:
        prefix = "bench backend admin: "
        lines = self.scenario.processes["backend"].early_lines
        found = [line[len(prefix):].strip() for line in lines if line.startswith(prefix)]
        if not found:
            raise AssertionError(f"the bench backend printed no {prefix!r} line: {lines}")
        return found[0]

    # -- ECUs ---------------------------------------------------------------------------------------
    def start_ecu(self, ecu: str) -> None:
        proc = ReadyProcess(f"ecu-{ecu}", [sys.executable, "-c", ECU_MAIN, "ecus", "--config",
                                          str(self.scenario.vehicle_config), "--state-dir",
                                          str(self.scenario.dir / "sim-state"), "--ecu", ecu, "--no-hub"],
                            prefix="bench ready:", log=self.scenario.logs / f"ecu-{ecu}.log", env=self.scenario.env,
                            cwd=REPO)
        proc.start(self.scenario.options.ready_timeout)
        self.ecu_procs[ecu] = proc

    def start_ecus(self, *ecus: str) -> None:
        """Start these ECUs' processes at once (power on together) and wait for each ready line."""
        errors: list[BaseException] = []

        def one(ecu: str) -> None:
            try:
                self.start_ecu(ecu)
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=one, args=(ecu,)) for ecu in ecus]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    def stop_ecus(self, *ecus: str, power_cut: bool = False) -> None:
        """Stop these ECUs' processes: SIGTERM (a clean stop), or SIGKILL (``power_cut``: nothing is tidied)."""
        for ecu in list(ecus):
            proc = self.ecu_procs.pop(ecu)
            if power_cut and proc.proc is not None and proc.proc.poll() is None:
                proc.proc.kill()
                proc.proc.wait()
            proc.stop()

    def power_cycle(self, *ecus: str) -> None:
        """Cut the power of these simulated ECUs (SIGKILL) and power them up from their persisted store."""
        self.stop_ecus(*ecus, power_cut=True)
        self.start_ecus(*ecus)

    # -- daemons ------------------------------------------------------------------------------------
    def cut(self, victim: str) -> None:
        """SIGKILL the victim daemon(s); ``all`` is a power loss: every ECU is power-cycled too;
        ``ecu:<name>`` cuts that ECU's power alone (its supply glitched; the daemons run on)."""
        if victim.startswith("ecu:"):
            # a real ECU reboots in milliseconds, far below the tester's timeouts; the simulator's process
            # takes seconds to start: the update agent is frozen meanwhile, so that the outage it sees is
            # a reboot's (at most its pending request lost), not the simulator's start-up time
            tester = self.pids(("update_agent",))["update_agent"]
            os.kill(tester, signal.SIGSTOP)
            try:
                self.power_cycle(victim[4:])
            finally:
                os.kill(tester, signal.SIGCONT)
            return
        self.kill(self.pids(DAEMON_NAMES if victim == "all" else (victim,)))
        if victim == "all":  # the ECUs are up long before the gateway's Linux and its daemons: first
            self.power_cycle(*ECUS)

    def fresh_download_state(self) -> None:
        """dmclient's cache and download state as at the end of line (factory images only, nothing downloaded),
        the vehicle on the start version: so the next campaign downloads its targets again (the backend's
        faults act on downloads). Its Uptane state stays: the Director refuses a manifest whose report
        counter goes back (a replay)."""
        self.kill(self.pids(("dmclient",)))
        vehicle = self.scenario.dir / "vehicle"
        for path in (vehicle / "cache").glob("*"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        for path in vehicle.glob("dmclient.db*"):
            path.unlink()
        self.scenario._provision_vehicle()
        self.restart()

    def restart(self) -> None:
        """What systemd does after the cut: start every daemon that is not running (in parallel, as at boot)."""
        self.sup.up(parallel=True)

    @contextlib.contextmanager
    def kept(self, watchdog_sec: float, daemons: tuple[str, ...] = ("agent",)) -> Iterator[WatchdogKeeper]:
        """These daemons restarted under a :class:`WatchdogKeeper` (systemd's watchdog and Restart=) for the
        block, the others left running; afterwards restarted under the plain supervisor."""
        self.kill(self.pids(daemons))  # between campaigns: nothing is interrupted
        keeper = WatchdogKeeper(self.sup, watchdog_sec=watchdog_sec)
        try:
            keeper.start()  # starts what is not running: these daemons, with their notify sockets
            yield keeper
        finally:
            keeper.stop()
            self.kill(self.pids(daemons))
            self.sup.daemon_env, self.sup.core_dumps = None, True
            self.sup.up(parallel=True)

    # -- backend knobs ------------------------------------------------------------------------------
    def set_faults(self, faults: list[dict[str, Any]]) -> None:
        self.http.put(f"{self.admin_url}/faults", json=faults, timeout=10).raise_for_status()

    def clear_faults(self) -> None:
        self.http.post(f"{self.admin_url}/reset", timeout=10).raise_for_status()

    def served(self, path: str | None = None) -> Any:
        r = self.http.get(f"{self.admin_url}/stats", params={"path": path} if path else None, timeout=10)
        r.raise_for_status()
        return r.json()

    # -- campaigns ----------------------------------------------------------------------------------
    def goto(self, version: str) -> None:
        """Campaigns (update forward, rollback back) until the vehicle is on ``version``."""
        for _ in range(4):
            now = self.vehicle_version()
            if now == version:
                return
            run = self.run("update" if now is not None and now < version else "rollback")
            if run.violations:
                self.fail(f"moving to {version}: {run.describe()}")
        self.fail(f"the vehicle did not reach {version}")

    def run(self, kind: str = "update", cuts: list[Cut] | None = None) -> RunRecord:
        """Start a campaign (``update`` or ``rollback``), cut as planned, wait for its end, check."""
        plan = sorted(cuts or [], key=lambda c: c.at)
        with self.client("agent") as agent:
            cid = agent.call(f"agent.{kind}", {"yes": True})["campaign_id"]
        run = RunRecord(kind, cid, cuts_planned=list(plan))
        for cut in [*plan, None]:
            fired, seen = self._watch(cid, cut)
            run.events += seen
            if fired is None or cut is None:
                break
            run.cuts_done.append(f"{cut.victim}@{fired}")
            self.cut(cut.victim)
            self.restart()
        record = self.wait_end(cid)
        run.result, run.detail = record.get("result") or "", record.get("detail") or ""
        run.from_version, run.to_version = record.get("from_version") or "", record.get("to_version") or ""
        check_invariants(self, run, record)
        return run

    def _watch(self, cid: str, cut: Cut | None) -> tuple[str | None, int]:
        """Follow the campaign's events: (the cut's event, or None at the end; events seen)."""
        count = 0
        with self.client("agent") as agent, agent.subscribe(*CAMPAIGN_EVENTS) as events:
            if self.record(cid)["state"] == "ended":
                return None, count
            while True:
                event = self.next_event(events, f"campaign {cid}'s event {cut.at if cut else 'done'}")
                if event.params.get("campaign_id") != cid:
                    continue
                if event.event == "agent.campaign.state" and event.params["state"] == "done":
                    return None, count
                count += 1
                if cut is not None and count >= cut.at:
                    return describe_event(event.event, event.params), count

    # -- resource use (soak) ------------------------------------------------------------------------
    def usage(self) -> dict[str, tuple[int, int]]:
        """Per daemon: (RSS in KiB, open file descriptors), from /proc."""
        out = {}
        for name, pid in self.pids(DAEMON_NAMES).items():
            rss = 0
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
            out[name] = (rss, len(os.listdir(f"/proc/{pid}/fd")))
        return out


# -- invariants --------------------------------------------------------------------------------------
def image_versions(bench: TortureBench, ecu: str) -> dict[str, str]:
    """sha256 of each image ``ecu`` may hold -> its software version."""
    return {hashlib.sha256(bench.scenario.image_bytes(ecu, v)).hexdigest(): v
            for v in {versions[ecu] for versions in ECU_VERSIONS.values()}}


def ecu_image(bench: TortureBench, ecu: str) -> tuple[str | None, str]:
    """(software version of the active bank's image or None, a description with its CRC-32)."""
    store = bench.scenario.dir / "sim-state" / ecu
    meta = json.loads((store / "state.json").read_text())
    bank = int(meta["active_bank"])
    size = bench.scenario.options.image_size
    with open(store / ("bank_a.bin", "bank_b.bin")[bank], "rb") as f:
        data = f.read(size)
    version = image_versions(bench, ecu).get(hashlib.sha256(data).hexdigest())
    valid = bool(meta.get("validated", [True, True])[bank])
    text = f"{ecu}: bank {'AB'[bank]} crc32 {zlib.crc32(data):08x} ({version or 'no release image'}" \
           f"{'' if valid else ', not validated'})"
    return (version if valid else None), text


def check_invariants(bench: TortureBench, run: RunRecord, record: dict[str, Any]) -> None:
    """Append to ``run.violations`` every invariant the ended campaign breaks (goal: none)."""
    v = run.violations
    if run.result not in GOOD_RESULTS:
        v.append(f"campaign ended {run.result!r}, neither completed nor rolled back: {record.get('detail')}")
    old, new = (run.from_version, run.to_version)
    try:
        run.vehicle_version = bench.vehicle_version()
        ota_mode = bench.ota_mode_active()
    except OtaError as e:
        v.append(f"vehicle version unreadable: {e}")
        ota_mode = False
    # the kill kit's invariants, with this campaign's direction (a rollback goes from V3 to V2)
    kill_run = KillRun("torture", run.campaign, record=record, rows=bench.journal(run.campaign),
                       version=run.vehicle_version, ota_mode=ota_mode)
    direction = cast(KillBench, SimpleNamespace(start_version=old, new_version=new))
    v.extend(invariant_violations(direction, kill_run))
    # every ECU's flash: an image the release named, all from one vehicle version
    on = run.vehicle_version if run.vehicle_version in ECU_VERSIONS else old
    for ecu in ECUS:
        version, text = ecu_image(bench, ecu)
        if version is None:
            v.append(f"flash {text}")
        elif on in ECU_VERSIONS and version != ECU_VERSIONS[on][ecu]:
            v.append(f"flash {text}, but the vehicle version {on} names {ECU_VERSIONS[on][ecu]}")
    v.extend(journal_violations(bench.scenario.dir / "vehicle" / "journal.db", run.campaign))
    v.extend(cache_violations(bench.scenario.dir / "vehicle"))


def journal_violations(path: Path, campaign: str) -> list[str]:
    """No campaign left running; this one reported (its ``report`` step done)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        out = []
        running = [c for (c,) in db.execute("SELECT id FROM campaigns WHERE state = 'running'")]
        out += [f"journal: campaign {c} still running" for c in running]
        reported = db.execute("SELECT count(*) FROM steps WHERE campaign = ? AND step = 'report' AND state = 'done'",
                              (campaign,)).fetchone()[0]
        if not reported:
            out.append(f"journal: campaign {campaign} has no report step done (not reported)")
        return out
    finally:
        db.close()


def cache_violations(vehicle: Path) -> list[str]:
    """dmclient's cache: each indexed object hashes to its name; pinned and verified images are present."""
    out = []
    db = sqlite3.connect(f"file:{vehicle / 'dmclient.db'}?mode=ro", uri=True)
    try:
        indexed = {sha: size for sha, size in db.execute("SELECT sha256, size FROM cache")}
        pins = Counter(owner for _sha, owner in db.execute("SELECT sha256, owner FROM pins"))
        for sha, _owner in db.execute("SELECT sha256, owner FROM pins"):
            if sha not in indexed:
                out.append(f"cache: pinned image {sha[:12]} lost")
        for (spec,) in db.execute("SELECT spec FROM targets WHERE state = 'done'"):
            sha = _spec_sha256(spec)
            if sha is not None and sha not in indexed:
                out.append(f"cache: verified target {sha[:12]} lost")
    finally:
        db.close()
    if pins["factory"] != len(ECUS):
        out.append(f"cache: {pins['factory']} factory pins instead of {len(ECUS)}")
    for sha, size in indexed.items():
        path = vehicle / "cache" / "objects" / sha
        try:
            data = path.read_bytes()
        except OSError as e:
            out.append(f"cache: entry {sha[:12]} has no file ({e.strerror})")
            continue
        if len(data) != size or hashlib.sha256(data).hexdigest() != sha:
            out.append(f"cache: entry {sha[:12]} does not hash to its name ({len(data)} bytes)")
    return out


def _spec_sha256(spec: str) -> str | None:
    data = json.loads(spec)
    found = data.get("result_hashes") or data.get("hashes") or {}
    sha = found.get("sha256") if isinstance(found, dict) else None
    return sha if isinstance(sha, str) else None


@dataclass
class SoakResult:
    """Campaigns forth and back without a restart, and each daemon's (RSS KiB, open fds) after each."""

    runs: list[RunRecord] = field(default_factory=list)
    samples: list[dict[str, tuple[int, int]]] = field(default_factory=list)

    @property
    def violations(self) -> list[str]:
        return [f"{r.campaign}: {v}" for r in self.runs for v in r.violations]

    @property
    def outcomes(self) -> dict[str, int]:
        return dict(Counter(r.outcome for r in self.runs))

    def fd_growth(self) -> dict[str, int]:
        """Per daemon: open fds after the last campaign minus after the first (the first opens what stays)."""
        first, last = self.samples[0], self.samples[-1]
        return {d: last[d][1] - first[d][1] for d in first}

    def rss_growth(self) -> dict[str, int]:
        """Per daemon: RSS KiB after the last campaign minus after the first."""
        first, last = self.samples[0], self.samples[-1]
        return {d: last[d][0] - first[d][0] for d in first}

    def describe(self) -> str:
        lines = [f"soak: {len(self.runs)} campaigns, outcomes {self.outcomes}"]
        for d in self.samples[0] if self.samples else {}:
            rss = [s[d][0] for s in self.samples]
            fds = [s[d][1] for s in self.samples]
            lines.append(f"  {d:13} RSS KiB first {rss[0]} last {rss[-1]} max {max(rss)}; fds first {fds[0]} "
                         f"last {fds[-1]} max {max(fds)}")
        return "\n".join(lines)


def soak(bench: TortureBench, campaigns: int) -> SoakResult:
    """``campaigns`` campaigns forth and back (update V2 -> V3, rollback V3 -> V2), no daemon restarted."""
    bench.goto(V2)
    pids = bench.pids(DAEMON_NAMES)
    result = SoakResult()
    for i in range(campaigns):
        result.runs.append(bench.run("update" if i % 2 == 0 else "rollback"))
        result.samples.append(bench.usage())
    if bench.pids(DAEMON_NAMES) != pids:
        result.runs[-1].violations.append(f"a daemon restarted during the soak: {pids} -> {bench.pids(DAEMON_NAMES)}")
    return result


# -- fault campaigns (shared by the tests and benchmarks/reliability_report.py) -------------------------
def target_path(bench: TortureBench, ecu: str) -> str:
    """The served target's path under the backend's file server (what the fault knobs name): the
    encrypted file where the release encrypts the image."""
    found = sorted((bench.scenario.dir / "image-repo" / "targets" / ecu).glob(f"*.{ecu}-*.hex*"))
    served = [p for p in found if p.suffix == ".enc"] or found
    if len(served) != 1:
        bench.fail(f"no single served target for {ecu}: {found}")
    return f"{ecu}/{served[0].name}"


def network_faults(brake: str, body: str) -> list[dict[str, Any]]:
    """One of each network fault on the two downloads: a drop mid-body, then a resume whose Range is
    ignored (200, whole file) and that stalls mid-body; a 503, then a 429 with Retry-After."""
    return [{"path": brake, "times": 1, "drop_after": 1000},
            {"path": brake, "times": 1, "ignore_range": True, "stall_after": 500, "stall_seconds": 1.0},
            {"path": body, "times": 1, "status": 503},
            {"path": body, "times": 1, "status": 429, "retry_after": 1}]


def run_with_network_faults(bench: TortureBench) -> tuple[RunRecord, dict[str, list[dict[str, Any]]]]:
    """V2 -> V3 downloaded afresh under :func:`network_faults`; the run and the requests served per file."""
    bench.goto(V2)
    bench.fresh_download_state()
    paths = (target_path(bench, "brake"), target_path(bench, "body"))
    bench.clear_faults()
    bench.set_faults(network_faults(*paths))
    try:
        run = bench.run("update")
    finally:
        served = {path: bench.served(path)["requests"] for path in paths}
        bench.clear_faults()
    run.faults_injected = sum(1 for reqs in served.values() for r in reqs if r["fault"])
    return run, served


#: the small filesystem under the cache, and the pages left free on it: the free-space check passes for
#: each target on its own (brake 4.8 KB; body 4.8 KB encrypted + 4.8 KB decrypted), but brake's two pages
#: and body's two do not fit in three: the kernel's ENOSPC, or the check refusing the second target
SMALL_FS = 4 << 20
SMALL_FS_LEFT = 3 * 4096


@contextlib.contextmanager
def small_cache(bench: TortureBench) -> Iterator[Path | None]:
    """dmclient's cache on a SMALL_FS tmpfs (contents carried over), downloads forgotten, the vehicle on the
    bench's start version; yields the path of a filler file to grow, or None where a tmpfs cannot be mounted
    (not root, no mount)."""
    if os.geteuid() != 0:
        yield None
        return
    cache = bench.scenario.dir / "vehicle" / "cache"
    aside = bench.scenario.dir / "cache-aside"

    def swap(mount: bool) -> bool:
        bench.kill(bench.pids(("dmclient",)))  # dmclient's files must not change under the move
        shutil.copytree(cache, aside)
        ok = True
        if mount:
            ok = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SMALL_FS}", "tmpfs", str(cache)],
                                capture_output=True).returncode == 0
        else:
            subprocess.run(["umount", str(cache)], check=True)
        if ok:
            for item in aside.iterdir():
                target = cache / item.name
                if target.exists():
                    shutil.rmtree(target) if target.is_dir() else target.unlink()
                shutil.move(str(item), target)
        shutil.rmtree(aside)
        bench.restart()
        return ok

    bench.goto(bench.scenario.options.start_version)  # the version fresh_download_state provisions
    bench.fresh_download_state()
    if not swap(True):
        yield None
        return
    try:
        yield cache / "filler"
    finally:
        (cache / "filler").unlink(missing_ok=True)
        swap(False)


def fill(filler: Path, leave: int) -> None:
    """Grow ``filler`` until its filesystem has at most ``leave`` bytes free."""
    free = shutil.disk_usage(filler.parent).free
    with open(filler, "ab") as f:
        f.write(b"\0" * max(0, free - leave))
        f.flush()
        os.fsync(f.fileno())


#: the bench bus faults of a campaign under :func:`run_with_bus_faults`: each kind at a rate per frame of the
#: ECUs' diagnostic traffic (the flasher-level rates of tests/torture/test_bus_faults_e2e.py)
BUS_FAULTS = {"drop": 0.004, "delay": 0.02, "error": 0.02, "corrupt": 0.002}


def run_with_bus_faults(bench: TortureBench, rates: dict[str, float], seed: int) -> tuple[RunRecord, dict[str, int]]:
    """An update from V2 whose first flash attempts run over faulty buses: from the first flash step's start to
    the first flash step's end (done or failed), both bench bus channels drop / delay / error / corrupt the ECUs'
    diagnostic frames (ISO-TP ids, so the vehicle's signals stay clean) at ``rates`` (seeded): a disturbance
    the stack must come out of whole, by its retries or by a rollback on the clean bus. The run checked, the
    faults injected per kind (summed over the channels)."""
    from agent.config.vehicle import load_vehicle_config

    bench.goto(V2)
    vehicle = load_vehicle_config(bench.scenario.vehicle_config)
    ids: dict[str, list[int]] = {}
    for name in ECUS:
        ecu = vehicle.ecu(name)
        ids.setdefault(ecu.bus, []).extend(i for i in (ecu.isotp.tx_id, ecu.isotp.rx_id) if i is not None)
    before = {ch: Counter(bench.scenario.bus_fault_status(ch)["counters"]) for ch in ids}
    after: dict[str, Counter[str]] = {}
    with bench.client("agent") as agent, agent.subscribe("agent.campaign.step", "agent.campaign.state") as events:
        cid = agent.call("agent.update", {"yes": True})["campaign_id"]

        def flash_step(state: str) -> bool:
            while True:
                ev = bench.next_event(events, f"campaign {cid}'s flash step {state}")
                if ev.params.get("campaign_id") != cid:
                    continue
                if ev.event == "agent.campaign.state" and ev.params["state"] == "done":
                    return False
                if ev.event == "agent.campaign.step" and ev.params["step"] == "flash" and \
                        (ev.params["state"] == state or (state != "started" and ev.params["state"] != "started")):
                    return True

        if flash_step("started"):
            try:
                for ch, frame_ids in ids.items():
                    bench.scenario.set_bus_faults(ch, **rates, seed=seed, ids=sorted(frame_ids))
                flash_step("ended")
            finally:
                for ch in ids:
                    after[ch] = Counter(bench.scenario.set_bus_faults(ch)["counters"])  # off
    record = bench.wait_end(cid)
    injected: Counter[str] = Counter()
    for ch in after:
        injected.update({k: after[ch][k] - before[ch][k] for k in rates})
    run = RunRecord("update", cid, result=record.get("result") or "", detail=record.get("detail") or "",
                    from_version=record.get("from_version") or "", to_version=record.get("to_version") or "",
                    faults_injected=sum(injected.values()))
    check_invariants(bench, run, record)
    return run, dict(injected)


#: the simulated ECUs' faults of a campaign under :func:`run_with_ecu_faults`, each firing once (the images are one
#: TransferData block): brake answers its first block with NRC 0x72 and its second TransferData after a storm of
#: NRC 0x78 (inside the tester's cap: waited out); body answers its first block with NRC 0x73 and resets while
#: receiving its second (the flash fails twice: the campaign rolls back, body reflashed on a clean third try)
ECU_FAULTS = {"brake": {"nrc_on_block": {"block": 1, "nrc": 0x72},
                        "pending_storm": {"service": 0x36, "count": 2, "pendings": 20}},
              "body": {"nrc_on_block": {"block": 1, "nrc": 0x73}, "reset_mid_transfer": {"block": 1}}}


def run_with_ecu_faults(bench: TortureBench, faults: dict[str, dict[str, Any]]) -> tuple[RunRecord, list[str]]:
    """An update from V2 with the simulated ECUs answering as ``faults`` say (their ``sim.faults`` knobs: the
    ECUs are power-cycled with them, and without them afterwards). The run checked, the faults that fired."""
    bench.goto(V2)
    ecus = sorted(faults)
    bench.scenario._write_vehicle_config(faults)
    fired: list[str] = []
    try:
        bench.power_cycle(*ecus)
        run = bench.run("update")
        for ecu in ecus:
            status = json.loads((bench.scenario.dir / "sim-state" / ecu / "status.json").read_text())
            fired += [f"{ecu}: {f}" for f in status.get("faults_fired", [])]
    finally:
        bench.scenario._write_vehicle_config({})
        bench.power_cycle(*ecus)
    run.faults_injected = len(fired)
    return run, fired


PAGE = 4096  # tmpfs allocates whole pages


def _pages(n: int) -> int:
    return -(-n // PAGE)


def delta_sizes(bench: TortureBench) -> tuple[int, int, str, str]:
    """The bench's one delta (engine V1 -> V2): (patch bytes, rebuilt image bytes, the sha256 of the base image
    and of the rebuilt one)."""
    old, new = ECU_VERSIONS[V1]["engine"], ECU_VERSIONS[V2]["engine"]
    targets = bench.scenario.dir / "image-repo" / "targets" / "engine"
    patch = sorted(targets.glob(f"*engine-{old}-to-{new}.bsdiff"))
    image = sorted(targets.glob(f"*.engine-{new}.hex"))
    if len(patch) != 1 or len(image) != 1:
        bench.fail(f"the bench release has no single engine delta {old} -> {new}: {patch} {image}")
    base = hashlib.sha256(bench.scenario.images[("engine", old)].read_bytes()).hexdigest()  # as cached: the hex file
    return patch[0].stat().st_size, image[0].stat().st_size, base, hashlib.sha256(image[0].read_bytes()).hexdigest()


@dataclass
class DeltaDiskResult:
    """A V1 -> V2 campaign (engine by delta) whose cache filled up while the patched image was written,
    then the same campaign with the space back."""

    full: RunRecord
    recovery: RunRecord
    #: what the full-disk checks found beyond the run's invariants (goal: none)
    findings: list[str] = field(default_factory=list)
    left_free: int = 0


def cache_leftovers(vehicle: Path) -> list[str]:
    """Half-written files in dmclient's cache (nothing is downloading): a file in ``tmp/`` (decryption or
    delta output), a ``.part`` longer or shorter than its committed length or without a state row."""
    cache = vehicle / "cache"
    out = [f"cache: leftover {p.name} in tmp/" for p in sorted((cache / "tmp").iterdir())]
    db = sqlite3.connect(f"file:{vehicle / 'dmclient.db'}?mode=ro", uri=True)
    try:
        committed = dict(db.execute("SELECT key, committed FROM transfers"))
    finally:
        db.close()
    for part in sorted((cache / "parts").glob("*.part")):
        size = part.stat().st_size
        if committed.get(part.name[:-5]) != size:
            out.append(f"cache: {part.name} is {size} bytes, its committed length is {committed.get(part.name[:-5])}")
    return out


def run_with_full_disk_in_delta(bench: TortureBench) -> DeltaDiskResult | None:
    """On a bench started at V1: the cache on a small tmpfs left with room for the patch and the rebuilt
    engine image by the free-space check's byte count, but a page short of what the two take (tmpfs
    allocates pages): the patch downloads and verifies, then the kernel's ENOSPC hits while the patched
    image is written. Checked: the campaign failed naming :class:`~dmclient.errors.StorageFullError` and the
    reconstruction's file, nothing flashed, no half-written file, the delta base still pinned (its hash is
    checked with every cache entry by the run's invariants). Then the filler goes and the campaign
    completes, the engine rebuilt from the delta. None where a tmpfs cannot be mounted."""
    if bench.scenario.options.start_version != V1:
        bench.fail(f"the delta campaign needs a bench started at {V1}")
    patch, image, base, rebuilt = delta_sizes(bench)
    need = _pages(patch + image)  # what the free-space check asks for, to the page
    if _pages(patch) + _pages(image) <= need:
        bench.fail(f"patch ({patch} B) and image ({image} B) fit in {need} whole pages: no tmpfs size passes the "
                   "free-space check and fills up in the reconstruction; change the image size")
    vehicle = bench.scenario.dir / "vehicle"
    baseline = bench.scenario.dir / "baseline.xml"  # the Uptane check caches it before the download starts
    with small_cache(bench) as filler:
        if filler is None:
            return None
        cached = (vehicle / "cache" / "objects" / hashlib.sha256(baseline.read_bytes()).hexdigest()).exists()
        leave = (need + (0 if cached else _pages(baseline.stat().st_size))) * PAGE
        fill(filler, leave)
        full = bench.run("update")
        full.faults_injected = 1
        findings = [v for v in full.violations if not v.startswith("campaign ended 'failed'")]
        if full.result != "failed" or "StorageFullError" not in full.detail or ".delta" not in full.detail:
            findings.append(f"expected a failure naming StorageFullError and the delta output: {full.detail!r}")
        if full.vehicle_version != V1:
            findings.append(f"the vehicle is on {full.vehicle_version}, not {V1}")
        steps = {r.step for r in bench.journal(full.campaign)}
        findings += [f"journal: step {s} ran on a full disk" for s in ("ota_mode_on", "flash") if s in steps]
        findings += cache_leftovers(vehicle)
        db = sqlite3.connect(f"file:{vehicle / 'dmclient.db'}?mode=ro", uri=True)
        try:
            owners = {o for (o,) in db.execute("SELECT owner FROM pins WHERE sha256 = ?", (base,))}
        finally:
            db.close()
        if "factory" not in owners:
            findings.append(f"cache: the delta base {base[:12]} lost its pin ({owners})")
        filler.unlink()
        recovery = bench.run("update")
        findings += [f"with space back: {v}" for v in recovery.violations]
        db = sqlite3.connect(f"file:{vehicle / 'dmclient.db'}?mode=ro", uri=True)
        try:
            sources = {src for spec, src in db.execute("SELECT spec, source FROM targets WHERE state = 'done'")
                       if _spec_sha256(spec) == rebuilt}
        finally:
            db.close()
        if sources != {"delta"}:
            findings.append(f"with space back: the engine image came from {sorted(sources)}, not the delta alone")
        findings += [f"with space back: {f}" for f in cache_leftovers(vehicle)]
    return DeltaDiskResult(full, recovery, findings, leave)


@dataclass
class HangResult:
    run: RunRecord
    restarts: list[Restart]
    hung_pid: int


def run_with_engine_hang(bench: TortureBench, keeper: WatchdogKeeper, timeout: float = 60.0) -> HangResult:
    """A campaign whose engine hangs (debug hook, SIGUSR2) in its flash phase, the daemons under ``keeper``
    (:meth:`TortureBench.kept`): the keeper aborts and restarts it, the campaign ends; the run checked, the
    restarts made."""
    bench.goto(V2)
    first = len(keeper.restarts)
    with bench.client("agent") as agent, agent.subscribe("agent.campaign.state") as events:
        pid = int(agent.call("daemon.ping")["pid"])
        cid = agent.call("agent.update", {"yes": True})["campaign_id"]
        while bench.next_event(events, "the flash phase").params["state"] != "flash":
            pass
        os.kill(pid, signal.SIGUSR2)  # the engine's worker blocks its event loop from now on
    try:
        keeper.wait_restart("agent", timeout, after=first)
    except OtaError as e:
        bench.fail(f"the hung engine was not restarted: {e}")
    record = bench.wait_end(cid)
    run = RunRecord("update", cid, result=record["result"], detail=record.get("detail") or "",
                    from_version=record["from_version"], to_version=record["to_version"], faults_injected=1)
    check_invariants(bench, run, record)
    if record["attempts"] < 2:
        run.violations.append(f"the campaign was not taken up again after the restart: {record}")
    return HangResult(run, keeper.restarts[first:], pid)


@contextlib.contextmanager
def torture_bench(**options: Any) -> Iterator[TortureBench]:
    """A bench at V2 (one campaign V2 -> V3 on brake (A/B) and body), or as ``options`` say."""
    with TortureBench(ScenarioOptions(**{"start_version": V2, **options})) as bench:
        yield bench


__all__ = ["V1", "V2", "V3", "Cut", "RunRecord", "SoakResult", "TortureBench", "check_invariants", "plan_cuts", "soak",
           "torture_bench"]
