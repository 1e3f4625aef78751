"""The update agent daemon's pure parts: job table and state machine, per-bus scheduling, progress
rate limit, functional request encoding, config section. No bus, no processes."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import can
import pytest
from uadkit import BENCH_CONFIG

from agent.config.vehicle import BusConfig, load_vehicle_config
from agent.errors import ConfigurationError
from agent.runtime.config import load_config
from update_agent.daemon_config import UpdateAgentConfig
from update_agent.functional import Awaited, functional_buses, functional_targets, send_functional
from update_agent.job_progress import ProgressThrottle
from update_agent.jobs import FAILED, RUNNING, SUCCEEDED, IllegalTransition, Job, JobConflict, JobTable
from update_agent.scheduler import BusScheduler


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- job table -----------------------------------------------------------------------------------
def test_job_ids_are_idempotent_and_a_reused_id_with_other_params_is_refused(tmp_path: Path) -> None:
    with JobTable.open(tmp_path / "jobs.db") as table:
        job, created = table.submit("j1", "flash", "engine", "powertrain", {"image_path": "/a.hex"})
        assert created and job.state == "queued"
        again, created = table.submit("j1", "flash", "engine", "powertrain", {"image_path": "/a.hex"})
        assert not created and again == job
        with pytest.raises(JobConflict, match="'j1' is already used for a flash of engine"):
            table.submit("j1", "flash", "engine", "powertrain", {"image_path": "/b.hex"})
        with pytest.raises(JobConflict):
            table.submit("j1", "rollback", "engine", "powertrain", {"image_path": "/a.hex"})


def test_job_state_machine_moves_forward_only(tmp_path: Path) -> None:
    clock = Clock()
    with JobTable.open(tmp_path / "jobs.db", clock=clock) as table:
        table.submit("j", "flash", "body", "body", {})
        clock.now += 1
        assert table.start("j").started_at == 1001.0
        clock.now += 5
        done = table.finish("j", SUCCEEDED, result={"ok": True})
        assert (done.state, done.finished_at, done.result) == (SUCCEEDED, 1006.0, {"ok": True})
        with pytest.raises(IllegalTransition, match="succeeded -> failed"):
            table.finish("j", FAILED)
        with pytest.raises(IllegalTransition, match="succeeded -> running"):
            table.start("j")
        with pytest.raises(IllegalTransition, match="not a final state"):
            table.finish("j", RUNNING)


def test_jobs_cut_short_by_a_restart_report_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    with JobTable.open(path) as table:
        table.submit("ran", "flash", "engine", "powertrain", {})
        table.start("ran")
        table.submit("waited", "flash", "brake", "powertrain", {})
        table.submit("finished", "flash", "body", "body", {})
        table.start("finished")
        table.finish("finished", SUCCEEDED)
        table.submit("linux", "linux_install", "ivi", "someip-ivi", {})
        table.start("linux")
    with JobTable.open(path) as table:  # the next start of the daemon
        recovered = {j.job_id: j for j in table.recover()}
        assert set(recovered) == {"ran", "waited", "linux"}
        assert "ask it again" in recovered["linux"].error["message"]  # type: ignore[index]
        assert "flash script" not in recovered["linux"].error["message"]  # type: ignore[index]
        for job in recovered.values():
            assert job.state == FAILED and job.error is not None and job.error["class"] == "Interrupted"
        assert "while the flash ran" in recovered["ran"].error["message"]  # type: ignore[index]
        assert "before the flash started" in recovered["waited"].error["message"]  # type: ignore[index]
        assert table.get("finished").state == SUCCEEDED  # type: ignore[union-attr]
        assert table.recover() == []


def test_job_table_is_durable_sqlite_and_keeps_a_bounded_history(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    with JobTable.open(path, history_limit=3) as table:
        for i in range(5):
            table.submit(f"j{i}", "flash", "body", "body", {})
            table.start(f"j{i}")
            table.finish(f"j{i}", SUCCEEDED)
        table.submit("live", "flash", "body", "body", {})
        assert [j for j in (f"j{i}" for i in range(5)) if table.get(j) is not None] == ["j2", "j3", "j4"]
        assert table.get("live") is not None  # unfinished jobs are never pruned
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    db.close()


def test_a_newer_job_table_is_refused_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(ConfigurationError, match="schema 99 is newer"):
        JobTable.open(path)


# -- scheduling ----------------------------------------------------------------------------------
def _job(job_id: str, bus: str) -> Job:
    return Job(job_id, "flash", job_id, bus, {}, "queued", 0.0)


def test_one_job_per_bus_in_order_and_buses_in_parallel() -> None:
    async def scenario() -> list[str]:
        log: list[str] = []
        release = {name: asyncio.Event() for name in ("a1", "a2", "b1")}
        started = {name: asyncio.Event() for name in release}

        async def run(job: Job) -> None:
            log.append(f"start {job.job_id}")
            started[job.job_id].set()
            await release[job.job_id].wait()
            log.append(f"end {job.job_id}")

        tasks: list[asyncio.Task[Any]] = []

        def spawn(coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
            tasks.append(asyncio.create_task(coro, name=name))
            return tasks[-1]

        sched = BusScheduler(run, spawn)
        for job in (_job("a1", "A"), _job("a2", "A"), _job("b1", "B")):
            sched.submit(job)
        await asyncio.wait_for(asyncio.gather(started["a1"].wait(), started["b1"].wait()), 5)
        assert not started["a2"].is_set()  # same bus: waits
        assert sched.snapshot() == {"A": {"running": "a1", "queued": ["a2"]}, "B": {"running": "b1", "queued": []}}
        release["a1"].set()
        await asyncio.wait_for(started["a2"].wait(), 5)
        release["a2"].set()
        release["b1"].set()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        assert sched.busy == 0
        return log

    log = asyncio.run(scenario())
    assert log.index("end a1") < log.index("start a2")
    assert log.index("start b1") < log.index("end a1")


def test_bus_users_wait_for_the_jobs_queued_before_them() -> None:
    async def scenario() -> list[str]:
        log: list[str] = []
        gate = asyncio.Event()

        async def run(job: Job) -> None:
            log.append(f"job {job.job_id}")
            await gate.wait()

        sched = BusScheduler(run, lambda coro, name: asyncio.create_task(coro, name=name))
        sched.submit(_job("a1", "A"))
        await asyncio.sleep(0)  # let the job take its bus

        async def reader() -> None:
            async with sched.buses(["B", "A"]):
                log.append("read")

        read = asyncio.create_task(reader())
        await asyncio.sleep(0)
        assert log == ["job a1"]
        gate.set()
        await asyncio.wait_for(read, 5)
        return log

    assert asyncio.run(scenario()) == ["job a1", "read"]


# -- progress rate -------------------------------------------------------------------------------
def test_progress_is_rate_limited_and_the_latest_event_is_not_lost() -> None:
    clock = Clock()
    published: list[dict[str, Any]] = []
    timers: list[tuple[float, Any]] = []
    throttle = ProgressThrottle(10, published.append, clock=clock,
                                call_later=lambda delay, fn: timers.append((delay, fn)))
    throttle.offer({"n": 1})
    assert published == [{"n": 1}]
    for n in range(2, 50):  # a burst of blocks within 10 ms
        clock.now += 0.0002
        throttle.offer({"n": n})
    assert published == [{"n": 1}] and len(timers) == 1
    delay, flush = timers.pop()
    assert delay == pytest.approx(0.1 - 0.0002)  # the rest of the interval, from the first held event
    clock.now = 1000.1
    flush()
    assert published == [{"n": 1}, {"n": 49}]  # the newest pending one
    clock.now += 0.2
    throttle.offer({"n": 50})
    assert published[-1] == {"n": 50}
    clock.now += 0.01
    throttle.offer({"n": 51})
    throttle.close()
    timers.pop()[1]()
    assert published[-1] == {"n": 50}  # nothing after the job ended


# -- functional requests -------------------------------------------------------------------------------
class FakeNotifier:
    def __init__(self) -> None:
        self.listeners: list[Callable[[can.Message], None]] = []

    def add_listener(self, listener: Callable[[can.Message], None]) -> None:
        self.listeners.append(listener)


class FakeLink:
    """A bus on which nobody answers: records the frames sent and the acceptance filters asked for."""

    def __init__(self, bus: BusConfig, frames: list[can.Message], filters: list[dict[str, Any]] | None = None) -> None:
        self.config = bus
        self.frames = frames
        self.filters = filters
        self.notifier = FakeNotifier()

    def send(self, message: can.Message) -> None:
        self.frames.append(message)

    def __enter__(self) -> FakeLink:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class StepClock:
    """Advances ``step`` s each time it is read: deadlines pass without any real wait."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_functional_requests_go_once_per_functional_address_and_silence_is_reported_after_p2() -> None:
    vehicle = load_vehicle_config(BENCH_CONFIG)
    assert [e.name for e in functional_targets(vehicle, "powertrain")] == ["engine"]  # engine+brake share 0x7DF
    frames: list[can.Message] = []
    links: list[FakeLink] = []

    def open_link(bus: BusConfig, filters: list[dict[str, Any]] | None) -> FakeLink:
        links.append(FakeLink(bus, frames, filters))
        return links[-1]

    result = send_functional(vehicle, "communication_control_disable", ["powertrain", "body"],
                             link_factory=open_link, clock=StepClock(0.01))
    assert result.sent == ["1003", "1003", "280301", "280301"]  # each request on both buses before the next
    assert [(f.arbitration_id, bytes(f.data)) for f in frames] == [
        (0x7DF, b"\x02\x10\x03"), (0x7DF, b"\x02\x10\x03"),
        (0x7DF, b"\x03\x28\x03\x01"), (0x7DF, b"\x03\x28\x03\x01")]  # ISO-TP single frames: length + payload
    # only the answers of the ECUs behind the functional address reach the tester
    assert [[f["can_id"] for f in link.filters or []] for link in links] == [[0x7E8, 0x7E9], [0x748]]
    assert all(len(link.notifier.listeners) == 1 for link in links)
    # nobody answered: every ECU given up on once its P2 (0.05 s) had passed on the clock, and the
    # requests went on
    assert [(a.request, a.ecu, a.outcome) for a in result.answers] == [
        (p, ecu, "no_answer") for p in ("1003", "280301") for ecu in ("engine", "brake", "body")]
    assert all(0.05 - 1e-9 <= a.waited < 0.1 for a in result.answers)
    assert result.problems == result.answers
    frames.clear()
    links.clear()
    silent = send_functional(vehicle, "tester_present", ["body"], link_factory=open_link, clock=StepClock(0.01))
    assert (silent.sent, silent.answers) == (["3e80"], [])  # suppressed: nothing awaited
    assert bytes(frames[0].data[:3]) == b"\x02\x3e\x80" and links[0].filters is None
    assert links[0].notifier.listeners == []  # send-only: no receive thread


def test_an_awaited_answer_takes_p2_star_after_response_pending_and_ignores_other_answers() -> None:
    ecu = load_vehicle_config(BENCH_CONFIG).ecus["engine"]  # p2 0.05 s, p2_star 5 s
    awaited = Awaited("powertrain", ecu, bytes.fromhex("8502"), sent_at=100.0)
    assert awaited.expire(100.049) is None
    assert awaited.take(bytes.fromhex("5003003201f4"), 100.01) is None  # a late answer to the 0x10 before
    assert awaited.take(bytes.fromhex("7f8578"), 100.02) is None  # responsePending: P2* from now on
    assert awaited.expire(100.06) is None and awaited.expire(105.01) is None
    final = awaited.take(bytes.fromhex("7f8521"), 104.0)
    assert final is not None and (final.outcome, final.nrc) == ("negative", 0x21)
    assert final.describe() == "engine (bus powertrain): ControlDTCSetting 8502 refused: NRC 0x21 busyRepeatRequest"
    assert final.waited == pytest.approx(4.0)
    silent = Awaited("powertrain", ecu, bytes.fromhex("8502"), sent_at=100.0)
    assert silent.take(bytes.fromhex("7f8578"), 100.01) is None
    assert silent.expire(105.0) is None
    late = silent.expire(105.02)
    assert late is not None and late.outcome == "no_answer" and late.to_json()["nrc"] is None
    ok = Awaited("powertrain", ecu, bytes.fromhex("1003"), sent_at=0.0).take(bytes.fromhex("5003003201f4"), 0.01)
    assert ok is not None and ok.outcome == "positive"


def test_functional_requests_refuse_unknown_buses_and_buses_without_a_functional_address(tmp_path: Path) -> None:
    vehicle = load_vehicle_config(BENCH_CONFIG)
    with pytest.raises(ConfigurationError, match="unknown bus 'chassis'"):
        functional_targets(vehicle, "chassis")
    text = BENCH_CONFIG.read_text().replace("      functional_id: 0x7DF\n", "")
    (tmp_path / "bench-vehicle.dbc").write_bytes((BENCH_CONFIG.parent / "bench-vehicle.dbc").read_bytes())
    (tmp_path / "v.yaml").write_text(text)
    bare = load_vehicle_config(tmp_path / "v.yaml")
    with pytest.raises(ConfigurationError, match="bus 'body': no ECU on it has a functional address"):
        send_functional(bare, "tester_present", ["body"], link_factory=lambda bus, filters: FakeLink(bus, []))
    with pytest.raises(ConfigurationError, match="no ECU of the vehicle has a functional address"):
        functional_buses(bare)
    assert functional_buses(vehicle) == ["powertrain", "body"]


# -- configuration -------------------------------------------------------------------------------
def test_config_section_paths_are_relative_to_the_file_and_typos_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "stack.yaml"
    path.write_text("update_agent:\n  vehicle_config: vehicle.yaml\n  state_dir: /var/lib/ua\n"
                    "  baselines: {hardware: hw.xml}\n  jobs: {history_limit: 7, progress_rate: 4}\n")
    cfg = load_config(UpdateAgentConfig, "update_agent", path, env={})
    assert cfg.vehicle_config == tmp_path / "vehicle.yaml" and cfg.state_dir == Path("/var/lib/ua")
    assert cfg.hardware_baseline == tmp_path / "hw.xml" and cfg.software_baseline is None
    assert (cfg.history_limit, cfg.progress_rate, cfg.uds_timeout) == (7, 4.0, None)
    path.write_text("update_agent:\n  jobs: {history_limt: 7}\n")
    with pytest.raises(ConfigurationError, match="history_limt") as e:
        load_config(UpdateAgentConfig, "update_agent", path, env={})
    assert e.value.key == "update_agent.jobs"  # type: ignore[attr-defined]
    path.write_text("update_agent:\n  jobs: {progress_rate: 0}\n")
    with pytest.raises(ConfigurationError, match="progress_rate"):
        load_config(UpdateAgentConfig, "update_agent", path, env={})
