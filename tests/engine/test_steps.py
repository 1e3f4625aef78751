"""The steps' use of the other daemons, against a scripted fake of their IPC answers (no processes)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from agent.engine.campaign import Action
from agent.engine.steps import PeerEvents, Steps, image_format, order_target
from agent.errors import OtaTimeoutError, TransportError, VehicleStateError

IMAGE = {"path": "/cache/engine.hex", "format": "ihex", "name": "engine/engine-1.1.0.hex", "length": 10,
         "hashes": {"sha256": "ab" * 32}, "release_counter": 2, "software_version": "1.1.0"}


class FakePeers:
    def __init__(self, jobs: dict[str, list[Any]]) -> None:
        self.jobs = jobs  # job id -> answers of job.status in order (an exception is raised)
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.match: dict[str, Any] = {"matched": True, "vehicle_version": "BV 1", "report": {"ecus": []}}

    async def call(self, daemon: str, method: str, params: Mapping[str, Any]) -> Any:
        self.calls.append((method, dict(params)))
        if method == "update_agent.job.status":
            answers = self.jobs.get(params["job_id"], ["unknown"])
            answer = answers.pop(0) if len(answers) > 1 else answers[0]
            if isinstance(answer, Exception):
                raise answer
            if isinstance(answer, dict):
                return {"job_id": params["job_id"], "ecu": "engine", **answer}
            return {"job_id": params["job_id"], "ecu": "engine", "state": answer}
        if method in ("update_agent.job.flash", "update_agent.job.rollback"):
            self.jobs.setdefault(params["job_id"], ["running", "succeeded"])
            return {"job_id": params["job_id"]}
        if method == "update_agent.baseline.match":
            return self.match
        if method == "dmclient.check":
            return {"status": "update", "assignment": {"target_vehicle_version": "BV 2", "ecus": []}}
        if method == "system_agent.preconditions.check":  # the download step asks for its phase's rules
            return {"ok": True, "phase": params["phase"], "failed": [], "state_source": "test"}
        return None

    def methods(self) -> list[str]:
        return [m for m, _ in self.calls]


def steps(peers: FakePeers) -> Steps:
    return Steps("c1", peers.call, lambda *a: None, baseline=Path("/b.xml"), ota_mode_lease=30,
                 poll_interval=0.001, job_timeout=60)


def flash(previous_job: str | None) -> Action:
    return Action("flash", "engine", {"job_id": "c1-flash-engine-2", "previous_job": previous_job, "image": IMAGE})


def test_a_job_that_finished_while_the_engine_was_away_is_not_flashed_again() -> None:
    peers = FakePeers({"c1-flash-engine-1": ["succeeded"]})
    outcome = asyncio.run(steps(peers).run(flash("c1-flash-engine-1"), {}))
    assert outcome.state == "done" and outcome.result["job_id"] == "c1-flash-engine-1"
    assert "update_agent.job.flash" not in peers.methods()
    assert "dmclient.installed.record" in peers.methods()  # the install is recorded all the same


def test_a_job_still_running_after_the_restart_is_awaited_not_duplicated() -> None:
    peers = FakePeers({"c1-flash-engine-1": ["running", "running", "succeeded"]})
    outcome = asyncio.run(steps(peers).run(flash("c1-flash-engine-1"), {}))
    assert outcome.state == "done" and "update_agent.job.flash" not in peers.methods()


def test_an_interrupted_job_is_run_again_from_the_start_under_the_new_id() -> None:
    interrupted = {"state": "failed", "error": {"class": "Interrupted", "message": "the update agent restarted"}}
    peers = FakePeers({"c1-flash-engine-1": [interrupted]})
    outcome = asyncio.run(steps(peers).run(flash("c1-flash-engine-1"), {}))
    assert outcome.state == "done"
    started = [p for m, p in peers.calls if m == "update_agent.job.flash"]
    assert started == [{"job_id": "c1-flash-engine-2", "ecu": "engine", "image_path": "/cache/engine.hex",
                        "format": "ihex", "software_version": "1.1.0",  # an A/B ECU already on it: not reflashed
                        # the verified target's, checked against the file before it is flashed
                        "length": IMAGE["length"], "hashes": IMAGE["hashes"]}]


def test_losing_the_update_agent_while_waiting_asks_again_and_reports_its_verdict() -> None:
    failed = {"state": "failed", "error": {"class": "NegativeResponseError", "message": "0x72",
                                           "step": "transfer"}}
    peers = FakePeers({"c1-flash-engine-2": ["running", TransportError("gone"), failed]})
    outcome = asyncio.run(steps(peers).run(flash(None), {}))
    assert outcome.state == "failed"
    assert outcome.error == "NegativeResponseError: 0x72 (at transfer)"
    assert "dmclient.installed.record" not in peers.methods()


def test_a_daemon_error_fails_the_step_with_its_message_instead_of_raising() -> None:
    # (a daemon that is gone interrupts the step instead: see the test below)
    async def call(daemon: str, method: str, params: Mapping[str, Any]) -> Any:
        raise VehicleStateError("campaign c0 holds OTA mode")
    s = Steps("c1", call, lambda *a: None, baseline=Path("/b.xml"), ota_mode_lease=30, poll_interval=0.001,
              job_timeout=60)
    outcome = asyncio.run(s.run(Action("ota_mode_on"), {}))
    assert (outcome.state, outcome.error) == ("failed", "VehicleStateError: campaign c0 holds OTA mode")


def test_image_format_and_order_target() -> None:
    assert [image_format(n) for n in ("a/b.hex", "x.S19", "y.bin", "z")] == ["ihex", "srec", "bin", "bin"]
    ecu = {"ecu": "engine", "target": "engine/engine 1.1.0.hex", "url": "https://b/x", "length": 5,
           "hashes": {"sha256": "ab" * 32}, "encryption": None,
           "delta": {"url": "https://b/d", "length": 3, "hashes": {"sha256": "cd" * 32}, "base": {"sha256": "ef" * 32},
                     "target": "engine/d.bsdiff"}}
    t = order_target(ecu)
    assert t["name"] == "engine:engine_1.1.0.hex" and t["delta"]["base"] == {"sha256": "ef" * 32}
    assert "encryption" not in t


def test_a_job_cut_short_by_an_update_agent_restart_is_an_interruption_not_a_failed_flash() -> None:
    interrupted = {"state": "failed", "error": {"class": "Interrupted", "message": "the update agent restarted"}}
    peers = FakePeers({"c1-flash-engine-2": ["running", TransportError("gone"), interrupted]})
    outcome = asyncio.run(steps(peers).run(flash(None), {}))
    assert outcome.state == "interrupted" and outcome.error is not None and "Interrupted" in outcome.error


def test_the_check_keeps_the_software_version_each_ecu_answered_before_the_campaign() -> None:
    peers = FakePeers({})
    peers.match["report"]["ecus"] = [
        {"ecu": "brake", "answered": True, "found_software": "3.4.0"},
        {"ecu": "engine", "answered": True, "found_software": "1.0.0"},
        {"ecu": "body", "answered": False, "found_software": None},  # silent: no version to expect
    ]
    outcome = asyncio.run(steps(peers).run(Action("check"), {}))
    assert outcome.state == "done", outcome
    assert outcome.result["vehicle_version"] == "BV 1"
    assert outcome.result["ecu_versions"] == {"brake": "3.4.0", "engine": "1.0.0"}


def test_an_ab_rollback_asks_the_update_agent_for_the_version_the_ecu_ran_before() -> None:
    peers = FakePeers({})
    action = Action("rollback", "brake", {"job_id": "c1-rollback-brake-1", "previous_job": None,
                                          "method": "switch_bank", "image": None, "expected_version": "3.4.0"})
    outcome = asyncio.run(steps(peers).run(action, {}))
    assert outcome.state == "done"
    started = [p for m, p in peers.calls if m == "update_agent.job.rollback"]
    assert started == [{"job_id": "c1-rollback-brake-1", "ecu": "brake", "method": "switch_bank",
                        "expected_version": "3.4.0"}]


# -- waits woken by the peers' events --------------------------------------------------------------
#: a status poll interval no test lives to see: only an event can end these waits
NEVER = 3600.0
#: how long a woken wait may take before the test fails loudly (it ends at once when woken)
WAKE_TIMEOUT = 30.0


class EventfulPeers(FakePeers):
    """Job and download states that change only when the test says so, as the daemons' events announce."""

    def __init__(self) -> None:
        super().__init__({})
        self.job_state = "running"
        self.download_state = "downloading"
        self.status_calls = asyncio.Event()  # set on every status call: the step has looked

    async def call(self, daemon: str, method: str, params: Mapping[str, Any]) -> Any:
        if method == "update_agent.job.status":
            self.calls.append((method, dict(params)))
            self.status_calls.set()
            return {"job_id": params["job_id"], "ecu": "engine", "state": self.job_state, "result": {"bytes": 10}}
        if method == "dmclient.download.start":
            self.calls.append((method, dict(params)))
            return {"targets": [{"id": "t1"}]}
        if method == "dmclient.download.status":
            self.calls.append((method, dict(params)))
            self.status_calls.set()
            return {"targets": [{"id": "t1", "name": "engine:e.hex", "state": self.download_state, "bytes": 10,
                                 "total": 10, "error": None, "path": "/cache/e.hex"}]}
        if method in ("dmclient.installed.list",):
            return {"ecus": {}}
        if method in ("dmclient.cache.list",):
            return {"entries": []}
        return await super().call(daemon, method, params)


async def _finish_when_looked_at(peers: EventfulPeers, events: PeerEvents, key: str, finish: Any) -> None:
    """After the step's first status call: change the state and announce it, as the daemon's event would."""
    await asyncio.wait_for(peers.status_calls.wait(), WAKE_TIMEOUT)
    events.notify("someone-else")  # another job's or target's event does not end this wait
    finish()
    events.notify(key)


def test_a_job_wait_ends_on_the_update_agents_job_done_event_not_on_a_poll() -> None:
    peers, events = EventfulPeers(), PeerEvents()
    step = Steps("c1", peers.call, lambda *a: None, baseline=Path("/b.xml"), ota_mode_lease=30,
                 poll_interval=NEVER, job_timeout=NEVER * 2, peer_events=events)

    async def scenario() -> Any:
        finisher = asyncio.create_task(_finish_when_looked_at(
            peers, events, "c1-flash-engine-2", lambda: setattr(peers, "job_state", "succeeded")))
        outcome = await asyncio.wait_for(step.run(flash(None), {}), WAKE_TIMEOUT)
        await finisher
        return outcome

    outcome = asyncio.run(scenario())
    assert outcome.state == "done" and outcome.result["job"] == {"bytes": 10}
    assert [m for m in peers.methods() if m == "update_agent.job.status"] == ["update_agent.job.status"] * 2


def _download_ending(peers: EventfulPeers, end: str) -> Any:
    """The download step of one engine image, dmclient's target ending ``end`` once the step has looked."""
    events = PeerEvents()
    step = Steps("c1", peers.call, lambda *a: None, baseline=Path("/b.xml"), ota_mode_lease=30,
                 poll_interval=NEVER, job_timeout=60, peer_events=events)
    check = {"assignment": {"ecus": [{"ecu": "engine", "target": "engine/e.hex", "length": 10,
                                      "hashes": {"sha256": "ab" * 32}, "url": "https://backend/e.hex",
                                      "release_counter": 2, "software_version": "1.1.0"}]}}

    async def scenario() -> Any:
        finisher = asyncio.create_task(_finish_when_looked_at(
            peers, events, "t1", lambda: setattr(peers, "download_state", end)))
        outcome = await asyncio.wait_for(step.run(Action("download"), {"check": check}), WAKE_TIMEOUT)
        await finisher
        return outcome

    return asyncio.run(scenario())


def test_a_download_wait_ends_on_dmclients_state_event_not_on_a_poll() -> None:
    peers = EventfulPeers()
    outcome = _download_ending(peers, "done")
    assert outcome.state == "done", outcome
    assert outcome.result["images"]["engine"]["path"] == "/cache/e.hex"
    assert [m for m in peers.methods() if m == "dmclient.download.status"] == ["dmclient.download.status"] * 2


def test_a_daemon_lost_under_a_step_interrupts_it_and_a_timeout_fails_it() -> None:
    class Lost(FakePeers):
        def __init__(self, error: Exception) -> None:
            super().__init__({})
            self.error = error

        async def call(self, daemon: str, method: str, params: Mapping[str, Any]) -> Any:
            if method == "update_agent.baseline.match":
                raise self.error
            return await super().call(daemon, method, params)

    lost = asyncio.run(steps(Lost(TransportError("connection to update_agent lost"))).run(Action("check"), {}))
    assert (lost.state, lost.error) == ("interrupted", "TransportError: connection to update_agent lost")
    hung = asyncio.run(steps(Lost(OtaTimeoutError("update_agent did not answer"))).run(Action("check"), {}))
    assert hung.state == "failed" and "did not answer" in str(hung.error)


def test_otactl_rollback_of_a_campaign_with_a_linux_ecu_is_refused_naming_why() -> None:
    source = {"id": "c0", "check": {"vehicle_version": "BV 1", "assignment": {
                  "target_vehicle_version": "BV 2", "baseline": "b.xml", "ecus": []}},
              "download": {"images": {"engine": IMAGE, "ivi": {**IMAGE, "independent": {"instance": 1}}},
                           "previous": {"engine": IMAGE, "ivi": {**IMAGE, "path": None, "independent": True}}}}
    s = Steps("c1", FakePeers({}).call, lambda *a: None, baseline=Path("/b.xml"), ota_mode_lease=30,
              poll_interval=0.001, job_timeout=60, source=source)
    outcome = s.rollback_check("BV 2", {})
    assert outcome.state == "failed"
    assert "installed ivi by independent download" in str(outcome.error)
    assert "otactl rollback cannot roll a Linux ECU back" in str(outcome.error)


class PinningPeers(EventfulPeers):
    """The engine ECU runs an image dmclient has in its cache: the rollback image the download step pins."""

    async def call(self, daemon: str, method: str, params: Mapping[str, Any]) -> Any:
        if method == "dmclient.installed.list":
            self.calls.append((method, dict(params)))
            return {"ecus": {"engine": {"name": "engine/engine-1.0.0.hex", "length": 9, "release_counter": 1,
                                        "hashes": {"sha256": "cd" * 32}}}}
        if method == "dmclient.cache.list":
            self.calls.append((method, dict(params)))
            return {"entries": [{"sha256": "cd" * 32, "path": "/cache/old.hex"}]}
        if method == "dmclient.cache.pin":
            self.calls.append((method, dict(params)))
            return {}
        return await super().call(daemon, method, params)


@pytest.mark.parametrize("end", ["done", "failed"])
def test_the_rollback_image_is_pinned_while_the_new_image_downloads(end: str) -> None:
    peers = PinningPeers()
    outcome = _download_ending(peers, end)
    methods = peers.methods()
    assert ("dmclient.cache.pin", {"sha256": "cd" * 32, "owner": "campaign:c1"}) in peers.calls
    # pinned before the status call that saw the download end, not after it on the step's own time
    assert methods.index("dmclient.cache.pin") < len(methods) - 1 - methods[::-1].index("dmclient.download.status")
    if end == "done":
        assert outcome.state == "done", outcome
        assert outcome.result["previous"]["engine"]["path"] == "/cache/old.hex"
    else:  # the campaign's pins, this one among them, go at its report
        assert outcome.state == "failed" and "engine:e.hex" in str(outcome.error)
