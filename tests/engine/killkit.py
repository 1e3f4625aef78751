"""Kill kit: SIGKILL daemons of a running campaign at chosen journal transitions, restart, check invariants.

For the engine's end-to-end tests and the reliability-torture work. The pieces:

* :class:`Transition`: one journal transition of a campaign, a step attempt (per ECU for flash
  and rollback) journalled as ``started`` or as ended (done | failed | interrupted);
  :func:`campaign_transitions` lists those of a campaign in journal order,
  :data:`V2_V3_STEPS` are the steps of the bench's V2 -> V3 campaign (brake and body);
* :class:`KillBench`: the whole bench (:class:`bench.scenario.Scenario`) plus the five daemons
  under the :class:`~agent.runtime.supervisor.Supervisor`: IPC clients, the journal as rows,
  SIGKILL of a victim set (:data:`VICTIMS`), restart, the vehicle version read from the ECUs,
  the reset of the vehicle to the start version between cases, the daemons' log tails;
* :func:`run_with_kills`: one campaign, the victims SIGKILLed at each target transition it
  passes (waited for on ``agent.campaign.step`` events, which the engine sends once the
  journal row is committed), restarted through the supervisor each time, waited to its end;
* :func:`invariant_violations`: what must hold after every such campaign (old or new vehicle
  version, never between; result consistent with it; no row left ``started``; no step redone
  after ``done``; OTA mode off; an interrupted flash redone from the start as a new job).

Events sent while no one listens (the engine restarting) are lost: after each restart the kit
subscribes first, then reads the journal once; a target the campaign went past in between is
reported as ``passed`` (not hit) and :func:`cover` runs further campaigns until every target
was hit exactly. Every wait has a timeout and fails with the daemons' log tails.
"""

from __future__ import annotations

import itertools
import os
import select
import signal
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

from agent.errors import OtaTimeoutError, TransportError
from agent.ipc.subscription import EventMessage
from agent.ipc.sync import SyncClient, SyncSubscription
from agent.runtime.supervisor import DAEMONS, Supervisor
from bench.scenario import ROUTE, SW_BASELINE, Scenario, ScenarioOptions

#: victim name -> the daemons SIGKILLed together
VICTIMS: dict[str, tuple[str, ...]] = {
    "engine": ("agent",),
    "update_agent": ("update_agent",),
    "dmclient": ("dmclient",),
    "hmi_agent": ("hmi_agent",),
    "system_agent": ("system_agent",),
    "all": tuple(d.name for d in DAEMONS),
}
#: s of silence (no campaign event) after which a wait fails
EVENT_TIMEOUT = 120.0
#: s a SIGKILLed process may take to be gone
EXIT_TIMEOUT = 30.0
#: the steps of the bench's V2 -> V3 campaign started with ``yes`` (no consent), in journal order;
#: brake (powertrain) and body (body bus) flash in parallel
V2_V3_STEPS: tuple[tuple[str, str | None], ...] = (
    ("check", None), ("download", None), ("preconditions", None), ("ota_mode_on", None),
    ("flash", "brake"), ("flash", "body"), ("verify", None), ("ota_mode_off", None), ("report", None))
#: rows the driver journals outside the step loop (the install watch); not campaign transitions
NOT_STEPS = frozenset({"watch"})


@dataclass(frozen=True)
class Transition:
    """A step attempt journalled as ``started`` or as ended (``edge``)."""

    step: str
    ecu: str | None
    edge: str  # started | ended

    def __str__(self) -> str:
        return f"{self.step}{':' + self.ecu if self.ecu else ''}:{self.edge}"

    @classmethod
    def parse(cls, text: str) -> Transition:
        """From its ``str``: ``step:edge`` or ``step:ecu:edge``."""
        step, _, rest = text.partition(":")
        ecu, _, edge = rest.rpartition(":")
        if edge not in ("started", "ended"):
            raise ValueError(f"{text!r}: a transition ends in :started or :ended")
        return cls(step, ecu or None, edge)

    def matches(self, step: str, ecu: str | None, state: str) -> bool:
        return (step, ecu) == (self.step, self.ecu) and (state == "started") == (self.edge == "started")


def campaign_transitions(steps: Sequence[tuple[str, str | None]] = V2_V3_STEPS) -> list[Transition]:
    """Every step's start and end in journal order (steps running in parallel: all starts, then all ends)."""
    out: list[Transition] = []
    i = 0
    while i < len(steps):
        group = [steps[i]]
        while i + len(group) < len(steps) and steps[i + len(group)][0] == steps[i][0] and steps[i][1] is not None:
            group.append(steps[i + len(group)])
        out += [Transition(s, e, "started") for s, e in group] + [Transition(s, e, "ended") for s, e in group]
        i += len(group)
    return out


@dataclass(frozen=True)
class JournalRow:
    id: int
    step: str
    ecu: str | None
    state: str
    job_id: str | None
    result_job: str | None
    error: str | None
    started: float
    ended: float | None

    @property
    def key(self) -> tuple[str, str | None]:
        return (self.step, self.ecu)


def journal_transitions(rows: Sequence[JournalRow]) -> list[Transition]:
    """The transitions a campaign's journal shows, in the order they were written.

    A leftover ``started`` row closed as ``interrupted`` by the engine when it starts the step
    again (no error text) is not a transition of its own: the step's next ``started`` is.
    """
    stamped: list[tuple[float, int, Transition]] = []
    for r in rows:
        if r.step in NOT_STEPS:
            continue
        stamped.append((r.started, 2 * r.id, Transition(r.step, r.ecu, "started")))
        if r.ended is not None and (r.state != "interrupted" or r.error is not None):
            stamped.append((r.ended, 2 * r.id + 1, Transition(r.step, r.ecu, "ended")))
    return [t for *_k, t in sorted(stamped, key=lambda s: (s[0], s[1]))]


_Bench = TypeVar("_Bench", bound="KillBench")


class KillBench:
    """The bench and the five daemons as processes; see the module docstring."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.sup = Supervisor(scenario.stack_config, env=scenario.env, ready_timeout=60, grace=10)
        self.start_version = scenario.options.start_version
        #: the next node of the route (the start itself at its end: no campaign changes anything)
        self.new_version = ROUTE[min(ROUTE.index(self.start_version) + 1, len(ROUTE) - 1)]

    @classmethod
    @contextmanager
    def running(cls: type[_Bench], **options: Any) -> Iterator[_Bench]:
        """Build the bench with ``options`` (:class:`ScenarioOptions`), start the daemons; stop all at exit."""
        scenario = Scenario(ScenarioOptions(**options))
        scenario.up()
        try:
            bench = cls(scenario)
            bench.sup.up()
            try:
                yield bench
            finally:
                bench.sup.down()
        finally:
            scenario.down()

    # -- talking to the daemons -------------------------------------------------------------------
    def client(self, daemon: str) -> SyncClient:
        client = SyncClient.for_daemon(daemon, runtime_dir=self.scenario.runtime_dir, call_timeout=120.0)
        try:
            client.connect()
        except BaseException:
            client.close()
            raise
        return client

    def call(self, daemon: str, method: str, params: Mapping[str, Any] | None = None) -> Any:
        with self.client(daemon) as c:
            return c.call(method, params or {})

    @contextmanager
    def campaign(self, params: Mapping[str, Any] | None = None) -> Iterator[tuple[SyncClient, SyncSubscription, str]]:
        """Start a campaign (``agent.update``, default ``yes``): the engine client, its step and state events
        (subscribed before the start), the campaign id."""
        with self.client("agent") as agent, \
                agent.subscribe("agent.campaign.step", "agent.campaign.state") as events:
            yield agent, events, agent.call("agent.update", dict(params or {"yes": True}))["campaign_id"]

    def vehicle_version(self) -> str | None:
        """The vehicle version the ECUs' answers match (None: no version of the baseline)."""
        match = self.call("update_agent", "update_agent.baseline.match",
                          {"software_baseline": str(SW_BASELINE), "refresh": True})
        return match.get("vehicle_version") if match["matched"] else None

    def ota_mode_active(self) -> bool:
        return bool(self.call("system_agent", "system_agent.ota_mode.status")["active"])

    def record(self, campaign_id: str) -> dict[str, Any]:
        """The campaign's history record (agent.history)."""
        for c in self.call("agent", "agent.history", {"limit": 50})["campaigns"]:
            if c["id"] == campaign_id:
                return dict(c)
        self.fail(f"campaign {campaign_id} is not in the engine's history")

    def journal(self, campaign_id: str) -> list[JournalRow]:
        """The campaign's step rows, read from the journal file (a concurrent WAL reader)."""
        db = sqlite3.connect(f"file:{self.scenario.dir / 'vehicle' / 'journal.db'}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT id, step, ecu, state, json_extract(data, '$.job_id'), "
                              "json_extract(result, '$.job_id'), error, started, ended FROM steps "
                              "WHERE campaign = ? ORDER BY id", (campaign_id,)).fetchall()
        finally:
            db.close()
        return [JournalRow(*r) for r in rows]

    # -- processes --------------------------------------------------------------------------------
    def pids(self, daemons: Sequence[str]) -> dict[str, int]:
        return {d: int(self.call(d, "daemon.ping")["pid"]) for d in daemons}

    def kill(self, pids: Mapping[str, int]) -> None:
        """SIGKILL the processes and wait until each is gone (reaped: the supervisor started them)."""
        for name in sigkill(pids):
            self.fail(f"{name} (pid {pids[name]}) still runs {EXIT_TIMEOUT:g} s after SIGKILL")

    @contextmanager
    def paused(self, name: str, pid: int) -> Iterator[None]:
        """SIGSTOP a daemon (get its pid beforehand: :meth:`pids`); SIGCONT at exit.

        A step calling it stays running meanwhile: a deterministic point to try a cancel at.
        """
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(pid, signal.SIGCONT)

    def restart(self) -> None:
        """Start every daemon that is not running, all at once as at boot (the supervisor waits for each)."""
        self.sup.up(parallel=True)

    def reset(self) -> None:
        """Put the vehicle back on the start version after a campaign that succeeded.

        With the engine's own rollback campaign (``otactl rollback``: the previous images the
        succeeded campaign kept), which costs less than restarting the ECUs in factory state and is
        one more real campaign on the way; it must succeed.
        """
        if self.vehicle_version() == self.start_version:
            return
        cid = self.call("agent", "agent.rollback", {"yes": True})["campaign_id"]
        record = self.wait_end(cid)
        version = self.vehicle_version()
        if (record["result"], version) != ("succeeded", self.start_version):
            self.fail(f"the rollback campaign {cid} ended {record['result']} ({record['detail']}) with the vehicle "
                      f"on {version}, not {self.start_version}")

    # -- failures ---------------------------------------------------------------------------------
    def log_tails(self, lines: int = 25) -> str:
        out = []
        logs = [*self.scenario.logs.glob("*.log"), *(self.scenario.runtime_dir / "logs").glob("*.log")]
        for log in sorted(logs):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {log.name}\n" + "\n".join(tail))
        return "\n".join(out)

    def fail(self, message: str) -> NoReturn:
        raise AssertionError(f"{message}\n{self.log_tails()}")

    def next_event(self, events: SyncSubscription, what: str) -> EventMessage:
        try:
            return events.get(timeout=EVENT_TIMEOUT)
        except (OtaTimeoutError, TransportError) as e:
            self.fail(f"no campaign event within {EVENT_TIMEOUT:g} s while waiting for {what}: {e}")

    def wait_end(self, campaign_id: str) -> dict[str, Any]:
        """Wait on events until the campaign has ended (each event restarts the timeout); its record."""
        with self.client("agent") as agent, agent.subscribe("agent.campaign.state", "agent.campaign.step") as events:
            while True:
                record = self.record(campaign_id)
                if record["state"] == "ended":
                    return record
                event = self.next_event(events, f"the end of campaign {campaign_id}")
                while not (event.event == "agent.campaign.state" and event.params["campaign_id"] == campaign_id
                           and event.params["state"] == "done"):
                    event = self.next_event(events, f"the end of campaign {campaign_id}")


@dataclass
class KillRun:
    """One campaign with its kills."""

    victim: str
    campaign_id: str = ""
    #: targets the victims were SIGKILLed at, in order
    hit: list[Transition] = field(default_factory=list)
    #: targets the campaign went past unseen (while restarting) or never reached
    missed: list[Transition] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)
    rows: list[JournalRow] = field(default_factory=list)
    version: str | None = None
    ota_mode: bool = False
    violations: list[str] = field(default_factory=list)

    def describe(self) -> str:
        rows = "\n".join(f"  {r.id} {r.step} {r.ecu or ''} {r.state} job={r.job_id} {r.error or ''}"
                         for r in self.rows)
        return (f"campaign {self.campaign_id}: victim {self.victim}, killed at {[str(t) for t in self.hit]}, "
                f"result {self.record.get('result')} ({self.record.get('detail')}), vehicle {self.version}\n{rows}")


def sigkill(pids: Mapping[str, int], timeout: float = EXIT_TIMEOUT) -> list[str]:
    """SIGKILL the processes (name -> pid) and wait on each pidfd until it is gone, reaping our children;
    the names still running after ``timeout`` s (a pid already gone is skipped)."""
    fds = {}
    stuck = []
    for name, pid in pids.items():
        try:
            fds[name] = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
    try:
        for fd in fds.values():
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        for name, fd in fds.items():
            if not select.select([fd], [], [], timeout)[0]:
                stuck.append(name)
                continue
            with suppress(ChildProcessError):
                os.waitpid(pids[name], 0)
    finally:
        for fd in fds.values():
            os.close(fd)
    return stuck


def _occurred_since(target: Transition, rows: Sequence[JournalRow], mark: tuple[int, frozenset[int]]) -> bool:
    """Whether the journal shows ``target`` after ``mark`` (highest row id, ids of ended rows, at the kill)."""
    top, ended = mark
    for r in rows:
        if r.key != (target.step, target.ecu):
            continue
        if target.edge == "started" and r.id > top:
            return True
        if (target.edge == "ended" and r.state != "started" and r.id not in ended
                and (r.state != "interrupted" or r.error is not None)):
            return True
    return False


def _safe_to_kill(rows: Sequence[JournalRow]) -> bool:
    """No step open now has an attempt that did not end ``done`` already: a kill interrupts each step at most
    once per campaign, so neither the loop breaker nor the bound on flash attempts decides the outcome."""
    open_keys = {r.key for r in rows if r.state == "started"}
    return not any(r.key in open_keys and r.state in ("interrupted", "failed") for r in rows)


def _mark(rows: Sequence[JournalRow]) -> tuple[int, frozenset[int]]:
    return (max((r.id for r in rows), default=0), frozenset(r.id for r in rows if r.state != "started"))


def run_with_kills(bench: KillBench, victim: str, targets: Sequence[Transition], *,
                   params: Mapping[str, Any] | None = None, max_kills: int | None = None) -> KillRun:
    """Start a campaign (``agent.update``), SIGKILL the victims at each target it passes, restart, wait for its end.

    Each target is hit at most once, and only while no open step was interrupted or failed before in this
    campaign (:func:`_safe_to_kill`); targets passed unseen, skipped or not reached are listed in ``missed``.
    """
    run = KillRun(victim)
    pending = list(targets)
    mark = (0, frozenset[int]())
    while True:
        pids = bench.pids(VICTIMS[victim]) if pending else {}
        agent = bench.client("agent")
        try:
            events = agent.subscribe("agent.campaign.step", "agent.campaign.state")
            if not run.campaign_id:
                run.campaign_id = agent.call("agent.update", dict(params or {"yes": True}))["campaign_id"]
            else:  # what the campaign passed while the victims restarted (no one listened)
                rows = bench.journal(run.campaign_id)
                gone = [t for t in pending if _occurred_since(t, rows, mark)]
                run.missed += gone
                pending = [t for t in pending if t not in gone]
            if not pending or (max_kills is not None and len(run.hit) >= max_kills) \
                    or bench.record(run.campaign_id)["state"] == "ended":
                break
            hit = wait_for(bench, events, run.campaign_id, pending,
                           lambda: _safe_to_kill(bench.journal(run.campaign_id)))
            if hit is None:
                break
            bench.kill(pids)
        finally:
            with suppress(TransportError):  # the engine may be gone
                agent.close()
        run.hit.append(hit)
        pending.remove(hit)
        mark = _mark(bench.journal(run.campaign_id))
        bench.restart()
    run.missed += pending
    run.record = bench.wait_end(run.campaign_id)
    run.rows = bench.journal(run.campaign_id)
    run.version = bench.vehicle_version()
    run.ota_mode = bench.ota_mode_active()
    run.violations = invariant_violations(bench, run)
    return run


def wait_for(bench: KillBench, events: SyncSubscription, campaign_id: str, targets: Sequence[Transition],
             accept: Callable[[], bool] = lambda: True) -> Transition | None:
    """The first of ``targets`` the campaign passes while ``accept()`` holds (None: it ended first).

    ``events``: a subscription to ``agent.campaign.step`` and ``agent.campaign.state`` made before
    the transitions can happen.
    """
    while True:
        event = bench.next_event(events, f"one of {[str(t) for t in targets]}")
        p = event.params
        if p["campaign_id"] != campaign_id:
            continue
        if event.event == "agent.campaign.state":
            if p["state"] == "done":
                return None
            continue
        for t in targets:
            if t.matches(p["step"], p["ecu"], p["state"]) and accept():
                return t


def invariant_violations(bench: KillBench, run: KillRun) -> list[str]:
    """What went wrong in ``run`` (empty: every invariant holds); see the module docstring."""
    out: list[str] = []
    old, new = bench.start_version, bench.new_version
    result = run.record.get("result")
    if run.record.get("state") != "ended":
        out.append(f"the campaign has not ended: {run.record.get('state')}")
    if run.version not in (old, new):
        out.append(f"the vehicle matches {run.version}, neither the old {old} nor the new {new}")
    want = new if result == "succeeded" else old
    if run.version != want:
        out.append(f"result {result} but the vehicle is on {run.version} (expected {want})")
    if run.ota_mode:
        out.append("OTA mode is still on after the campaign ended")
    by_key: dict[tuple[str, str | None], list[JournalRow]] = {}
    for r in run.rows:
        if r.state == "started":
            out.append(f"journal row {r.id} ({r.step} {r.ecu or ''}) is left started")
        by_key.setdefault(r.key, []).append(r)
    for key, rows in by_key.items():
        if key[0] in NOT_STEPS:
            continue
        done_at = next((i for i, r in enumerate(rows) if r.state == "done"), None)
        if done_at is not None and done_at != len(rows) - 1:
            out.append(f"{key[0]} {key[1] or ''} was done (row {rows[done_at].id}) and started again "
                       f"(rows {[r.id for r in rows[done_at + 1:]]})")
        if key[0] in ("flash", "rollback"):
            jobs = [r.job_id for r in rows]
            if len(set(jobs)) != len(jobs):
                out.append(f"{key[0]} of {key[1]}: an attempt reused a job id ({jobs}); a redone flash is a new job")
            for prev, nxt in itertools.pairwise(rows):
                if prev.state == "interrupted" and nxt.state == "done" and nxt.result_job not in (nxt.job_id,
                                                                                                 prev.job_id):
                    out.append(f"{key[0]} of {key[1]}: the attempt after an interruption ended with job "
                               f"{nxt.result_job}, neither its own {nxt.job_id} nor the interrupted {prev.job_id}")
    if result == "succeeded":
        outcomes = {e: s["outcome"] for e, s in run.record.get("ecus", {}).items()}
        if any(o != "installed" for o in outcomes.values()):
            out.append(f"succeeded, but the ECU outcomes are {outcomes}")
    return out


def cover(bench: KillBench, victim: str, targets: Sequence[Transition], *, max_campaigns: int,
          max_kills: int | None = None, params: Mapping[str, Any] | None = None) -> dict[Transition, KillRun]:
    """Campaigns until every target was hit exactly once; per target the run that hit it.

    The vehicle is put back on the start version after each campaign that did not end there.
    """
    pending = list(targets)
    by_target: dict[Transition, KillRun] = {}
    campaigns = 0
    while pending:
        if campaigns >= max_campaigns:
            bench.fail(f"{victim}: {max_campaigns} campaigns did not hit {[str(t) for t in pending]}")
        run = run_with_kills(bench, victim, pending, params=params, max_kills=max_kills)
        campaigns += 1
        for t in run.hit:
            by_target[t] = run
        pending = [t for t in pending if t not in run.hit]
        if run.version != bench.start_version:
            bench.reset()
    return by_target

