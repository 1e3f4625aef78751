"""Independent download on the bench: one CAN ECU and one Linux ECU in the same campaign.

Real processes on loopback throughout: the bench backend (HTTPS, mutual TLS, Uptane
repositories), the simulated CAN ECUs (UDS over ISO-TP on the bench bus), the gateway's five
daemons, and the Linux ECU ``ivi`` with its own ``ota-dmclient`` and ``ota-ecu-agent``
(:mod:`bench.independent`, :mod:`bench.linux_ecu`) reached over SOME/IP. Release ``bv-1.1.0``
updates the engine (CAN, single bank) and ``ivi`` (a 4 MiB package, A/B slots) together; the
package is encrypted: the Director wraps its content key to ``ivi``'s own key (generated at run
time), the gateway passes the wrapped key in the order, the ECU's dmclient decrypts.

One bench for the module; the tests run in file order and each leaves the vehicle on the
version the next one expects: the cancel and the three failures (a failing Linux ECU install,
a failing CAN ECU, a failing Linux ECU activation with kills on the way) leave it on V1, the
success (with kills on the way) moves it to V2.

Kills (resume): the gateway's engine or update agent is SIGKILLed (``killkit``) at two points
held deterministically: while the Linux ECU downloads (the backend's stall knob holds every
response body after 1 MiB: only the ECU's 4 MiB package is that big; the kill comes once the
ECU reported bytes), and while its install step runs (the ECU's agent is SIGSTOPped once the
download step is done, so the update agent's install job waits on it; the kill comes at the
journalled start of the ECU's flash step, then the ECU's agent continues). The victims are
restarted; the campaign must end with a journal ``killkit.invariant_violations`` finds
nothing wrong in, the Linux ECU on the old or new version together with the CAN ECU.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
import requests

from agent.errors import TransportError
from agent.ipc.sync import SyncClient, SyncSubscription
from bench.independent import LINUX_ECU, VERSIONS
from bench.scenario import V1, V2, failing_flash
from tests.engine.killkit import VICTIMS, KillBench, KillRun, Transition, invariant_violations

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

OLD, NEW = VERSIONS[V1], VERSIONS[V2]


class LinuxStack(KillBench):
    """The bench with the Linux ECU and the gateway's daemons."""

    @property
    def ecu(self) -> Any:
        assert self.scenario.linux is not None
        return self.scenario.linux.bench

    def vehicle_version(self) -> str | None:
        """The vehicle version every ECU's answer matches, the Linux ECU's (over SOME/IP) included."""
        match = self.call("update_agent", "update_agent.baseline.match",
                          {"software_baseline": str(self.scenario.sw_baseline), "refresh": True})
        return match.get("vehicle_version") if match["matched"] else None

    def admin(self, method: str, route: str, **kw: Any) -> Any:
        lines = self.scenario.processes["backend"].early_lines
        url = next(line.split(": ", 1)[1].strip() for line in lines if line.startswith("bench backend admin: "))
        r = requests.request(method, f"{url}{route}", timeout=10, **kw)
        r.raise_for_status()
        return r.json()

    def package_sha256(self) -> str:
        assert self.scenario.linux is not None
        return hashlib.sha256(self.scenario.linux.package(NEW).read_bytes()).hexdigest()

    def run(self, subscribe: tuple[str, ...] = ()) -> tuple[dict[str, Any], list[Any]]:
        """One campaign (consent given) to its end: its record and the events of ``subscribe`` seen meanwhile."""
        seen: list[Any] = []
        with self.client("agent") as agent, agent.subscribe("agent.campaign.state", *subscribe) as events:
            cid = agent.call("agent.update", {"yes": True})["campaign_id"]
            while True:
                event = self.next_event(events, f"the end of campaign {cid}")
                if event.params["campaign_id"] != cid:
                    continue
                if event.event == "agent.campaign.state" and event.params["state"] == "done":
                    break
                seen.append(event)
        return self.record(cid), seen

    def stalled(self) -> Any:
        """Every response body of the backend stalls after 1 MiB until the stall is released at exit."""
        return _Stall(self)

    def until_step(self, events: SyncSubscription, cid: str, step: str, ecu: str | None, state: str,
                   seen: list[Any] | None = None) -> None:
        """Wait for the journal transition (``agent.campaign.step``) of ``cid``; other events go to ``seen``."""
        while True:
            event = self.next_event(events, f"{step} {ecu or ''} {state} of campaign {cid}")
            p = event.params
            if p["campaign_id"] != cid:
                continue
            if event.event == "agent.campaign.step" and (p["step"], p["ecu"], p["state"]) == (step, ecu, state):
                return
            if event.event == "agent.campaign.state" and p["state"] == "done":
                self.fail(f"campaign {cid} ended before {step} {ecu or ''} {state}")
            if seen is not None:
                seen.append(event)

    @contextmanager
    def engine_events(self, *names: str) -> Iterator[tuple[SyncClient, SyncSubscription]]:
        """A client of the engine subscribed to ``names`` and ``agent.campaign.state``; the engine may be
        SIGKILLed meanwhile."""
        agent = self.client("agent")
        try:
            yield agent, agent.subscribe(*names, "agent.campaign.state")
        finally:
            with suppress(TransportError):  # the engine may be gone
                agent.close()

    def campaign_with_kills(self, download_victim: str, install_victim: str,
                            progress: list[Any] | None = None) -> KillRun:
        """One campaign (consent given): ``download_victim`` SIGKILLed while the Linux ECU downloads,
        ``install_victim`` while its install step runs (both held, see the module docstring), each
        restarted; waited to its end. The ECU's download progress events seen go to ``progress``."""
        run = KillRun(f"{download_victim} at the download, {install_victim} at the install")
        self.ecu.forget(self.package_sha256())  # downloaded by a campaign before: the ECU's download must run
        with self.stalled() as stall:
            pids = self.pids(VICTIMS[download_victim])
            with self.engine_events("agent.campaign.progress") as (agent, events):
                run.campaign_id = cid = agent.call("agent.update", {"yes": True})["campaign_id"]
                while True:  # the ECU reported bytes of its own download, which the stall holds
                    p = self.next_event(events, "the Linux ECU's download progress").params
                    if p["campaign_id"] == cid and p.get("ecu") == LINUX_ECU and p.get("bytes_done", 0) > 0:
                        break
                assert p["step"] == "download" and p["bytes_done"] < p["bytes_total"], p
                self.kill(pids)
                run.hit.append(Transition("download", None, "started"))
            self.restart()
            pids = self.pids(VICTIMS[install_victim])
            ecu_pid = self.ecu.pid("ecu_agent")
            assert ecu_pid is not None
            with self.engine_events("agent.campaign.step", "agent.campaign.progress") as (agent, events):
                stall.release()  # the ECU's download goes on: the download step ends done
                self.until_step(events, cid, "download", None, "done", progress)
                with self.paused("ecu_agent", ecu_pid):  # the install job waits on the ECU
                    self.until_step(events, cid, "flash", LINUX_ECU, "started")
                    self.kill(pids)
                run.hit.append(Transition("flash", LINUX_ECU, "started"))
        self.restart()
        run.record = self.wait_end(cid)
        run.rows = self.journal(cid)
        run.version = self.vehicle_version()
        run.ota_mode = self.ota_mode_active()
        run.violations = invariant_violations(self, run)
        return run

    def job_done(self, events: SyncSubscription, job_id: str) -> dict[str, Any]:
        while True:
            event = self.next_event(events, f"the end of update-agent job {job_id}")
            if event.params["job_id"] == job_id:
                return dict(event.params)


class _Stall:
    """The backend's stall knob (every body stalls after 1 MiB); released once (``release`` or the exit)."""

    def __init__(self, stack: LinuxStack) -> None:
        self.stack = stack
        self.held = False

    def __enter__(self) -> _Stall:
        self.stack.admin("PUT", "/faults", json=[{"path": "*", "stall_after": 1 << 20}])
        self.held = True
        return self

    def release(self) -> None:
        if self.held:
            self.held = False
            self.stack.admin("DELETE", "/faults")
            self.stack.admin("POST", "/release")  # the stalled responses go on

    def __exit__(self, *exc: object) -> None:
        self.release()


@pytest.fixture(scope="module")
def stack() -> Iterator[LinuxStack]:
    with LinuxStack.running(linux_ecu=True, linux_image_size=4 << 20, linux_encrypt=True) as s:
        yield s


def _outcomes(record: dict[str, Any]) -> dict[str, str]:
    return {e: s["outcome"] for e, s in record["ecus"].items()}


def test_cancel_during_the_linux_ecus_download_cancels_it_at_the_ecu(stack: LinuxStack) -> None:
    assert stack.vehicle_version() == V1 and stack.ecu.running_version() == OLD
    # every response body stalls after 1 MiB: only the Linux ECU's 4 MiB package is that big
    with stack.stalled(), stack.client("agent") as agent, agent.subscribe("agent.campaign.progress") as progress, \
        stack.client("update_agent") as ua, ua.subscribe("update_agent.job.done") as jobs:
        cid = agent.call("agent.update", {"yes": True})["campaign_id"]
        while True:  # the ECU's own download, as the engine publishes it (what otactl watch shows)
            p = stack.next_event(progress, "the Linux ECU's download progress").params
            if p["campaign_id"] == cid and p["ecu"] == LINUX_ECU and p["bytes_done"] > 0:
                break
        assert p["step"] == "download" and p["bytes_done"] < p["bytes_total"] == 4 << 20
        assert "cancelled before OTA mode" in agent.call("agent.cancel")["detail"]
        record = stack.wait_end(cid)
        job = stack.job_done(jobs, f"{cid}-download-{LINUX_ECU}-1")
    assert record["result"] == "cancelled", record
    assert job["state"] == "failed" and "cancelled" in job["error"]["message"], job
    status = stack.call("update_agent", "update_agent.linux.status", {"ecu": LINUX_ECU, "campaign_id": cid})
    assert status["state"] == "cancelled" and status["bytes_done"] < 4 << 20, status
    assert stack.vehicle_version() == V1 and stack.ecu.running_version() == OLD


def test_a_failing_linux_install_rolls_the_can_ecu_back(stack: LinuxStack) -> None:
    # the knob fails the write into ivi's inactive slot (rewritten even when it holds this image already)
    stack.ecu.set_fail("install")
    try:
        record, _ = stack.run()
    finally:
        stack.ecu.set_fail("none")
    assert record["result"] == "rolled_back", record
    assert "flashing ivi failed 2 times" in record["detail"]
    assert _outcomes(record) == {"engine": "rolled_back", "ivi": "rolled_back"}
    assert record["ecus"]["engine"]["note"] == "rolled back: previous image reflashed"
    assert stack.ecu.running_version() == OLD
    assert stack.vehicle_version() == V1


def test_a_failing_can_ecu_rolls_the_linux_ecu_back(stack: LinuxStack) -> None:
    # the engine (single bank) fails both flash attempts; its rollback (a reflash) works
    stack.scenario.restart_ecus(faults={"engine": failing_flash(times=2)})
    try:
        record, _ = stack.run()
    finally:
        stack.scenario.restart_ecus(faults={})
    assert record["result"] == "rolled_back", record
    assert "flashing engine failed 2 times" in record["detail"]
    # ivi was installed and activated meanwhile (its own "bus"): all-or-nothing takes it back too
    assert _outcomes(record) == {"engine": "rolled_back", "ivi": "rolled_back"}
    assert stack.ecu.running_version() == OLD
    assert stack.vehicle_version() == V1


def test_kills_while_the_linux_ecu_downloads_and_installs_then_its_activation_fails_roll_both_back(
        stack: LinuxStack) -> None:
    stack.ecu.set_fail("activate")  # the new slot never comes up: the campaign must roll back, resumed twice
    try:
        run = stack.campaign_with_kills("engine", "update_agent")
    finally:
        stack.ecu.set_fail("none")
    assert not run.violations, run.describe()
    assert run.record["result"] == "rolled_back", run.describe()
    assert "flashing ivi failed" in run.record["detail"], run.describe()
    assert _outcomes(run.record) == {"engine": "rolled_back", "ivi": "rolled_back"}
    # the download step ran again after the engine's restart (a new job, the ECU's status returned)
    downloads = [r for r in run.rows if r.step == "download"]
    assert [r.state for r in downloads] == ["interrupted", "done"], run.describe()
    # the update agent's kill cut the ECU's install job; the attempts after it met the failing activation
    assert [r.state for r in run.rows if r.key == ("flash", LINUX_ECU)] == ["interrupted", "failed", "failed"], \
        run.describe()
    assert stack.ecu.running_version() == OLD and stack.ecu.slots()["next"] == "a"
    assert run.version == V1


def test_the_linux_ecu_downloads_its_package_itself_and_the_campaign_succeeds(stack: LinuxStack) -> None:
    # on the way: the update agent SIGKILLed while the ECU downloads, the engine while the ECU's install runs
    events: list[Any] = []
    run = stack.campaign_with_kills("update_agent", "engine", progress=events)
    assert not run.violations, run.describe()
    # each kill cut the step it hit; the step ran again and ended done (the ECU answered the repeats by status)
    assert [r.state for r in run.rows if r.step == "download"] == ["interrupted", "done"], run.describe()
    assert [r.state for r in run.rows if r.key == ("flash", LINUX_ECU)] == ["interrupted", "done"], run.describe()
    record = run.record
    assert record["result"] == "succeeded", record
    assert _outcomes(record) == {"engine": "installed", "ivi": "installed"}
    assert stack.vehicle_version() == V2  # the baseline lists ivi 5.1.0: its running version counts
    assert stack.ecu.running_version() == NEW
    ivi_reading = stack.call("update_agent", "update_agent.versions.read")["ecus"][LINUX_ECU]  # otactl versions
    assert (ivi_reading["software_version"], ivi_reading["source"]) == (NEW, "someip")
    # its progress came as the engine's agent.campaign.progress events (otactl watch's bars), to the last byte
    # (a fresh download: the kit made the ECU's dmclient forget the package the campaigns before fetched)
    ivi = [e.params for e in events if e.event == "agent.campaign.progress" and e.params["ecu"] == LINUX_ECU
           and e.params["step"] == "download"]
    assert ivi and ivi[-1]["bytes_done"] == ivi[-1]["bytes_total"] == 4 << 20, ivi
    # the package's bytes never went through the gateway's dmclient: not in its cache...
    sha = stack.package_sha256()
    gateway_cache = stack.scenario.dir / "vehicle" / "cache"
    cached = {hashlib.sha256(p.read_bytes()).hexdigest() for p in gateway_cache.rglob("*") if p.is_file()}
    assert sha not in cached
    assert sha in {hashlib.sha256(p.read_bytes()).hexdigest() for p in Path(stack.ecu.cache_dir).rglob("*")
                   if p.is_file()}
    # ...and the backend served it (in this module's campaigns) encrypted only (the key wrapped to the ECU's own
    # key), to the ECU's own client certificate only
    served = [r for r in stack.admin("GET", "/stats")["requests"] if f"{LINUX_ECU}-{NEW}.pkg" in r["path"]]
    assert served and all(r["path"].endswith(".pkg.enc") for r in served), served
    assert {r["client"] for r in served} == {f"{stack.scenario.vin}:{LINUX_ECU}"}, served
